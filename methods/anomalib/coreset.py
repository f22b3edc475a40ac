"""Greedy k-center coreset (PatchCore's memory-bank reduction) with anomalib 2.7's semantics, at benchmark scale.

anomalib's `KCenterGreedy` (models/components/sampling/k_center_greedy.py) does, on a 2-D embedding:
1. a very sparse random projection (Li et al. 2006; density 1/sqrt(D), entries +-sqrt(sqrt(D)/k)) to the
   Johnson-Lindenstrauss dimension k = int(4 ln N / (eps^2/2 - eps^3/3)) with eps = 0.9;
2. a uniformly random start point, which is part of the coreset;
3. per step: distances of all N points to the newest centre, min-distances updated, the argmax selected and its
   min-distance set to 0, until int(N * ratio) points are selected.
Its step computes `norm(features - centre)`, which allocates and rereads an N x k tensor every step; that is what
makes it minutes long at 32k points. Here distances come from matrix products against squared norms computed once
(features centred first, so |x|^2 + |c|^2 - 2 x.c loses little precision). On a GPU each step is one
matrix-vector product over all N with min-distances, indices and the next centre kept on the device (no host
synchronisation per step); on the CPU min-distances are updated lazily, block by block, only where the next
maximum can be (`_greedy_lazy`: exact, and an order of magnitude less memory traffic).

Where the result can differ from anomalib's, and why:
- The projection matrix is drawn from a `torch.Generator` seeded with `seed` (iid Bernoulli(density) entries with
  random signs: the same distribution as anomalib's binomial count of non-zeros per row placed uniformly) instead of
  torch's and numpy's global random state. Pass anomalib's own matrix as `projection` to reproduce one of its runs.
- Distances are compared squared and computed by a matrix product in float32 (float64 for float64 input), while
  anomalib takes float32 norms of differences. The two round differently in the last bits, so where the two
  largest min-distances tie within float32 rounding the choice can differ and the sequences part from there;
  up to that step they are the same points (tests: identical on small inputs; `coreset_bench` reports the length
  of the identical prefix at benchmark scale and the coverage radius of both coresets).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch

from adbench_dbt.errors import ConfigError

#: anomalib's `SparseRandomProjection(eps=0.9)` in `KCenterGreedy`.
PROJECTION_EPS = 0.9


def coreset_size(n_features: int, sampling_ratio: float) -> int:
    """anomalib's coreset size, int(N * ratio); a ratio leaving no point is a ConfigError."""
    size = int(n_features * sampling_ratio)
    if size <= 0 or sampling_ratio > 1:
        raise ConfigError(f"coreset_sampling_ratio={sampling_ratio}: must be in (0, 1] and keep at least one of "
                          f"the {n_features} patch features (int(N * ratio) = {size})")
    return size


def johnson_lindenstrauss_dim(n_samples: int, eps: float = PROJECTION_EPS) -> int:
    """Projected dimension that keeps pairwise distances within 1 +- eps (Dasgupta & Gupta), as anomalib rounds it."""
    return int(4 * math.log(n_samples) / (eps ** 2 / 2 - eps ** 3 / 3))


def sparse_random_projection(n_samples: int, n_features: int, generator: torch.Generator,
                             eps: float = PROJECTION_EPS) -> torch.Tensor:
    """A (k, n_features) very sparse random projection matrix (float32, CPU), drawn from `generator`."""
    n_components = johnson_lindenstrauss_dim(n_samples, eps)
    density = 1 / math.sqrt(n_features)
    shape = (n_components, n_features)
    nonzero = torch.rand(shape, generator=generator) < density
    signs = torch.randint(0, 2, shape, generator=generator, dtype=torch.int8) * 2 - 1
    return (nonzero * signs).float() * (math.sqrt(1 / density) / math.sqrt(n_components))


def greedy_coreset(features: torch.Tensor, n_select: int, *, start: int | None = None, seed: int = 0,
                   chunk: int = 256, projection: str | torch.Tensor | None = "sparse",
                   presample: int | None = None, lazy: bool | None = None) -> torch.Tensor:
    """Indices (LongTensor on the features' device) of `n_select` rows of `features` (N x D) chosen by greedy
    k-center selection, in selection order.

    start: index of the first point (default: drawn from `seed`). projection: "sparse" = anomalib's random
    projection drawn from `seed`, a (k, D) tensor = that matrix, None = select in the feature space itself.
    presample: select from a random subset of this many rows (drawn from `seed`) instead of all N - an
    approximation anomalib does not make, for memory banks too large for the exact greedy; indices still refer
    to `features`. lazy: update min-distances block by block, only where the argmax can be (`_greedy_lazy`,
    chunk rows a block; the default on the CPU), or all N every step (`_greedy_dense`: no host synchronisation,
    the default on a GPU). Both select the same points.
    """
    if features.ndim != 2 or features.shape[0] == 0:
        raise ConfigError(f"coreset: expected a non-empty N x D feature matrix, got shape {tuple(features.shape)}")
    generator = torch.Generator().manual_seed(seed)
    subset = None
    if presample is not None and presample < features.shape[0]:
        if presample < 1:
            raise ConfigError(f"coreset_presample={presample}: must be a positive number of patch features")
        subset = torch.randperm(features.shape[0], generator=generator)[:presample].sort().values
        subset = subset.to(features.device)
        features = features.index_select(0, subset)
    n = features.shape[0]
    if not 1 <= n_select <= n:
        raise ConfigError(f"coreset: cannot select {n_select} of {n} patch features")
    if isinstance(projection, str) and projection != "sparse":
        raise ConfigError(f"coreset projection={projection!r}: expected 'sparse', a matrix or None")
    if isinstance(projection, str):
        projection = sparse_random_projection(n, features.shape[1], generator) if n_select > 1 else None
    if projection is not None and (projection.ndim != 2 or projection.shape[1] != features.shape[1]):
        raise ConfigError(f"coreset: projection of shape {tuple(projection.shape)} does not apply to "
                          f"{features.shape[1]}-dimensional features")
    if start is None:
        start = int(torch.randint(n, (1,), generator=generator))
    if not 0 <= start < n:
        raise ConfigError(f"coreset: start={start} is not an index of the {n} patch features")
    if chunk < 1:
        raise ConfigError(f"coreset: chunk={chunk} must be a positive number of rows")
    points = _centred_points(features, projection)
    if lazy if lazy is not None else features.device.type == "cpu":
        with _one_thread():
            selected = _greedy_lazy(points, n_select, start, chunk)
    else:
        selected = _greedy_dense(points, n_select, start)
    return selected if subset is None else subset[selected]


def _centred_points(features: torch.Tensor, projection: torch.Tensor | None, chunk: int = 65536) -> torch.Tensor:
    """Projected (or copied) features minus their mean, `chunk` rows per matrix product (bounded temporaries);
    centring changes no distance but shrinks |x|^2, and with it the rounding of |x|^2 + |c|^2 - 2 x.c."""
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    width = features.shape[1] if projection is None else projection.shape[0]
    points = torch.empty(features.shape[0], width, dtype=dtype, device=features.device)
    matrix = None if projection is None else projection.to(features.device, dtype).T
    for begin in range(0, features.shape[0], chunk):
        rows = features[begin:begin + chunk].to(dtype)
        points[begin:begin + chunk] = rows if matrix is None else rows @ matrix
    points -= points.mean(0)
    return points


@contextmanager
def _one_thread() -> Iterator[None]:
    """The lazy loop's products are block-sized: a second intra-op thread adds a synchronisation per operation,
    which on a busy machine (a descheduled thread) made the CPU selection 10x slower than on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _greedy_dense(points: torch.Tensor, n_select: int, start: int) -> torch.Tensor:
    """The sequential greedy loop: one matrix-vector product and a few length-N ops per step, all on device."""
    squared = torch.einsum("ij,ij->i", points, points)
    min_distance = torch.full_like(squared, float("inf"))
    selected = torch.empty(n_select, dtype=torch.long, device=points.device)
    newest = torch.tensor([start], device=points.device)
    selected[:1] = newest
    for step in range(1, n_select):
        centre = points.index_select(0, newest)[0]
        distance = torch.addmv(squared, points, centre, alpha=-2).add_(squared.index_select(0, newest))
        torch.minimum(min_distance, distance, out=min_distance)
        newest = min_distance.argmax(0, keepdim=True)
        min_distance.index_fill_(0, newest, 0)
        selected[step:step + 1] = newest
    return selected


def _greedy_lazy(points: torch.Tensor, n_select: int, start: int, block: int) -> torch.Tensor:
    """The greedy loop with min-distances updated lazily, block by block (exact, CPU).

    Min-distances only shrink, so a block's largest min-distance, once computed, bounds it from above until the
    block sees the newer centres. Each step refreshes blocks, highest bound first, with all the centres they have
    not seen yet (one matrix product on a cache-sized block) until the highest bound belongs to an up-to-date
    block; that block's maximum is then the maximum over all N, as a full update would find it. Most steps
    refresh one or two blocks, and the product works on cached rows instead of streaming all N from memory.
    """
    n = points.shape[0]
    squared = torch.einsum("ij,ij->i", points, points)
    min_distance = torch.full_like(squared, float("inf"))
    n_blocks = -(-n // block)
    bound = torch.full((n_blocks,), float("inf"), dtype=squared.dtype)
    seen = [0] * n_blocks  # centres already applied to each block
    centres = torch.empty(n_select, points.shape[1], dtype=points.dtype)
    centre_squared = torch.empty(n_select, dtype=points.dtype)
    selected = torch.empty(n_select, dtype=torch.long)
    newest = start
    for step in range(n_select):
        selected[step], centres[step], centre_squared[step] = newest, points[newest], squared[newest]
        if step == n_select - 1:
            break
        while seen[best := int(bound.argmax())] <= step:
            rows = slice(best * block, (best + 1) * block)
            distance = torch.addmm(centre_squared[seen[best]:step + 1].unsqueeze(0), points[rows],
                                   centres[seen[best]:step + 1].T, alpha=-2).add_(squared[rows].unsqueeze(1))
            torch.minimum(min_distance[rows], distance.amin(1), out=min_distance[rows])
            bound[best], seen[best] = min_distance[rows].max(), step + 1
        rows = slice(best * block, (best + 1) * block)
        newest = best * block + int(min_distance[rows].argmax())
        min_distance[newest] = 0
        bound[best] = min_distance[rows].max()
    return selected
