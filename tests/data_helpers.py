"""Tiny BCS-DBT-shaped downloads for the data-layer tests: real JPEG 2000 DICOMs and the official tables."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from adbench_dbt.data.dicom import write_volume
from adbench_dbt.data.layout import BOXES_COLUMNS, LABELS_COLUMNS, PATHS_COLUMNS, SPLITS, TABLE_NAMES

ROWS, COLS = 64, 48
WINDOW = (500.0, 800.0)  # center, width: raw values 100..900 map to 0..1


@dataclass(frozen=True)
class Volume:
    split: str
    patient: str
    study: str
    view: str
    label: str = "normal"          # normal | actionable | benign | cancer
    n_frames: int = 8
    stored_side: str | None = None  # edge the breast touches in the stored frames; default: the view's side
    path_kind: str = "descriptive"  # which of descriptive_path / classic_path exists on disk

    @property
    def key(self) -> str:
        return f"{self.patient}_{self.study}_{self.view}"


@dataclass(frozen=True)
class BoxRow:
    split: str
    patient: str
    study: str
    view: str
    slice: int
    x: int
    y: int
    width: int
    height: int
    cls: str = "cancer"


def breast_frames(n_frames: int, side: str, seed: int = 0, rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """uint16 frames with a bright half-disc touching the `side` ('L'/'R') edge and a dark background."""
    rr, cc = np.mgrid[:rows, :cols]
    centre_col = 0 if side == "L" else cols - 1
    disc = (rr - rows / 2) ** 2 + (cc - centre_col) ** 2 < (0.45 * rows) ** 2
    rng = np.random.default_rng(seed)
    frames = np.where(disc, 600, 40)[None] + rng.integers(0, 50, (n_frames, rows, cols))
    return frames.astype(np.uint16)


def default_volumes() -> list[Volume]:
    return [
        Volume("train", "DBT-P00001", "DBT-S00001", "lcc"),
        Volume("train", "DBT-P00001", "DBT-S00001", "rmlo"),
        Volume("train", "DBT-P00002", "DBT-S00002", "rcc", n_frames=12, path_kind="classic"),
        Volume("train", "DBT-P00003", "DBT-S00003", "lmlo", label="actionable"),
        Volume("train", "DBT-P00004", "DBT-S00004", "rcc", label="cancer"),
        Volume("validation", "DBT-P00010", "DBT-S00010", "lcc"),
        Volume("validation", "DBT-P00011", "DBT-S00011", "rmlo"),
        Volume("test", "DBT-P00020", "DBT-S00020", "lcc", label="cancer"),
        Volume("test", "DBT-P00021", "DBT-S00021", "rmlo", label="cancer", stored_side="L"),
        Volume("test", "DBT-P00022", "DBT-S00022", "lmlo", label="benign"),
    ]


def default_boxes() -> list[BoxRow]:
    return [
        BoxRow("train", "DBT-P00004", "DBT-S00004", "rcc", 3, 20, 10, 8, 6),
        BoxRow("test", "DBT-P00020", "DBT-S00020", "lcc", 4, 5, 10, 8, 8),
        BoxRow("test", "DBT-P00020", "DBT-S00020", "lcc", 4, 20, 30, 6, 6),   # same slice: merged
        BoxRow("test", "DBT-P00020", "DBT-S00020", "lcc", 6, 2, 2, 5, 5),     # near the edge
        BoxRow("test", "DBT-P00021", "DBT-S00021", "rmlo", 2, 30, 20, 10, 12),
        BoxRow("test", "DBT-P00022", "DBT-S00022", "lmlo", 5, 4, 20, 6, 6, "benign"),
    ]


def relative_paths(volume: Volume) -> tuple[str, str]:
    descriptive = f"Breast-Cancer-Screening-DBT/{volume.patient}/01-01-2000-{volume.study}/{volume.view}/1-1.dcm"
    classic = f"manifest-1617905855234/{volume.patient}/1.2.3.{volume.study[-5:]}/{volume.view}/1-1.dcm"
    return descriptive, classic


def write_download(root: Path, volumes: list[Volume] | None = None, boxes: list[BoxRow] | None = None,
                   *, test_boxes: bool = True, name_index: int = 0, pixel_seed: int = 0,
                   splits: tuple[str, ...] = SPLITS) -> Path:
    """Write tables + volumes under `root` (name_index 1/2 picks the older table names; pixel_seed changes the
    pixel content, hence the files, without changing the layout; `splits` = the subset a partial download has)."""
    volumes = [v for v in (default_volumes() if volumes is None else volumes) if v.split in splits]
    boxes = default_boxes() if boxes is None else boxes
    root.mkdir(parents=True, exist_ok=True)
    for seed, volume in enumerate(volumes):
        descriptive, classic = relative_paths(volume)
        target = root / (descriptive if volume.path_kind == "descriptive" else classic)
        side = volume.stored_side or volume.view[0].upper()
        write_volume(target, breast_frames(volume.n_frames, side, seed + pixel_seed), patient_id=volume.patient,
                     study_uid=volume.study, view=volume.view, window_center=WINDOW[0], window_width=WINDOW[1])
    for split in splits:
        mine = [v for v in volumes if v.split == split]
        paths = [(v.patient, v.study, v.view, *relative_paths(v)) for v in mine]
        labels = [(v.patient, v.study, v.view, *(int(v.label == c) for c in
                                                 ("normal", "actionable", "benign", "cancer"))) for v in mine]
        frames = {(v.patient, v.study, v.view): v.n_frames for v in mine}
        box_rows = [(b.patient, b.study, b.view, 0, b.slice, b.x, b.y, b.width, b.height, b.cls, 0,
                     frames.get((b.patient, b.study, b.view), 0)) for b in boxes if b.split == split]
        write_table(root, "paths", split, pd.DataFrame(paths, columns=PATHS_COLUMNS), name_index)
        write_table(root, "labels", split, pd.DataFrame(labels, columns=LABELS_COLUMNS), name_index)
        if split != "test" or test_boxes:
            write_table(root, "boxes", split, pd.DataFrame(box_rows, columns=BOXES_COLUMNS), name_index)
    return root


def write_table(root: Path, kind: str, split: str, frame: pd.DataFrame, name_index: int = 0) -> Path:
    path = root / TABLE_NAMES[kind][split][name_index]
    frame.to_csv(path, index=False)
    return path
