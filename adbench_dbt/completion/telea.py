"""Telea's fast-marching inpainting (OpenCV) as a completion backbone: classical, deterministic, M = 1.

Windows are tiled into one mosaic per batch and inpainted by a single OpenCV call: Telea only looks `radius`
pixels around the hole, and the hole sits (window - hole) / 2 > radius pixels from the window's border, so
neighbouring tiles never influence each other and the result equals per-window inpainting.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from adbench_dbt.completion.backbone import CompletionBackbone, Completions


class TeleaBackbone(CompletionBackbone):
    """One deterministic completion per window, in [0, 1]; nothing to learn."""

    def __init__(self, window: int, hole: int, radius: int, device: torch.device | str = "cpu") -> None:
        super().__init__(window, hole, 1, device)
        if (window - hole) // 2 <= radius:
            raise ValueError(f"hole {hole} in window {window} leaves no border wider than radius {radius}")
        self.radius = radius

    def complete(self, windows: torch.Tensor) -> Completions:
        n, p = windows.shape[0], self.window
        rows_box, cols_box = self.box
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        tiles = np.zeros((rows * cols, p, p), np.float32)
        tiles[:n] = windows[:, 0].float().cpu().numpy()
        tiles[:, rows_box, cols_box] = 0.0
        hole = np.zeros((p, p), np.uint8)
        hole[rows_box, cols_box] = 1
        mosaic = tiles.reshape(rows, cols, p, p).transpose(0, 2, 1, 3).reshape(rows * p, cols * p)
        filled = cv2.inpaint(mosaic, np.tile(hole, (rows, cols)), self.radius, cv2.INPAINT_TELEA)
        filled = filled.reshape(rows, p, cols, p).transpose(0, 2, 1, 3).reshape(rows * cols, p, p)[:n]
        done = windows.float().clone()
        done[:, 0, rows_box, cols_box] = torch.from_numpy(filled[:, rows_box, cols_box]).to(windows.device)
        return Completions(windows.float(), done[:, None], self.box)
