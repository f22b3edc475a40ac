"""A run's detections in the official DBTex files, and the official figures computed from exactly those files.

`RUN_DIR/detection/` holds `predictions.csv` (the primary variant; `predictions-<variant>.csv` for the others),
`labels.csv` and `boxes.csv` (the official tables restricted to the evaluated volumes and to the boxes the run
scored against, in the official column layout, so the dataset authors' `evaluate` can be rerun on them) and
`metrics.json`. Boxes go back from the left-aligned slice coordinates to the official ones (right views mirrored
back) before anything is written. Only scored slices can produce marks; `metrics.json` says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from adbench_dbt.data.errors import DataError
from adbench_dbt.data.layout import BOXES_COLUMNS, LABELS_COLUMNS
from adbench_dbt.data.orientation import mirror_boxes
from adbench_dbt.data.tables import load_split_tables, volume_key
from adbench_dbt.detection import DetectionConfig
from adbench_dbt.froc import PREDICTION_COLUMNS, FrocCurve, evaluate
from adbench_dbt.io import atomic_path, write_json
from adbench_dbt.summary import DetectionFigures, SliceRecord

SOURCE_SPLIT = {"test": "test", "test-benign": "test", "test-fallback": "train"}
BOX_CLASS = {"test-benign": "benign"}  # every other box split is scored against cancer boxes
SCORED_ONLY_NOTE = ("only scored slices can produce marks: false positives per volume count the marks on the "
                    "scored slices of each volume (see normal_test_slices for normal volumes)")


@dataclass(frozen=True)
class RunDetections:
    figures: dict[str, DetectionFigures]   # per variant
    curves: dict[str, dict[str, FrocCurve]]  # per variant: {"all", "positive"}


def official_tables(dataset: Any, split: str, records: Sequence[SliceRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labels, boxes) of the official tables restricted to the volumes of `records` and the boxes they were
    scored against (matched after mirroring right views into slice coordinates), in the official columns."""
    source = SOURCE_SPLIT.get(split, split)
    tables = load_split_tables(dataset.root, source)
    if tables is None or tables.labels is None:
        raise DataError(f"{dataset.root}: no labels table for split {source!r}; the detection figures need one")
    entries = {e["id"]: e for e in dataset.entries(split)}
    volumes = dataset.manifest["volumes"]
    scored = {(entries[r.id]["volume"], entries[r.id]["frame"], tuple(b))
              for r in records if r.id in entries for b in r.boxes}
    evaluated = {entries[r.id]["volume"] for r in records if r.id in entries}
    labels = tables.labels[[volume_key(*k) in evaluated for k in
                            tables.labels[["PatientID", "StudyUID", "View"]].itertuples(index=False)]]
    keep = []
    if tables.boxes is not None:
        for row in tables.boxes.itertuples(index=False):
            name = volume_key(row.PatientID, row.StudyUID, row.View)
            if name not in evaluated or row.Class != BOX_CLASS.get(split, "cancer"):
                keep.append(False)
                continue
            box = (int(row.X), int(row.Y), int(row.Width), int(row.Height))
            if row.View.startswith("r"):
                box = mirror_boxes([box], volumes[name]["shape"][1])[0]
            keep.append((name, int(row.Slice), box) in scored)
    boxes = tables.boxes[keep] if tables.boxes is not None else pd.DataFrame(columns=list(BOXES_COLUMNS))
    return labels[list(LABELS_COLUMNS)].reset_index(drop=True), boxes[list(BOXES_COLUMNS)].reset_index(drop=True)


def predictions_table(dataset: Any, split: str, records: Sequence[SliceRecord], variant: str,
                      config: DetectionConfig) -> pd.DataFrame:
    """The DBTex predictions of one variant: official coordinates, Z = frame - depth // 2, Depth = depth."""
    entries = {e["id"]: e for e in dataset.entries(split)}
    volumes = dataset.manifest["volumes"]
    rows = []
    for record in records:
        volume = volumes[entries[record.id]["volume"]]
        frame = entries[record.id]["frame"]
        for d in record.detections.get(variant, []):
            x = volume["shape"][1] - d.x - d.width if volume["view"].startswith("r") else d.x
            rows.append((volume["study"], volume["view"], x, d.y, frame - config.depth // 2, d.width, d.height,
                         config.depth, d.score))
    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))


def write_run_detections(run_dir: Path, dataset: Any, split: str, records: Sequence[SliceRecord],
                         config: DetectionConfig) -> RunDetections:
    """Write `RUN_DIR/detection/*` and return the figures per variant (computed from the written files' content)."""
    out = Path(run_dir) / "detection"
    labels, boxes = official_tables(dataset, split, records)
    _write_csv(out / "labels.csv", labels)
    _write_csv(out / "boxes.csv", boxes)
    variants = list(records[0].detections) if records else []
    figures: dict[str, DetectionFigures] = {}
    curves: dict[str, dict[str, FrocCurve]] = {}
    positive = int(pd.MultiIndex.from_frame(labels[["StudyUID", "View"]])
                   .isin(pd.MultiIndex.from_frame(boxes[["StudyUID", "View"]])).sum())
    for i, variant in enumerate(variants):
        predictions = predictions_table(dataset, split, records, variant, config)
        _write_csv(out / ("predictions.csv" if i == 0 else f"predictions-{variant}.csv"), predictions)
        result, curves[variant] = evaluate(labels, boxes, predictions)
        figures[variant] = DetectionFigures(**result, volumes=len(labels), positive_volumes=positive,
                                            boxes=len(boxes))
    write_json(out / "metrics.json", {
        "variant": variants[0] if variants else None,
        **(figures[variants[0]].model_dump() if variants else {}),
        "variants": {v: f.model_dump() for v, f in figures.items()},
        "files": {v: "predictions.csv" if i == 0 else f"predictions-{v}.csv" for i, v in enumerate(variants)},
        "detection": config.model_dump(), "scored_slices": len(records), "note": SCORED_ONLY_NOTE,
        "curves": {v: {k: {"fps": c.fps, "sensitivity": c.sensitivity} for k, c in cs.items()}
                   for v, cs in curves.items()}})
    return RunDetections(figures, curves)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)  # full precision: rounding scores could merge or reorder them


def load_curves(run_dir: Path) -> dict[str, dict[str, FrocCurve]]:
    """FROC curves written by `write_run_detections` ({} when the run has no detection/metrics.json)."""
    import json

    path = Path(run_dir) / "detection" / "metrics.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {v: {k: FrocCurve(np.asarray(c["fps"]), np.asarray(c["sensitivity"])) for k, c in cs.items()}
            for v, cs in data.get("curves", {}).items()}
