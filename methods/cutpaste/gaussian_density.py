"""Gaussian density with Ledoit-Wolf shrinkage, fitted in one streaming pass, scored by Mahalanobis distance.

Embeddings of a training split rarely fit in memory (PICARD's grid gives ~23M windows), so the fit accumulates
sufficient statistics per batch instead of keeping the features: sum x, sum x x^T, sum |x|^2 x, sum |x|^2 and
sum |x|^4 are enough for the mean, the empirical covariance and both Ledoit-Wolf terms (the fourth-moment term
sum |x - mu|^4 is expanded around the final mean). Optionally one Gaussian per location (grid cell) is fitted;
locations with too few samples fall back to the pooled (global) Gaussian.
"""
from __future__ import annotations

import torch

from adbench_dbt.execution import fp32_numerics

_STATS = ("count", "total", "outer", "sq_weighted_sum", "sq_sum", "quartic_sum")


class GaussianDensity:
    """mean + precision per location (L = 1 for a global density); score = Mahalanobis distance."""

    def __init__(self, dim: int, locations: int = 1, min_count: int = 2,
                 device: str | torch.device = "cpu") -> None:
        if dim < 1 or locations < 1:
            raise ValueError(f"GaussianDensity: dim and locations must be >= 1, got {dim}, {locations}")
        self.dim, self.locations, self.min_count = dim, locations, min_count
        self.device = torch.device(device)
        self.mean: torch.Tensor | None = None        # L x D float32
        self.precision: torch.Tensor | None = None   # L x D x D float32
        self.shrinkage: torch.Tensor | None = None   # L float64 (diagnostic)
        self._stats: dict[str, torch.Tensor] | None = None

    # ---- fitting -----------------------------------------------------------------------------------------
    def reset(self) -> None:
        shapes = {"count": (), "total": (self.dim,), "outer": (self.dim, self.dim), "sq_weighted_sum": (self.dim,),
                  "sq_sum": (), "quartic_sum": ()}
        self._stats = {k: torch.zeros(self.locations, *shapes[k], dtype=torch.float64, device=self.device)
                       for k in _STATS}

    def update(self, features: torch.Tensor, locations: torch.Tensor | None = None) -> None:
        """Accumulate a batch: features N x D, locations N long in [0, L) (None = location 0)."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"GaussianDensity.update: expected N x {self.dim} features, got {tuple(features.shape)}")
        if self._stats is None:
            self.reset()
        x = features.detach().to(self.device, torch.float64)
        loc = self._locations(locations, len(x))
        sq = (x * x).sum(1)
        per_sample = {"count": torch.ones_like(sq), "total": x, "sq_weighted_sum": sq[:, None] * x,
                      "sq_sum": sq, "quartic_sum": sq * sq}
        for key, value in per_sample.items():
            self._stats[key].index_add_(0, loc, value)
        if self.locations == 1:
            self._stats["outer"][0] += x.T @ x
        else:
            self._stats["outer"].index_add_(0, loc, x[:, :, None] * x[:, None, :])

    def finalize(self) -> "GaussianDensity":
        """Turn the accumulated statistics into mean + precision (and drop the statistics)."""
        if self._stats is None or float(self._stats["count"].sum()) < self.min_count:
            raise ValueError(f"GaussianDensity: need at least {self.min_count} samples to fit, got "
                             f"{0 if self._stats is None else int(self._stats['count'].sum())}")
        stats = self._stats
        pooled = {k: v.sum(0, keepdim=True) for k, v in stats.items()}
        too_few = stats["count"] < self.min_count
        stats = {k: torch.where(too_few.view(-1, *[1] * (v.dim() - 1)), pooled[k].expand_as(v), v)
                 for k, v in stats.items()}
        mean, covariance, self.shrinkage = _ledoit_wolf(**stats)
        self.mean = mean.float()
        self.precision = torch.linalg.pinv(covariance, hermitian=True).float()
        self._stats = None
        return self

    def fit(self, features: torch.Tensor, locations: torch.Tensor | None = None) -> "GaussianDensity":
        self.reset()
        self.update(features, locations)
        return self.finalize()

    # ---- scoring -----------------------------------------------------------------------------------------
    @fp32_numerics
    def score(self, features: torch.Tensor, locations: torch.Tensor | None = None) -> torch.Tensor:
        """Mahalanobis distance sqrt((f - mu)^T P (f - mu)) of each row, N x D -> N (float32)."""
        if self.mean is None:
            raise RuntimeError("GaussianDensity.score called before fit/finalize/load_state_dict")
        x = features.to(self.mean.device, torch.float32)
        if self.locations == 1:
            diff = x - self.mean[0]
            squared = ((diff @ self.precision[0]) * diff).sum(1)
        else:
            loc = self._locations(locations, len(x)).to(x.device)
            diff = x - self.mean[loc]
            squared = torch.einsum("nd,nde,ne->n", diff, self.precision[loc], diff)
        return squared.clamp_min(0).sqrt()

    def _locations(self, locations: torch.Tensor | None, n: int) -> torch.Tensor:
        if locations is None:
            if self.locations != 1:
                raise ValueError(f"GaussianDensity has {self.locations} locations: pass one location per sample")
            return torch.zeros(n, dtype=torch.long, device=self.device)
        loc = locations.to(self.device, torch.long)
        if loc.shape != (n,) or (n and (int(loc.min()) < 0 or int(loc.max()) >= self.locations)):
            raise ValueError(f"GaussianDensity: expected {n} locations in [0, {self.locations}), got "
                             f"shape {tuple(loc.shape)}")
        return loc

    # ---- persistence -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.mean is None:
            return {}
        return {"mean": self.mean, "precision": self.precision}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        mean, precision = state.get("mean"), state.get("precision")
        expected = (self.locations, self.dim)
        if mean is None or precision is None or tuple(mean.shape) != expected \
                or tuple(precision.shape) != (*expected, self.dim):
            got = {k: tuple(v.shape) for k, v in state.items()}
            raise ValueError(f"GaussianDensity state: expected mean {expected} and precision "
                             f"{(*expected, self.dim)}, got {got}")
        self.mean = mean.to(self.device, torch.float32)
        self.precision = precision.to(self.device, torch.float32)


def _ledoit_wolf(count, total, outer, sq_weighted_sum, sq_sum, quartic_sum):
    """Batched Ledoit-Wolf (as scikit-learn, assume_centered=False) from sufficient statistics.

    Returns (mean L x D, shrunk covariance L x D x D, shrinkage L), all float64.
    """
    n = count.clamp_min(1)
    dim = total.shape[1]
    mean = total / n[:, None]
    cov = outer / n[:, None, None] - mean[:, :, None] * mean[:, None, :]
    trace = cov.diagonal(dim1=1, dim2=2).sum(1)
    mu = trace / dim
    delta_ = (cov * cov).sum((1, 2))  # sum of squared entries of X^T X / n^2 for centred X
    # sum_n |x_n - mean|^4, expanded: a = |x|^2, b = x.mean, c = |mean|^2
    mean_sq = (mean * mean).sum(1)
    sum_b = (mean * total).sum(1)
    sum_b2 = torch.einsum("ld,lde,le->l", mean, outer, mean)
    sum_ab = (mean * sq_weighted_sum).sum(1)
    beta_ = quartic_sum + 4 * sum_b2 + n * mean_sq ** 2 - 4 * sum_ab + 2 * mean_sq * sq_sum - 4 * mean_sq * sum_b
    beta = (beta_ / n - delta_) / (dim * n)
    delta = (delta_ - 2 * mu * trace + dim * mu ** 2) / dim
    beta = torch.minimum(beta, delta)
    shrinkage = torch.where(beta == 0, torch.zeros_like(beta), beta / delta.clamp_min(1e-300))
    eye = torch.eye(dim, dtype=cov.dtype, device=cov.device)
    covariance = (1 - shrinkage)[:, None, None] * cov + (shrinkage * mu)[:, None, None] * eye
    return mean, covariance, shrinkage
