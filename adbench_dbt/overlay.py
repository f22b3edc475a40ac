"""PNG overlays for looking at results: slice | heatmap (colour-mapped) with the radiologist boxes drawn on both."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from adbench_dbt.data.slices import Box
from adbench_dbt.io import atomic_path

# anchor colours of a perceptually ordered dark-to-bright map (black, purple, red, orange, pale yellow)
_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float64)
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
                 for c in range(3)], axis=1).astype(np.uint8)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """H x W float -> H x W x 3 uint8, scaled between the 1st and 99.9th percentiles."""
    lo, hi = np.percentile(heatmap, [1.0, 99.9])
    scaled = np.clip((heatmap - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    return _LUT[(scaled * 255).astype(np.uint8)]


def render_overlay(path: str | Path, image: np.ndarray, heatmap: np.ndarray, boxes: tuple[Box, ...],
                   max_height: int = 1024) -> None:
    gray = np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    panel = Image.fromarray(np.concatenate([gray, colorize(heatmap)], axis=1))
    height, width = image.shape
    draw = ImageDraw.Draw(panel)
    line = max(1, height // 256)
    for x, y, w, h in boxes:
        for offset in (0, width):
            draw.rectangle([x + offset, y, x + offset + w - 1, y + h - 1], outline=(0, 255, 0), width=line)
    if height > max_height:
        panel = panel.resize((panel.width * max_height // height, max_height), Image.Resampling.BILINEAR)
    with atomic_path(path) as tmp:
        panel.save(tmp, format="PNG")
