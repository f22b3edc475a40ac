"""Write rendered volumes exactly like the BCS-DBT download: raw-oriented multi-frame DICOM plus the official tables.

Orientation: the phantom is rendered left-aligned (chest wall at column 0). Left views are stored as rendered.
Right views are stored in the raw orientation the reader must repair: the reader flips both axes (the bright
chest-wall edge says 'L', the view says 'R'), then left-aligns by mirroring left-right; so the stored frame is the
canonical one flipped upside down, and the table box is the canonical box mirrored left-right (the frame after the
laterality flip, before left-alignment, as in the real tables).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adbench_dbt.data.dicom import write_volume
from adbench_dbt.data.layout import BOXES_COLUMNS, LABELS_COLUMNS, PATHS_COLUMNS, SPLITS, TABLE_NAMES
from adbench_dbt.data.phantom.plan import GROUPS, VolumeJob
from adbench_dbt.data.phantom.volume import render_volume
from adbench_dbt.data.slices import Box
from adbench_dbt.io import write_text

BITS_STORED = 10


def stored_orientation(frames: np.ndarray, view: str) -> np.ndarray:
    """Canonical (left-aligned) frames -> the orientation written to disk."""
    return frames[:, ::-1, :] if view.startswith("r") else frames


def table_box(box: Box, view: str, width: int) -> Box:
    """Canonical box -> the (X, Y, Width, Height) the tables hold: after the laterality flip, before left-alignment."""
    x, y, w, h = box
    return (width - x - w, y, w, h) if view.startswith("r") else (x, y, w, h)


def to_stored_values(frames: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Display values in [0, 1] -> uint16 stored values that the VOI window maps back onto [0, 1].

    Background (exactly 0) is stored below the window so it displays black, like the real detector background.
    """
    center, width = window
    low = center - width / 2.0
    raw = np.rint(low + frames.astype(np.float64) * width)
    raw = np.where(frames > 0, raw, max(low - 50.0, 0.0))
    return np.clip(raw, 0, (1 << BITS_STORED) - 1).astype(np.uint16)


def write_job(root: Path, job: VolumeJob) -> list[dict]:
    """Render one volume, write its DICOM at its descriptive path; returns its box-table rows."""
    volume = render_volume(job.spec, list(job.entropy))
    frames = to_stored_values(stored_orientation(volume.frames, job.view), job.window)
    write_volume(root / job.descriptive_path, frames, patient_id=job.patient, study_uid=job.study, view=job.view,
                 window_center=job.window[0], window_width=job.window[1], bits_stored=BITS_STORED)
    rows = []
    for subject, lesion in enumerate(volume.lesions):
        x, y, w, h = table_box(lesion.box, job.view, job.spec.shape[1])
        rows.append({"PatientID": job.patient, "StudyUID": job.study, "View": job.view, "Subject": subject,
                     "Slice": lesion.focus_frame, "X": x, "Y": y, "Width": w, "Height": h,
                     "Class": "cancer" if lesion.plan.malignant else "benign", "AD": int(lesion.is_distortion),
                     "VolumeSlices": job.spec.n_frames})
    return rows


def write_tables(root: Path, jobs: list[VolumeJob], boxes: list[list[dict]]) -> None:
    """The three official tables per split (first, current file names), sorted like the download."""
    for split in SPLITS:
        picked = [(job, rows) for job, rows in zip(jobs, boxes) if job.split == split]
        paths = pd.DataFrame([{"PatientID": j.patient, "StudyUID": j.study, "View": j.view,
                               "descriptive_path": j.descriptive_path, "classic_path": j.classic_path}
                              for j, _ in picked], columns=list(PATHS_COLUMNS))
        labels = pd.DataFrame([{"PatientID": j.patient, "StudyUID": j.study, "View": j.view,
                                **{group: int(j.group == group) for group in GROUPS}} for j, _ in picked],
                              columns=list(LABELS_COLUMNS))
        box_rows = pd.DataFrame([row for _, rows in picked for row in rows], columns=list(BOXES_COLUMNS))
        for kind, table in (("paths", paths), ("labels", labels), ("boxes", box_rows)):
            table = table.sort_values(list(table.columns[:3]), kind="stable")
            write_text(root / TABLE_NAMES[kind][split][0], table.to_csv(index=False))
