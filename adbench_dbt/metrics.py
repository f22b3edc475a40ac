"""Pixel-level localisation metrics, exact and memory-bounded (a real slice has ~4.9 M pixels).

Per slice: pixel AUROC and AP (positives = pixels inside and on the border of any box) over the whole slice
(PICARD's protocol) or over breast pixels only; AUPRO up to FPR 0.3 over the same pixels (MVTec AD; regions = the
connected boxes, `adbench_dbt.aupro`); the inside/outside-box mean ratio over breast pixels (Swiecicki 2021); and
whether the heatmap's maximum inside the breast falls in a box (hit rate, over slices). Test-set values are means
over slices with a bootstrap 95% confidence interval over slices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from adbench_dbt.aupro import aupro, box_regions


class SingleClassError(ValueError):
    """A slice whose scored pixels are all positive or all negative: AUROC/AP are undefined there."""


def _sorted_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives per distinct score, scores descending (ties grouped, as scikit-learn does)."""
    order = np.argsort(scores)[::-1]
    s = scores[order]
    y = labels[order]
    boundaries = np.flatnonzero(np.diff(s)) + 1  # s is descending; boundaries split groups of equal scores
    starts = np.concatenate(([0], boundaries))
    pos = np.add.reduceat(y.astype(np.int64), starts)
    counts = np.diff(np.concatenate((starts, [len(s)])))
    return pos, counts - pos


def _check(scores: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{where}: {scores.size} scores but {labels.size} labels")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{where}: heatmap contains NaN or infinite values")
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        kind = "no positive (box)" if n_pos == 0 else "no negative (outside-box)"
        raise SingleClassError(f"{where}: {kind} pixels among the {labels.size} scored pixels; AUROC/AP undefined")
    return scores, labels


def pixel_auroc(scores: np.ndarray, labels: np.ndarray, where: str = "slice") -> float:
    """Exact ROC AUC with ties counted half (equals sklearn.metrics.roc_auc_score)."""
    return _auroc_from_counts(*_sorted_counts(*_check(scores, labels, where)))


def pixel_ap(scores: np.ndarray, labels: np.ndarray, where: str = "slice") -> float:
    """Average precision, step-wise as sklearn.metrics.average_precision_score (thresholds at distinct scores)."""
    return _ap_from_counts(*_sorted_counts(*_check(scores, labels, where)))


def _auroc_from_counts(pos: np.ndarray, neg: np.ndarray) -> float:
    neg_above = np.cumsum(neg) - neg  # negatives with a strictly higher score
    # each positive beats the negatives below it: total negatives - above - half the tied ones
    n_neg = neg.sum()
    wins = (pos * (n_neg - neg_above - neg) + 0.5 * pos * neg).sum()
    return float(wins / (pos.sum() * n_neg))


def _ap_from_counts(pos: np.ndarray, neg: np.ndarray) -> float:
    tp = np.cumsum(pos)
    fp = np.cumsum(neg)
    precision = tp / (tp + fp)
    recall_gain = pos / tp[-1]
    return float((recall_gain * precision).sum())


def inside_outside_ratio(heatmap: np.ndarray, labels: np.ndarray, breast: np.ndarray) -> float:
    """Mean heatmap inside the boxes / mean outside, over breast pixels only (Swiecicki 2021, Table 2)."""
    breast = np.asarray(breast, dtype=bool)
    inside = labels & breast
    outside = ~labels & breast
    if not inside.any() or not outside.any():
        return math.nan
    denominator = float(heatmap[outside].mean())
    return float(heatmap[inside].mean()) / denominator if denominator != 0 else math.nan


def hit(heatmap: np.ndarray, labels: np.ndarray, breast: np.ndarray) -> bool:
    """Whether the heatmap's maximum inside the breast (the whole slice when no breast was found) lies in a box;
    on a tie, the first maximum in row-major order."""
    breast = np.asarray(breast, dtype=bool)
    inside = np.where(breast, heatmap, -np.inf) if breast.any() else heatmap
    return bool(np.asarray(labels, dtype=bool).flat[int(np.argmax(inside))])


def heatmap_metrics(heatmap: np.ndarray, labels: np.ndarray, breast: np.ndarray, breast_only: bool = False,
                    where: str = "slice") -> dict[str, float | bool]:
    """The metrics that need the heatmap itself (not only its ranking statistics): AUPRO@0.3 over the scored pixels
    (whole slice, or breast pixels if `breast_only`) and the hit. Separate from `slice_metrics` so a finished run
    can add them from its saved heatmaps."""
    breast = np.asarray(breast, dtype=bool)
    regions = box_regions(labels)
    scored = breast if breast_only else np.ones(labels.shape, bool)
    _check(heatmap[scored], labels[scored], where)
    return {"aupro": aupro(heatmap[scored], regions[scored]), "hit": hit(heatmap, labels, breast)}


def slice_metrics(heatmap: np.ndarray, labels: np.ndarray, breast: np.ndarray, breast_only: bool = False,
                  where: str = "slice") -> dict[str, float | bool]:
    """AUROC and AP (whole slice, PICARD's protocol, or breast pixels if `breast_only`), breast-only AUROC (always:
    it tells finding lesions from finding the breast against black background), the in/out ratio, AUPRO and hit."""
    if heatmap.shape != labels.shape:
        raise ValueError(f"{where}: heatmap {heatmap.shape} does not match the slice {labels.shape}")
    breast = np.asarray(breast, dtype=bool)
    inner = _sorted_counts(*_check(heatmap[breast], labels[breast], where))
    counts = inner if breast_only else _sorted_counts(*_check(heatmap, labels, where))
    return {"auroc": _auroc_from_counts(*counts), "ap": _ap_from_counts(*counts),
            "auroc_breast": _auroc_from_counts(*inner), "inout_ratio": inside_outside_ratio(heatmap, labels, breast),
            **heatmap_metrics(heatmap, labels, breast, breast_only, where)}


@dataclass(frozen=True)
class Summary:
    mean: float
    low: float
    high: float
    n: int


def bootstrap_mean(values: np.ndarray, n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> Summary:
    """Mean over slices with a percentile bootstrap CI over slices (NaNs dropped)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Summary(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return Summary(float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)),
                   int(values.size))
