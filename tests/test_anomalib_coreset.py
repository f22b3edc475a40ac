"""greedy_coreset selects the points anomalib 2.7's KCenterGreedy selects (same projection and start), is a true
greedy k-center selection without projection, and its presampling, seeding and input checks behave as documented."""
import contextlib
import io
import math
import warnings

import numpy as np
import pytest
import torch

from adbench_dbt.errors import ConfigError
from adbench_dbt.methods.anomalib.coreset import (coreset_size, greedy_coreset, johnson_lindenstrauss_dim,
                                                  sparse_random_projection)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection
    from anomalib.models.components.sampling.k_center_greedy import KCenterGreedy


def relu_features(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.relu(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) + 0.3)


@pytest.mark.parametrize("n, dim, ratio, seed, lazy, chunk", [(1000, 64, 0.1, 0, True, 256),
                                                              (1000, 64, 0.1, 0, False, 256),
                                                              (1200, 384, 0.1, 1, True, 100),
                                                              (400, 1536, 0.25, 2, True, 1000)])
def test_same_points_as_anomalib_from_the_same_projection_and_start(n, dim, ratio, seed, lazy, chunk):
    features = relu_features(n, dim, seed)
    torch.manual_seed(seed)
    np.random.seed(seed)
    with contextlib.redirect_stderr(io.StringIO()):
        expected = KCenterGreedy(embedding=features, sampling_ratio=ratio).select_coreset_idxs()
    torch.manual_seed(seed)  # replay anomalib's draws: its projection matrix, then its start point
    np.random.seed(seed)
    projector = SparseRandomProjection(eps=0.9).fit(features)
    start = int(torch.randint(high=n, size=(1,)))
    assert projector.n_components == johnson_lindenstrauss_dim(n)
    selected = greedy_coreset(features, coreset_size(n, ratio), start=start, lazy=lazy, chunk=chunk,
                              projection=projector.sparse_random_matrix)
    assert selected.dtype == torch.long
    assert selected.tolist() == expected


def _reference_k_center(points: torch.Tensor, n_select: int, start: int) -> list[int]:
    """Textbook greedy k-center in float64: the farthest point from the chosen ones, one at a time."""
    points = points.double()
    chosen = [start]
    nearest = torch.cdist(points, points[[start]]).squeeze(1)
    for _ in range(n_select - 1):
        chosen.append(int(nearest.argmax()))
        nearest = torch.minimum(nearest, torch.cdist(points, points[[chosen[-1]]]).squeeze(1))
    return chosen


@pytest.mark.parametrize("lazy, chunk", [(True, 7), (True, 600), (False, 256)])
def test_without_projection_it_is_greedy_k_center_in_feature_space(lazy, chunk):
    # a large common offset: the |x|^2 + |c|^2 - 2x.c expansion must not lose the small distances to rounding
    features = relu_features(600, 32, 3) + 50.0
    selected = greedy_coreset(features, 60, start=17, projection=None, lazy=lazy, chunk=chunk)
    assert selected.tolist() == _reference_k_center(features, 60, 17)
    assert len(set(selected.tolist())) == 60


def test_lazy_and_dense_updates_select_the_same_points():
    features = relu_features(2000, 64, 7)
    lazy = greedy_coreset(features, 200, seed=2, lazy=True, chunk=128)
    assert torch.equal(lazy, greedy_coreset(features, 200, seed=2, lazy=False))
    assert greedy_coreset(features, 1, start=5).tolist() == [5]


def test_default_projection_is_seeded_and_has_anomalibs_shape_and_sparsity():
    n, dim = 5000, 400
    matrix = sparse_random_projection(n, dim, torch.Generator().manual_seed(0))
    assert matrix.shape == (johnson_lindenstrauss_dim(n), dim) == (210, 400)
    scale = math.sqrt(math.sqrt(dim)) / math.sqrt(matrix.shape[0])
    assert torch.unique(matrix).tolist() == pytest.approx([-scale, 0.0, scale])
    assert (matrix != 0).float().mean().item() == pytest.approx(1 / math.sqrt(dim), rel=0.1)
    assert (matrix > 0).sum().item() == pytest.approx((matrix < 0).sum().item(), rel=0.1)
    features = relu_features(800, 48, 4)
    first, again = greedy_coreset(features, 40, seed=5), greedy_coreset(features, 40, seed=5)
    assert torch.equal(first, again)
    assert not torch.equal(first, greedy_coreset(features, 40, seed=6))


def test_presample_selects_within_a_seeded_subset_and_maps_back():
    features = relu_features(900, 16, 5)
    selected = greedy_coreset(features, 30, seed=1, presample=300, projection=None, start=0)
    subset = torch.randperm(900, generator=torch.Generator().manual_seed(1))[:300].sort().values
    assert set(selected.tolist()) <= set(subset.tolist())
    inner = greedy_coreset(features[subset], 30, start=0, projection=None)
    assert selected.tolist() == subset[inner].tolist()
    assert torch.equal(greedy_coreset(features, 30, seed=1, presample=5000, projection=None, start=0),
                       greedy_coreset(features, 30, projection=None, start=0))  # presample >= N: no subset


def test_bad_requests_are_config_errors():
    features = relu_features(50, 8, 6)
    with pytest.raises(ConfigError, match="cannot select 51 of 50"):
        greedy_coreset(features, 51)
    with pytest.raises(ConfigError, match="start=50 is not an index"):
        greedy_coreset(features, 5, start=50)
    with pytest.raises(ConfigError, match="does not apply to 8-dimensional"):
        greedy_coreset(features, 5, projection=torch.zeros(4, 9))
    with pytest.raises(ConfigError, match="N x D"):
        greedy_coreset(features[None], 5)
    with pytest.raises(ConfigError, match="chunk=0 must be a positive"):
        greedy_coreset(features, 5, chunk=0)
    with pytest.raises(ConfigError, match="cannot select 30 of 20"):
        greedy_coreset(features, 30, presample=20)
    with pytest.raises(ConfigError, match=r"coreset_sampling_ratio=0.001: .*\(int\(N \* ratio\) = 0\)"):
        coreset_size(50, 0.001)
