"""Laterality normalisation (both axes) and left-alignment, with the boxes following the pixels."""
from __future__ import annotations

import numpy as np
import pytest

from adbench_dbt.data.cache import standardize_frame
from adbench_dbt.data.errors import DataError
from adbench_dbt.data.orientation import (fix_laterality, image_laterality, left_align, mirror_boxes,
                                          needs_laterality_flip)

from data_helpers import breast_frames


def test_edge_sum_decides_image_laterality():
    right = breast_frames(1, "R")[0]
    assert image_laterality(right) == "R" and image_laterality(right[:, ::-1]) == "L"
    assert not needs_laterality_flip(right, "rcc") and needs_laterality_flip(right, "lmlo")
    with pytest.raises(DataError, match="unknown view code"):
        needs_laterality_flip(right, "xmlo")


def test_mismatch_flips_rows_and_columns():
    frame = np.zeros((6, 5))
    frame[:, 0] = 1.0      # bright left edge: pixels say 'L'
    frame[0, 1] = 7.0      # a marker in the top-left area
    fixed = fix_laterality(frame, "rcc")
    np.testing.assert_array_equal(fixed, frame[::-1, ::-1])
    assert fixed[5, 3] == 7.0
    assert fix_laterality(frame, "lcc") is frame


def test_left_align_mirrors_right_views_and_their_boxes():
    image = np.arange(12.0).reshape(3, 4)
    aligned, boxes = left_align(image, [(0, 1, 1, 2)], "rmlo")
    np.testing.assert_array_equal(aligned, image[:, ::-1])
    assert boxes == ((3, 1, 1, 2),)
    same, same_boxes = left_align(image, [(0, 1, 1, 2)], "lmlo")
    assert same is image and same_boxes == ((0, 1, 1, 2),)
    assert mirror_boxes(mirror_boxes([(2, 0, 1, 1)], 4), 4) == ((2, 0, 1, 1),)


def test_right_view_in_raw_orientation_lines_up_with_its_box():
    """A right view stored with the wrong laterality: flipped on both axes, then mirrored; box follows."""
    rows, cols = 40, 30
    fixed = breast_frames(1, "R", rows=rows, cols=cols)[0]   # the frame as the boxes expect it
    box = (20, 5, 4, 6)                                       # (x, y, w, h) in `fixed` coordinates
    fixed[box[1]: box[1] + box[3], box[0]: box[0] + box[2]] = 1000 - 1
    stored = fixed[::-1, ::-1].copy()                         # what the scanner wrote: laterality mismatch
    image, mask = standardize_frame(stored, "rcc", center=600, width=1000)
    (x, y, w, h), = left_align(fixed, [box], "rcc")[1]
    assert image.dtype == np.uint16 and image[y: y + h, x: x + w].min() == image.max()
    assert (image == image.max()).sum() == w * h
    assert mask[:, 0].any() and not mask[:, -1].any()         # chest wall on the left after alignment
