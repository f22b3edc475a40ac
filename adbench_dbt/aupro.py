"""AUPRO (MVTec AD, Bergmann et al. 2021): area under the per-region-overlap curve up to a false positive rate.

At a threshold t, PRO(t) = mean over connected ground-truth regions of the fraction of the region's pixels scoring
>= t, and FPR(t) = fraction of negative pixels scoring >= t. The curve over every distinct score (from (0, 0))
is integrated with the trapezoid rule up to FPR = `limit` (the last segment interpolated linearly) and divided by
`limit`, so a perfect map scores 1. Here the regions are the connected components (8-connected) of the union of the
boxes. Exact without one pass per threshold: each pixel carries a weight (1 / negatives, or 1 / (regions x its
region's size)); one sort by score and cumulative sums of the weights give FPR and PRO at every distinct score.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

DEFAULT_LIMIT = 0.3


def pro_curve(scores: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at every distinct score, thresholds descending, starting at (0, 0).

    regions: int labels, 0 = negative pixel, 1..R = ground-truth region. Needs at least one of each.
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(regions).ravel()
    negative = labels == 0
    _, regions = np.unique(labels, return_inverse=True)  # compact 1..R (a region may lie outside scored pixels)
    regions = regions.ravel() + (0 if negative.any() else 1)
    n_neg, n_regions = int(negative.sum()), int(regions.max())
    if n_neg == 0 or n_regions == 0:
        raise ValueError("AUPRO needs negative pixels and at least one ground-truth region")
    sizes = np.bincount(regions, minlength=n_regions + 1).astype(np.float64)
    pro_weight = np.where(negative, 0.0, 1.0 / (n_regions * sizes[regions]))
    order = np.argsort(scores, kind="stable")[::-1]
    ordered = scores[order]
    ends = np.append(np.flatnonzero(np.diff(ordered)), len(ordered) - 1)  # last index of each distinct score
    fpr = np.cumsum(negative[order])[ends] / n_neg
    pro = np.cumsum(pro_weight[order])[ends]
    return np.concatenate(([0.0], fpr)), np.concatenate(([0.0], np.minimum(pro, 1.0)))


def integrate_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under y(x) for x in [0, limit] (x non-decreasing), y interpolated linearly at `limit`."""
    inside = x <= limit
    xs, ys = x[inside], y[inside]
    if not inside.all():
        k = int(np.argmax(~inside))  # first point beyond the limit; x[k - 1] <= limit < x[k]
        x0, x1, y0, y1 = x[k - 1], x[k], y[k - 1], y[k]
        xs, ys = np.append(xs, limit), np.append(ys, y0 + (y1 - y0) * (limit - x0) / (x1 - x0))
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))


def box_regions(mask: np.ndarray) -> np.ndarray:
    """Connected components (8-connected) of a ground-truth mask: overlapping boxes form one region."""
    labels, _ = ndimage.label(np.asarray(mask, bool), structure=np.ones((3, 3), bool))
    return labels


def aupro(scores: np.ndarray, regions: np.ndarray, limit: float = DEFAULT_LIMIT) -> float:
    """Normalised AUPRO up to FPR `limit` (see the module docstring)."""
    fpr, pro = pro_curve(scores, regions)
    return integrate_to(fpr, pro, limit) / limit
