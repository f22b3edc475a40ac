"""AUPRO@0.3 against an independent, literal reference (a loop over every distinct threshold, per-region overlap
by masks, trapezoids up to FPR 0.3 with the last one cut at 0.3), and the properties that define it.

Why not anomalib: it is not a dependency, and installing it pulls in Lightning and a model zoo for one function;
the reference below is the MVTec AD definition written out directly. anomalib computes a ROC curve per region and
averages them after interpolating onto a common FPR grid (recent versions can also bin the thresholds), so it
approximates this exact value rather than equalling it.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from adbench_dbt.aupro import aupro, box_regions, integrate_to, pro_curve
from adbench_dbt.data.slices import boxes_mask
from adbench_dbt.metrics import heatmap_metrics, hit


def reference_aupro(scores: np.ndarray, mask: np.ndarray, limit: float = 0.3) -> float:
    regions, n = ndimage.label(mask, structure=np.ones((3, 3)))
    negatives = ~mask
    points = [(0.0, 0.0)]
    for t in np.unique(scores)[::-1]:
        above = scores >= t
        fpr = (above & negatives).sum() / negatives.sum()
        pro = np.mean([(above & (regions == r)).sum() / (regions == r).sum() for r in range(1, n + 1)])
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


@pytest.mark.parametrize("seed", range(5))
def test_aupro_equals_the_literal_definition(seed):
    rng = np.random.default_rng(seed)
    mask = boxes_mask((40, 50), ((3, 4, 8, 6), (30, 20, 12, 15), (35, 30, 10, 8)))  # two boxes overlap: one region
    scores = rng.normal(size=(40, 50)) + 1.5 * mask
    if seed % 2:
        scores = np.round(scores, 1)  # many ties
    assert aupro(scores, box_regions(mask)) == pytest.approx(reference_aupro(scores, mask), abs=1e-12)


def test_perfect_map_is_one_and_each_region_weighs_the_same():
    mask = boxes_mask((30, 30), ((0, 0, 2, 2), (10, 10, 15, 15)))
    assert aupro(mask.astype(float), box_regions(mask)) == pytest.approx(1.0)
    # only the big region found, the small one below every negative pixel: PRO is 1/2 however large the found
    # region is, up to FPR 1, so AUPRO is 1/2 (a per-pixel measure would be near 1)
    scores = np.where(boxes_mask((30, 30), ((10, 10, 15, 15),)), 1.0, np.where(mask, 0.0, 0.5))
    assert aupro(scores, box_regions(mask)) == pytest.approx(0.5)


def test_curve_and_integration_by_hand():
    fpr, pro = pro_curve(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1, 0, 0, 0]))
    assert fpr.tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 1]) and pro.tolist() == [0, 1, 1, 1, 1]
    assert integrate_to(np.array([0.0, 0.2, 0.4]), np.array([0.0, 1.0, 1.0]), 0.3) == pytest.approx(0.1 + 0.1)


def test_hit_uses_the_maximum_inside_the_breast():
    heat = np.zeros((10, 10))
    heat[0, 0] = 9.0  # outside the breast: ignored
    heat[5, 5] = 1.0
    breast = np.zeros((10, 10), bool)
    breast[2:, 2:] = True
    labels = boxes_mask((10, 10), ((4, 4, 3, 3),))
    assert hit(heat, labels, breast)
    assert not hit(heat, labels, np.ones((10, 10), bool))


def test_breast_only_aupro_ignores_regions_outside_the_scored_pixels():
    labels = boxes_mask((20, 20), ((2, 2, 3, 3), (12, 12, 4, 4)))
    breast = np.zeros((20, 20), bool)
    breast[8:, 8:] = True  # the first box lies outside
    heat = labels.astype(float)
    assert heatmap_metrics(heat, labels, breast, breast_only=True)["aupro"] == pytest.approx(1.0)
