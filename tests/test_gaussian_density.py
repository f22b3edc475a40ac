"""The streaming Ledoit-Wolf Gaussian must agree with scikit-learn's LedoitWolf on the same data."""
import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

from adbench_dbt.methods.cutpaste.gaussian_density import GaussianDensity


def _data(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + rng.normal(size=d)


@pytest.mark.parametrize("n, d", [(200, 16), (30, 64), (500, 5)])
def test_matches_sklearn_ledoit_wolf(n: int, d: int) -> None:
    x = _data(n, d, seed=n + d)
    query = _data(40, d, seed=7)
    reference = LedoitWolf().fit(x)
    density = GaussianDensity(d).fit(torch.from_numpy(x))
    np.testing.assert_allclose(density.mean[0].numpy(), reference.location_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(density.shrinkage[0]), reference.shrinkage_, rtol=1e-6)
    np.testing.assert_allclose(density.precision[0].numpy(), reference.precision_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(density.score(torch.from_numpy(query)).numpy() ** 2, reference.mahalanobis(query),
                               rtol=1e-4)


def test_streaming_batches_equal_one_batch() -> None:
    x = torch.from_numpy(_data(300, 12, seed=1))
    whole = GaussianDensity(12).fit(x)
    streamed = GaussianDensity(12)
    streamed.reset()
    for chunk in x.split(37):
        streamed.update(chunk)
    streamed.finalize()
    torch.testing.assert_close(streamed.precision, whole.precision)
    torch.testing.assert_close(streamed.mean, whole.mean)


def test_per_location_fits_each_location_and_falls_back_to_pooled() -> None:
    a, b = _data(100, 6, seed=2), _data(120, 6, seed=3) * 3 + 5
    x = torch.from_numpy(np.concatenate([a, b, a[:1]]))
    loc = torch.tensor([0] * 100 + [1] * 120 + [2])  # location 2 has a single sample: pooled fit
    density = GaussianDensity(6, locations=3).fit(x, loc)
    np.testing.assert_allclose(density.precision[1].numpy(), LedoitWolf().fit(b).precision_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(density.precision[2].numpy(), LedoitWolf().fit(x.numpy()).precision_,
                               rtol=1e-4, atol=1e-5)
    q = torch.from_numpy(b[:5])
    near, far = density.score(q, torch.ones(5, dtype=torch.long)), density.score(q, torch.zeros(5, dtype=torch.long))
    assert bool((near < far).all())


def test_state_round_trip_and_clear_errors() -> None:
    density = GaussianDensity(4).fit(torch.randn(50, 4))
    copy = GaussianDensity(4)
    copy.load_state_dict(density.state_dict())
    q = torch.randn(9, 4)
    torch.testing.assert_close(copy.score(q), density.score(q))
    with pytest.raises(ValueError, match="N x 4"):
        density.update(torch.randn(3, 5))
    with pytest.raises(ValueError, match="expected mean"):
        GaussianDensity(5).load_state_dict(density.state_dict())
    with pytest.raises(RuntimeError, match="before fit"):
        GaussianDensity(4).score(q)
    with pytest.raises(ValueError, match="locations"):
        GaussianDensity(4, locations=2).fit(torch.randn(10, 4), torch.full((10,), 2))
