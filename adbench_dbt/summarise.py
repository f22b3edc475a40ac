"""Slice records -> one `RunSummary`: means with bootstrap CIs over slices, timing, and the official detection
figures. Shared by `adbench run` (after scoring) and `adbench detect` (a finished run, from its saved heatmaps)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from rich.console import Console

from adbench_dbt.detection import DetectionConfig
from adbench_dbt.errors import AdbenchError, RunError
from adbench_dbt.metrics import bootstrap_mean
from adbench_dbt.summary import MEAN_KEYS, RunSummary, SliceRecord, Timing, VariantSummary, read_slice_record

console = Console(stderr=True)


def read_records(run_dir: Path, slice_ids: Sequence[str]) -> list[SliceRecord]:
    records = []
    for slice_id in slice_ids:
        path = Path(run_dir) / "slices" / f"{slice_id}.json"
        if not path.exists():
            raise RunError(f"{path} missing: the run did not score slice {slice_id!r} (a rank did not finish, or "
                           "the run was stopped; start it again to resume)")
        records.append(read_slice_record(path))
    return records


def metric_values(records: Sequence[SliceRecord], variant: str, key: str) -> np.ndarray:
    """Per-slice values of one metric (NaN where undefined); hits as 0/1."""
    values = [getattr(r.metrics[variant], key) for r in records]
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def summarise(run_dir: Path, record: dict[str, Any], dataset: Any, split: str, slice_ids: Sequence[str],
              precision: str, detection: DetectionConfig, date: str | None = None) -> RunSummary:
    """Build, write and return `summary.json`; detection files are written beside it (a dataset without the
    tables the detection figures need is reported, and its figures are left empty)."""
    from adbench_dbt.evaluation import write_run_detections

    run_dir = Path(run_dir)
    per_slice = read_records(run_dir, slice_ids)
    try:
        figures = write_run_detections(run_dir, dataset, split, per_slice, detection).figures
    except AdbenchError as err:
        console.print(f"[yellow]no detection figures[/]: {err}")
        figures = {}
    seconds = np.array([r.seconds for r in per_slice])
    windows = int(sum(r.windows for r in per_slice))
    fit_path = run_dir / "fit.json"
    variants: dict[str, VariantSummary] = {}
    for variant in per_slice[0].metrics:
        stats = {k: bootstrap_mean(metric_values(per_slice, variant, k), seed=record["seed"]) for k in MEAN_KEYS}
        ratio = metric_values(per_slice, variant, "inout_ratio")
        finite = ratio[np.isfinite(ratio)]
        variants[variant] = VariantSummary(
            **{k: _finite(stats[k].mean) for k in ("auroc", "ap", "auroc_breast", "aupro")},
            **{f"{k}_ci": (_finite(stats[k].low), _finite(stats[k].high))
               for k in ("auroc", "ap", "auroc_breast", "aupro")},
            hit_rate=_finite(stats["hit"].mean), hit_rate_ci=(_finite(stats["hit"].low), _finite(stats["hit"].high)),
            inout_ratio=float(finite.mean()) if finite.size else None,
            inout_ratio_std=float(finite.std()) if finite.size else None,
            slices_scored=stats["auroc"].n, detection=figures.get(variant))
    batches = [r.batch_size for r in per_slice if r.batch_size is not None]
    summary = RunSummary(
        method=record["method"], profile=record["profile"], overrides=record["overrides"],
        dataset=record["dataset"], fingerprint=record["fingerprint"], split=record["split"],
        split_options=record["split_options"], seed=record["seed"], device=record["device"],
        precision=precision, batch_size=min(batches) if batches else None,
        checkpoint=record["checkpoint"], checkpoint_sha256=record["checkpoint_sha256"],
        breast_only=record["breast_only"], harness_revision=record["environment"]["harness_revision"],
        slices=len(per_slice), variants=variants, detection=detection,
        timing=Timing(score_seconds=float(seconds.sum()), s_per_slice=float(seconds.mean()), windows=windows,
                      ms_per_patch=1000 * float(seconds.sum()) / windows if windows else None,
                      windows_per_s=windows / float(seconds.sum()) if windows else None,
                      fit_seconds=json.loads(fit_path.read_text())["seconds"] if fit_path.exists() else None),
        date=date or dt.date.today().isoformat(), run_dir=str(run_dir))
    summary.write(run_dir / "summary.json")
    return summary


def _finite(value: float | None) -> float | None:
    return None if value is None or np.isnan(value) else float(value)
