"""The heatmap -> boxes rule: peaks at the blobs, highest first, suppression radius, at most K, breast only,
fixed and region boxes, lengths scaled from native resolution."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from adbench_dbt.detection import NATIVE_ROWS, DetectionConfig, detect


def blobs(shape=(NATIVE_ROWS // 4, 400), centres=((100, 100, 3.0), (300, 200, 2.0), (500, 300, 1.0)), sigma=15.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return sum(a * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma ** 2)) for y, x, a in centres)


def centre(d):
    return d.x + d.width / 2, d.y + d.height / 2


def test_peaks_are_found_highest_first_with_fixed_boxes():
    found = detect(blobs(), config=DetectionConfig(max_boxes=3))
    assert [round(c) for d in found for c in centre(d)] == [100, 100, 200, 300, 300, 500]
    assert found[0].score > found[1].score > found[2].score
    assert found[0].width == pytest.approx(200 / 4, rel=1e-3)  # 200 native px at a quarter of the native rows


def test_suppression_radius_and_k():
    heat = blobs(centres=((100, 100, 3.0), (100, 110, 2.9)), sigma=3.0)  # 10 px apart: one finding
    near = detect(heat, config=DetectionConfig(max_boxes=2, min_distance=100))  # 25 px at this scale
    assert np.hypot(*(np.subtract(centre(near[1]), centre(near[0])))) > 24.9
    assert near[1].score < 0.01 * near[0].score  # the second blob was suppressed with the first
    assert len(detect(blobs(), config=DetectionConfig(max_boxes=1))) == 1


def test_only_inside_the_breast():
    breast = np.zeros(blobs().shape, bool)
    breast[250:, :] = True
    found = detect(blobs(), breast, DetectionConfig(max_boxes=1))
    assert centre(found[0])[1] >= 250


def test_region_box_covers_the_blob():
    (d,) = detect(blobs(centres=((300, 200, 1.0),), sigma=20.0), config=DetectionConfig(box="region", max_boxes=1))
    # half maximum of a Gaussian: radius sigma * sqrt(2 ln 2) = 23.5 px
    assert 40 <= d.width <= 52 and 40 <= d.height <= 52
    assert centre(d) == pytest.approx((200.5, 300.5), abs=1.0)


def test_unknown_or_bad_settings_are_refused():
    with pytest.raises(ValidationError):
        DetectionConfig(max_boxes=0)
    with pytest.raises(ValidationError):
        DetectionConfig(nms=3)
