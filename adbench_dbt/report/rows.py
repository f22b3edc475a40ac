"""What a report shows: the newest run of each (method, profile) on one split fingerprint, one row per variant."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adbench_dbt.data.slices import boxes_mask
from adbench_dbt.errors import RunError
from adbench_dbt.leaderboard import collect_summaries, profile_label
from adbench_dbt.summary import RunSummary, SliceRecord, VariantSummary
from adbench_dbt.summarise import read_records


@dataclass(frozen=True)
class Row:
    """One (run, variant): its summary figures and per-slice records."""

    summary: RunSummary
    variant: str
    records: list[SliceRecord]

    @property
    def name(self) -> str:
        return f"{self.summary.method}/{self.variant} ({profile_label(self.summary.profile, self.summary.overrides)})"

    @property
    def figures(self) -> VariantSummary:
        return self.summary.variants[self.variant]

    @property
    def run_dir(self) -> Path:
        return Path(self.summary.run_dir)

    def heatmap(self, slice_id: str) -> np.ndarray:
        with np.load(self.run_dir / "heatmaps" / f"{slice_id}.npz") as saved:
            return saved[self.variant]

    def per_slice(self, metric: str) -> np.ndarray:
        values = [getattr(r.metrics[self.variant], metric) for r in self.records]
        return np.array([np.nan if v is None else float(v) for v in values], np.float64)


def select_rows(runs: Path, dataset: str) -> tuple[list[Row], str]:
    """Rows of the fingerprint most runs share (newest run per method and profile), best pixel AUROC first."""
    found, _ = collect_summaries(runs)
    summaries = found.get(dataset, [])
    if not summaries:
        raise RunError(f"--runs {runs}: no usable run summaries for dataset {dataset!r} (run `adbench run` or "
                       "upgrade older runs with `adbench detect RUN_DIR`)")
    counts = Counter(s.fingerprint for s in summaries)
    fingerprint = max(counts, key=lambda f: (counts[f], max(s.date for s in summaries if s.fingerprint == f)))
    newest: dict[tuple[str, str], RunSummary] = {}
    for s in summaries:  # oldest first: later ones replace
        if s.fingerprint == fingerprint:
            newest[(s.method, profile_label(s.profile, s.overrides))] = s
    rows = []
    for s in newest.values():
        ids = [p.stem for p in sorted((Path(s.run_dir) / "slices").glob("*.json"))]
        records = read_records(Path(s.run_dir), ids)
        rows += [Row(s, variant, records) for variant in s.variants]
    rows.sort(key=lambda r: -(r.figures.auroc if r.figures.auroc is not None else -1))
    return rows, fingerprint


def label_mask(record: SliceRecord) -> np.ndarray:
    return boxes_mask(tuple(record.shape), tuple(tuple(b) for b in record.boxes))
