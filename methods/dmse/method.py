"""DMSE (Swiecicki et al. 2021) = the DeepFill inpainter without dropout (backbone, M = 1) + the MSE x
discriminator scorer.

One pass gives all three scores: `mse` (hole reconstruction error), `discr` (critic score, see DmseConfig)
and their product `dmse`.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from adbench_dbt.completion.backbone import Completions
from adbench_dbt.completion.deepfill_backbone import DeepFillBackbone, InpaintingConfig
from adbench_dbt.completion.method import CompletionMethod
from adbench_dbt.completion.scorers import dmse_scores
from adbench_dbt.registry import register_method


class DmseConfig(InpaintingConfig):
    discr: Literal["critic_gap", "generator_loss"] = Field(
        "critic_gap", description="critic_gap: D(real) - D(completion); generator_loss: -D(completion)")
    discr_critics: Literal["local+global", "local", "global"] = Field(
        "local+global", description="critics summed into discr (global weighted by global_wgan_loss_alpha)")
    global_extra_conv: bool = Field(False, description="stride-2 conv in front of the global critic (FOV 512)")


@register_method
class Dmse(CompletionMethod):
    name = "dmse"
    paper = "Swiecicki et al., Generative adversarial network-based image completion to identify abnormal " \
            "locations in digital breast tomosynthesis images, Sci. Rep. 11:10276 (2021)"
    variants = ("mse", "discr", "dmse")
    Config = DmseConfig
    Backbone = DeepFillBackbone
    supports_distributed_fit = True  # the trainer wraps its nets in DDP under torchrun; rank 0 checkpoints

    def build_backbone(self) -> DeepFillBackbone:
        return DeepFillBackbone(self.config, 1, self.device, global_extra_conv=self.config.global_extra_conv)

    def score_completions(self, completions: Completions) -> dict[str, torch.Tensor]:
        return dmse_scores(completions, self._critic_score)

    def _critic_score(self, truth: torch.Tensor, completed: torch.Tensor) -> torch.Tensor:
        """The configured critics' disagreement between the true and the completed windows (N scores)."""
        cfg, box, n = self.config, self.backbone.hole_box, truth.shape[0]
        parts = []
        if cfg.discr_critics in ("local+global", "local"):
            parts.append(self.backbone.local_critic(torch.cat([truth[box], completed[box]]))[:, 0].float())
        if cfg.discr_critics in ("local+global", "global"):
            weight = cfg.global_wgan_loss_alpha if cfg.discr_critics == "local+global" else 1.0
            parts.append(weight * self.backbone.global_critic(torch.cat([truth, completed]))[:, 0].float())
        values = torch.stack(parts).sum(dim=0)
        real, fake = values[:n], values[n:]
        return real - fake if cfg.discr == "critic_gap" else -fake
