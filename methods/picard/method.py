"""PICARD: score each window by how far its true centre lies from M stochastic completions (min over M).

M dropout-perturbed completions of N windows run as one N*M generator batch; the ground truth is encoded by the
local critic once per window. All six scores of PICARD Tables 2-3 come from that single pass.
"""
from __future__ import annotations

import torch
from pydantic import Field

from adbench_dbt.nn.completion_scores import completion_scores
from adbench_dbt.nn.inpainting_method import InpaintingConfig, InpaintingMethod
from adbench_dbt.registry import register_method


class PicardConfig(InpaintingConfig):
    completions: int = Field(10, ge=1, description="M stochastic completions per window")
    dropout: float = Field(0.5, ge=0, lt=1, description="inference Dropout2d probability")
    fine_dropout: bool = Field(False, description="also drop in the fine stage (paper wording; released code: off)")


@register_method
class Picard(InpaintingMethod):
    name = "picard"
    paper = "Konz et al., Unsupervised anomaly localization in high-resolution breast scans using deep " \
            "pluralistic image completion, MedIA 2023 (arXiv 2305.03098)"
    variants = ("mcd_image", "mcd_feature", "mean_image", "mean_feature", "median_image", "median_feature")
    Config = PicardConfig

    def inference_dropout(self) -> tuple[float, bool]:
        return self.config.dropout, self.config.fine_dropout

    def score_windows(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        truth, masked = self.masked_input(windows)
        _, completed = self.generator(masked.repeat_interleave(self.config.completions, dim=0), self.hole_mask)
        # inside the hole the composite x2*mask + x*(1-mask) is x2 itself
        return completion_scores(truth[self.hole_box], completed[self.hole_box], self.local_critic.features)
