"""Orientation: undo unreliable stored laterality, then left-align so the chest wall is always on the left.

The BCS-DBT boxes are given in the frame *after* the laterality fix (dataset card datasets/README.md, "How a slice
is made", steps 3-4); PICARD then mirrors right-breast views (step 5), so every method sees the breast on the same
side.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from adbench_dbt.data.dicom import split_view
from adbench_dbt.data.slices import Box


def image_laterality(frame: np.ndarray) -> str:
    """'R' when the left edge is darker than the right edge (breast touches the right border), else 'L'."""
    left = float(np.sum(frame[:, 0], dtype=np.float64))
    right = float(np.sum(frame[:, -1], dtype=np.float64))
    return "R" if left < right else "L"


def needs_laterality_flip(frame: np.ndarray, view: str) -> bool:
    """True when the pixels disagree with the view's laterality (then rows AND columns must be flipped)."""
    return image_laterality(frame) != split_view(view)[0]


def fix_laterality(frame: np.ndarray, view: str) -> np.ndarray:
    """The frame in the coordinates the BCS-DBT boxes refer to."""
    return frame[::-1, ::-1] if needs_laterality_flip(frame, view) else frame


def mirror_boxes(boxes: Sequence[Box], width: int) -> tuple[Box, ...]:
    """Boxes after a left-right mirror of an image `width` pixels wide: x' = W - x - w."""
    return tuple((int(width - x - w), int(y), int(w), int(h)) for x, y, w, h in boxes)


def left_align(image: np.ndarray, boxes: Sequence[Box], view: str) -> tuple[np.ndarray, tuple[Box, ...]]:
    """Mirror right-breast views left-right (boxes with them); left views are returned unchanged."""
    boxes = tuple(tuple(int(v) for v in box) for box in boxes)
    if split_view(view)[0] == "R":
        return image[:, ::-1], mirror_boxes(boxes, image.shape[1])
    return image, boxes
