"""The chunked GEMM nearest-neighbour search must equal brute force, whatever the chunking."""
import pytest
import torch

from adbench_dbt.methods.patchsvdd.nearest_neighbor import NearestNeighborIndex, nearest_neighbor_distance


@pytest.mark.parametrize("max_elements", [1, 50, 997, 1 << 24])
def test_equals_brute_force(max_elements: int) -> None:
    g = torch.Generator().manual_seed(max_elements)
    bank = torch.randn(300, 16, generator=g)
    queries = torch.cat([torch.randn(70, 16, generator=g), bank[:5]])  # exact bank members: distance 0
    brute = torch.cdist(queries.double(), bank.double())
    distances, index = NearestNeighborIndex(bank, max_elements).query(queries)
    torch.testing.assert_close(distances.double(), brute.min(1).values, rtol=1e-5, atol=1e-6)
    assert torch.equal(index, brute.argmin(1))
    assert bool((distances[-5:] == 0).all())


def test_functional_form_and_errors() -> None:
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.rand(40, 3, generator=g), torch.rand(8, 3, generator=g)
    torch.testing.assert_close(nearest_neighbor_distance(queries, bank, max_elements=7).double(),
                               torch.cdist(queries.double(), bank.double()).min(1).values, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="non-empty"):
        NearestNeighborIndex(torch.empty(0, 3))
    with pytest.raises(ValueError, match="M x 3"):
        NearestNeighborIndex(bank).query(torch.rand(2, 4))
