"""HFPIC = the ICT two-stage backbone (`adbench_dbt.completion.hfpic`) + PICARD's MCD scorers.

As in the PICARD code, the feature-space scores encode with a trained PICARD local critic given by
`critic_checkpoint`; without one, only the image-space variants are produced.
"""
from __future__ import annotations

import torch

from adbench_dbt.completion.backbone import Completions
from adbench_dbt.completion.hfpic.backbone import HfpicBackbone, HfpicConfig
from adbench_dbt.completion.method import CompletionMethod
from adbench_dbt.completion.official_checkpoints import load_picard_local_critic
from adbench_dbt.completion.scorers import mcd_scores
from adbench_dbt.config import content_field
from adbench_dbt.registry import register_method

IMAGE_VARIANTS = ("mcd_image", "mean_image", "median_image")
FEATURE_VARIANTS = ("mcd_feature", "mean_feature", "median_feature")


class HfpicMethodConfig(HfpicConfig):
    critic_checkpoint: str | None = content_field("trained PICARD model/checkpoint whose local critic encodes "
                                                  "feature-space scores (none: image space only)")


@register_method
class Hfpic(CompletionMethod):
    name = "hfpic"
    scores_version = 2  # 2: token samples keyed per window (adbench_dbt.window_rng), no longer drawn per batch
    paper = "Wan et al., High-Fidelity Pluralistic Image Completion with Transformers, ICCV 2021 (ICT), scored " \
            "as in Konz et al. 2023 (PICARD's MCD)"
    variants = IMAGE_VARIANTS + FEATURE_VARIANTS
    notes = "*_feature variants only with critic_checkpoint (a trained PICARD model); without: image space only"
    Config = HfpicMethodConfig
    Backbone = HfpicBackbone

    def __init__(self, config: HfpicMethodConfig | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device)
        cfg = self.config
        self.critic = None if cfg.critic_checkpoint is None else \
            load_picard_local_critic(cfg.critic_checkpoint, cfg.hole, self.device)
        self.variants = self.variants if self.critic is not None else IMAGE_VARIANTS

    def build_backbone(self) -> HfpicBackbone:
        return HfpicBackbone(self.config, self.device)

    def score_completions(self, completions: Completions) -> dict[str, torch.Tensor]:
        return mcd_scores(completions, self.critic.features if self.critic is not None else None)
