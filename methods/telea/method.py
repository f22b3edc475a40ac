"""The no-learning inpainting floor: every learned inpainter (PICARD, DMSE) must beat it.

Each window's centred hole is filled with OpenCV's Telea fast-marching inpainting and scored by the mean squared
error inside the hole. Windows are tiled into one mosaic per batch and inpainted by a single OpenCV call: Telea only
looks `radius` pixels around the hole, and the hole sits (window - hole) / 2 > radius pixels from the window's
border, so neighbouring tiles never influence each other and the result equals per-window inpainting.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch
from pydantic import Field, model_validator

from adbench_dbt.config import WindowConfig
from adbench_dbt.data.slices import Slice
from adbench_dbt.method import WindowMethod
from adbench_dbt.registry import register_method


class TeleaConfig(WindowConfig):
    hole: int = Field(128, ge=2, description="side of the centred square hole")
    radius: int = Field(5, ge=1, description="Telea neighbourhood radius in pixels")

    @model_validator(mode="after")
    def _hole_fits(self) -> "TeleaConfig":
        if (self.window - self.hole) // 2 <= self.radius:
            raise ValueError(f"hole {self.hole} in window {self.window} leaves no border wider than radius {self.radius}")
        return self


@register_method
class TeleaInpainting(WindowMethod):
    name = "telea"
    paper = "Telea 2004, J. Graphics Tools 9(1) (classical inpainting floor)"
    variants = ("mse",)
    Config = TeleaConfig

    def fit(self, train: Sequence[Slice], val: Sequence[Slice] | None = None) -> None:
        """Nothing to learn."""

    def score_windows(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        n, p = windows.shape[0], cfg.window
        lo, hi = (p - cfg.hole) // 2, (p + cfg.hole) // 2
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        tiles = np.zeros((rows * cols, p, p), np.float32)
        tiles[:n] = windows[:, 0].float().cpu().numpy()
        truth = tiles[:n, lo:hi, lo:hi].copy()
        tiles[:, lo:hi, lo:hi] = 0.0
        hole = np.zeros((p, p), np.uint8)
        hole[lo:hi, lo:hi] = 1
        mosaic = tiles.reshape(rows, cols, p, p).transpose(0, 2, 1, 3).reshape(rows * p, cols * p)
        filled = cv2.inpaint(mosaic, np.tile(hole, (rows, cols)), cfg.radius, cv2.INPAINT_TELEA)
        filled = filled.reshape(rows, p, cols, p).transpose(0, 2, 1, 3).reshape(rows * cols, p, p)[:n]
        mse = ((filled[:, lo:hi, lo:hi] - truth) ** 2).mean(axis=(1, 2))
        return {"mse": torch.from_numpy(mse).to(windows.device)}
