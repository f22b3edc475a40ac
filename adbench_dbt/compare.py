"""Is run A better than run B? A paired bootstrap over slices of the difference in mean per-slice metrics.

Both runs are resampled with the same slice indices (the slices both scored with both classes), so the noise that
comes from *which* slices are in the test set cancels out; the difference in means gets a percentile 95% CI and a
two-sided p-value (twice the smaller tail of the bootstrap differences around 0, counted as (k + 1) / (B + 1) so it
is never 0, at most 1). Runs on different
split fingerprints were scored on different slices or boxes and are refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adbench_dbt.errors import RunError
from adbench_dbt.io import read_run_json
from adbench_dbt.summary import SliceRecord, read_slice_record

COMPARED = ("auroc", "ap", "aupro")


@dataclass(frozen=True)
class Difference:
    metric: str
    a: float            # mean of A over the common slices
    b: float
    difference: float   # a - b
    low: float
    high: float
    p_value: float
    slices: int


@dataclass(frozen=True)
class RunRef:
    """One (run, score variant) with its per-slice records."""

    run_dir: Path
    variant: str
    fingerprint: str
    label: str
    records: dict[str, SliceRecord]


def load_run(run_dir: str | Path, variant: str | None = None) -> RunRef:
    """The run's slice records and fingerprint; `variant` defaults to the method's first (primary) score."""
    run_dir = Path(run_dir)
    meta = read_run_json(run_dir / "run.json", "run record")
    paths = sorted((run_dir / "slices").glob("*.json"))
    if not paths:
        raise RunError(f"{run_dir}: no slice records (slices/*.json); the run has not scored anything")
    records = {p.stem: read_slice_record(p) for p in paths}
    variants = list(next(iter(records.values())).metrics)
    chosen = variant or variants[0]
    if chosen not in variants:
        raise RunError(f"{run_dir}: no score variant {chosen!r}; it has {', '.join(variants)}")
    return RunRef(run_dir, chosen, meta["fingerprint"], f"{meta['method']}/{chosen} ({meta['profile']})", records)


def paired_values(a: RunRef, b: RunRef, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice values of both runs on the slices where both are defined, in one slice order."""
    ids = sorted(set(a.records) & set(b.records))
    va = np.array([_value(a, i, metric) for i in ids], np.float64)
    vb = np.array([_value(b, i, metric) for i in ids], np.float64)
    keep = np.isfinite(va) & np.isfinite(vb)
    return va[keep], vb[keep]


def _value(run: RunRef, slice_id: str, metric: str) -> float:
    value = getattr(run.records[slice_id].metrics[run.variant], metric)
    return np.nan if value is None else float(value)


def paired_bootstrap(va: np.ndarray, vb: np.ndarray, metric: str = "", n_resamples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> Difference:
    """Difference of means with the same resampled slices for both; NaN figures when no slice is common."""
    if va.size == 0:
        return Difference(metric, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, 0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, va.size, size=(n_resamples, va.size))
    diffs = (va[idx] - vb[idx]).mean(axis=1)
    alpha = (1 - level) / 2
    tail = min(int(np.sum(diffs <= 0)), int(np.sum(diffs >= 0)))
    p = min(1.0, 2 * (tail + 1) / (n_resamples + 1))  # +1: a finite bootstrap never proves p = 0
    return Difference(metric, float(va.mean()), float(vb.mean()), float((va - vb).mean()),
                      float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha)), p, int(va.size))


def compare(a: RunRef, b: RunRef, metrics: tuple[str, ...] = COMPARED, seed: int = 0) -> list[Difference]:
    if a.fingerprint != b.fingerprint:
        raise RunError(f"{a.run_dir} and {b.run_dir} were scored on different splits (fingerprints "
                       f"{a.fingerprint[:12]} and {b.fingerprint[:12]}); only runs on the same split compare")
    return [paired_bootstrap(*paired_values(a, b, m), metric=m, seed=seed) for m in metrics]


def distinguishable(a: RunRef, b: RunRef, metric: str = "auroc", seed: int = 0) -> bool:
    """Whether the 95% CI of the paired difference excludes 0."""
    d = paired_bootstrap(*paired_values(a, b, metric), metric=metric, seed=seed)
    return bool(d.slices) and not (d.low <= 0 <= d.high)
