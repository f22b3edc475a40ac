"""The no-learning inpainting floor: every learned inpainter (PICARD, DMSE, HFPIC) must beat it.

Telea backbone (`adbench_dbt.completion.telea`) + the hole-MSE scorer: each window's centred hole is filled by
OpenCV's Telea fast-marching inpainting and scored by the mean squared error inside the hole.
"""
from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field, model_validator

from adbench_dbt.completion.backbone import Completions
from adbench_dbt.completion.method import CompletionMethod
from adbench_dbt.completion.scorers import hole_mse
from adbench_dbt.completion.telea import TeleaBackbone
from adbench_dbt.config import WindowConfig
from adbench_dbt.data.slices import Slice
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
class TeleaInpainting(CompletionMethod):
    name = "telea"
    paper = "Telea 2004, J. Graphics Tools 9(1) (classical inpainting floor)"
    variants = ("mse",)
    Config = TeleaConfig
    Backbone = TeleaBackbone

    def build_backbone(self) -> TeleaBackbone:
        return TeleaBackbone(self.config.window, self.config.hole, self.config.radius, self.device)

    def fit(self, train: Sequence[Slice], val: Sequence[Slice] | None = None) -> None:
        """Nothing to learn."""

    def score_completions(self, completions: Completions) -> dict[str, torch.Tensor]:
        return {"mse": hole_mse(completions)[:, 0]}
