"""`adbench detect RUN_DIR`: bring a finished run up to date from its saved heatmaps, without scoring again.

For every scored slice it recomputes the metrics that need the heatmap (AUPRO, hit) and the detections (with the
given rule), rewrites the slice records, writes `RUN_DIR/detection/` and the summary in the current format. A run
summarised by an older harness (format 2) is upgraded this way; its date and precision are kept.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from adbench_dbt.detection import DetectionConfig, detect
from adbench_dbt.errors import RunError
from adbench_dbt.io import read_run_json, write_json
from adbench_dbt.metrics import SingleClassError, heatmap_metrics
from adbench_dbt.summarise import read_records, summarise
from adbench_dbt.summary import RunSummary


def open_run_dataset(record: dict[str, Any], cache: str | Path | None) -> Any:
    """The dataset a run was scored on, checked to be the same (fingerprint) as when it ran."""
    from adbench_dbt.data.dataset import BCSDBT

    root = Path(record["dataset_root"])
    if cache is None:
        cache = record.get("cache") or (root.parent if record["dataset"].startswith("phantom-") else None)
    dataset = BCSDBT(root, cache=cache, **(record.get("split_options") or {}))
    if dataset.fingerprint != record["fingerprint"]:
        raise RunError(f"{root}: the dataset's split fingerprint is now {dataset.fingerprint[:12]}, the run was "
                       f"scored on {record['fingerprint'][:12]}; its heatmaps no longer match these tables")
    return dataset


def redetect(run_dir: str | Path, cache: str | Path | None = None,
             config: DetectionConfig | None = None) -> RunSummary:
    run_dir = Path(run_dir)
    record = read_run_json(run_dir / "run.json", "run record")
    old = read_run_json(run_dir / "summary.json", "run summary")
    heatmaps = run_dir / "heatmaps"
    if not heatmaps.is_dir():
        raise RunError(f"{run_dir}: no heatmaps/ directory; detections need the saved heatmaps (rerun the run)")
    config = config or DetectionConfig()
    dataset = open_run_dataset(record, cache)
    slices = {sl.id: sl for sl in dataset.split(record["split"])}
    ids = sorted(slices)
    for rec in read_records(run_dir, ids):
        path = heatmaps / f"{rec.id}.npz"
        if not path.is_file():
            raise RunError(f"{path}: heatmap missing; cannot recompute slice {rec.id!r} without scoring it again")
        try:
            with np.load(path) as saved:
                maps = {variant: saved[variant] for variant in rec.metrics}
        except (OSError, ValueError, KeyError) as err:
            raise RunError(f"{path}: unreadable heatmap ({err})") from None
        image, breast = slices[rec.id].load()
        labels = slices[rec.id].label_mask
        metrics = {}
        for variant, heat in maps.items():
            try:
                extra = heatmap_metrics(heat, labels, breast, record["breast_only"], where=rec.id)
            except SingleClassError:
                extra = {"aupro": None, "hit": None}
            metrics[variant] = rec.metrics[variant].model_copy(update=extra)
        updated = rec.model_copy(update={"metrics": metrics, "detections": {
            variant: detect(heat, breast, config) for variant, heat in maps.items()}})
        write_json(run_dir / "slices" / f"{rec.id}.json", updated.model_dump(mode="json"))
    return summarise(run_dir, record, dataset, record["split"], ids, old.get("precision", "fp32"), config,
                     date=old.get("date"))
