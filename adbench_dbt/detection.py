"""From a heatmap to scored boxes: the rule that turns a localisation method into a DBTex-style detector.

Steps (README, "Detection"): Gaussian smoothing (single-pixel spikes are not findings), then greedy non-maximum
suppression on the smoothed map (take the highest pixel, clear a disc of `min_distance` around it, repeat), at most
`max_boxes` peaks per slice, only inside the breast. Each peak becomes a box centred on it, either of fixed size or
the bounding box of the connected region above half the peak's height (`box="region"`); its score is the smoothed
heatmap value at the peak. Lengths are given at native BCS-DBT resolution (2457 rows) and scaled with the slice
height, so the rule behaves the same on the downscaled phantom. Each step is one vectorised pass over the map; only
the K peaks are a Python loop.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

NATIVE_ROWS = 2457  # rows of a BCS-DBT frame: the unit the pixel lengths below are given in


class DetectionConfig(BaseModel):
    """The heatmap -> boxes rule. Defaults follow from the official scoring rule, not from test results."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sigma: float = Field(8.0, ge=0, description="Gaussian smoothing sigma, native px (0: none)")
    min_distance: float = Field(100.0, gt=0, description="NMS radius, native px: the official 100 px hit radius")
    box: Literal["fixed", "region"] = "fixed"
    box_size: float = Field(200.0, gt=0, description="side of a fixed box, native px (the hit disc's diameter)")
    region_level: float = Field(0.5, gt=0, lt=1, description="region box: fraction of the peak's height above "
                                                             "the breast minimum")
    max_boxes: int = Field(10, ge=1, description="K boxes per slice at most")
    depth: int = Field(1, ge=1, description="Depth (slices) written for each box; Z = frame - depth // 2")
    breast_only: bool = Field(True, description="peaks only inside the breast mask")


class Detection(BaseModel):
    """One scored box in the slice's (left-aligned) pixel coordinates: top-left corner, size, score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x: float
    y: float
    width: float
    height: float
    score: float


def detect(heatmap: np.ndarray, breast: np.ndarray | None = None,
           config: DetectionConfig = DetectionConfig()) -> list[Detection]:
    """At most `config.max_boxes` boxes, highest score first."""
    heat = np.asarray(heatmap, dtype=np.float64)
    scale = heat.shape[0] / NATIVE_ROWS
    smooth = ndimage.gaussian_filter(heat, config.sigma * scale, mode="nearest") if config.sigma > 0 else heat.copy()
    allowed = np.ones(heat.shape, bool) if breast is None or not config.breast_only else np.asarray(breast, bool)
    if not allowed.any():
        allowed = np.ones(heat.shape, bool)  # no breast found: the whole slice may hold marks
    work = np.where(allowed, smooth, -np.inf)
    floor = float(smooth[allowed].min())
    radius = max(config.min_distance * scale, 1.0)
    half = config.box_size * scale / 2
    found: list[Detection] = []
    for _ in range(config.max_boxes):
        flat = int(np.argmax(work))
        peak = work.flat[flat]
        if not np.isfinite(peak):
            break
        py, px = divmod(flat, heat.shape[1])
        if config.box == "region":
            x, y, w, h = _region_box(smooth, allowed, py, px, floor + config.region_level * (peak - floor))
        else:
            x, y, w, h = px + 0.5 - half, py + 0.5 - half, 2 * half, 2 * half
        found.append(Detection(x=round(x, 3), y=round(y, 3), width=round(w, 3), height=round(h, 3),
                               score=float(peak)))  # millipixels: readable CSVs, centres moved < 0.001 px
        _clear_disc(work, py, px, radius)
    return found


def _clear_disc(work: np.ndarray, py: int, px: int, radius: float) -> None:
    r = int(np.ceil(radius))
    top, left = max(py - r, 0), max(px - r, 0)
    window = work[top: py + r + 1, left: px + r + 1]
    yy, xx = np.ogrid[top: top + window.shape[0], left: left + window.shape[1]]
    window[(yy - py) ** 2 + (xx - px) ** 2 <= radius ** 2] = -np.inf


def _region_box(smooth: np.ndarray, allowed: np.ndarray, py: int, px: int,
                level: float) -> tuple[float, float, float, float]:
    """Bounding box of the connected pixels >= level that contain the peak."""
    labels, _ = ndimage.label((smooth >= level) & allowed, structure=np.ones((3, 3), bool))
    ys, xs = np.nonzero(labels == labels[py, px])
    return float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)
