"""PICARD = the DeepFill dropout inpainter (backbone) + MCD scorers over its M stochastic completions.

M dropout-perturbed completions of N windows run as one N*M generator batch; the ground truth is encoded by the
local critic once per window. All six scores of PICARD Tables 2-3 come from that single pass.
"""
from __future__ import annotations

import torch
from pydantic import Field

from adbench_dbt.completion.backbone import Completions
from adbench_dbt.completion.deepfill_backbone import DeepFillBackbone, InpaintingConfig
from adbench_dbt.completion.method import CompletionMethod
from adbench_dbt.completion.scorers import mcd_scores
from adbench_dbt.registry import register_method


class PicardConfig(InpaintingConfig):
    completions: int = Field(10, ge=1, description="M stochastic completions per window")
    dropout: float = Field(0.5, ge=0, lt=1, description="inference Dropout2d probability")
    fine_dropout: bool = Field(False, description="also drop in the fine stage (paper wording; released code: off)")


@register_method
class Picard(CompletionMethod):
    name = "picard"
    scores_version = 2  # 2: dropout masks keyed per window (adbench_dbt.window_rng), no longer drawn per batch
    paper = "Konz et al., Unsupervised anomaly localization in high-resolution breast scans using deep " \
            "pluralistic image completion, MedIA 2023 (arXiv 2305.03098)"
    variants = ("mcd_image", "mcd_feature", "mean_image", "mean_feature", "median_image", "median_feature")
    Config = PicardConfig
    Backbone = DeepFillBackbone
    supports_distributed_fit = True  # the trainer wraps its nets in DDP under torchrun; rank 0 checkpoints

    def build_backbone(self) -> DeepFillBackbone:
        cfg = self.config
        return DeepFillBackbone(cfg, cfg.completions, self.device, dropout=(cfg.dropout, cfg.fine_dropout))

    def score_completions(self, completions: Completions) -> dict[str, torch.Tensor]:
        return mcd_scores(completions, self.backbone.local_critic.features)
