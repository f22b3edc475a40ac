"""DMSE (Swiecicki et al. 2021): deterministic completion of each window's centre; MSE x critic disagreement.

One pass gives all three scores: `mse` (hole reconstruction error), `discr` (critic score, see DmseConfig)
and their product `dmse`.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from adbench_dbt.nn.critics import GlobalCritic
from adbench_dbt.nn.inpainting_method import InpaintingConfig, InpaintingMethod
from adbench_dbt.registry import register_method


class DmseConfig(InpaintingConfig):
    discr: Literal["critic_gap", "generator_loss"] = Field(
        "critic_gap", description="critic_gap: D(real) - D(completion); generator_loss: -D(completion)")
    discr_critics: Literal["local+global", "local", "global"] = Field(
        "local+global", description="critics summed into discr (global weighted by global_wgan_loss_alpha)")
    global_extra_conv: bool = Field(False, description="stride-2 conv in front of the global critic (FOV 512)")


@register_method
class Dmse(InpaintingMethod):
    name = "dmse"
    paper = "Swiecicki et al., Generative adversarial network-based image completion to identify abnormal " \
            "locations in digital breast tomosynthesis images, Sci. Rep. 11:10276 (2021)"
    variants = ("mse", "discr", "dmse")
    Config = DmseConfig

    def build_global_critic(self) -> GlobalCritic:
        cfg = self.config
        return GlobalCritic(1, cfg.critic_cnum, cfg.window, extra_downsample=cfg.global_extra_conv)

    def score_windows(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        truth, masked = self.masked_input(windows)
        _, completed = self.generator(masked, self.hole_mask)
        completed = completed * self.hole_mask + masked
        box = self.hole_box
        mse = (completed[box] - truth[box]).pow(2).flatten(1).mean(dim=1)
        discr = self._critic_score(truth, completed)
        return {"mse": mse, "discr": discr, "dmse": mse * discr}

    def _critic_score(self, truth: torch.Tensor, completed: torch.Tensor) -> torch.Tensor:
        cfg, box, n = self.config, self.hole_box, truth.shape[0]
        parts = []
        if cfg.discr_critics in ("local+global", "local"):
            parts.append(self.local_critic(torch.cat([truth[box], completed[box]]))[:, 0])
        if cfg.discr_critics in ("local+global", "global"):
            weight = cfg.global_wgan_loss_alpha if cfg.discr_critics == "local+global" else 1.0
            parts.append(weight * self.global_critic(torch.cat([truth, completed]))[:, 0])
        values = torch.stack(parts).sum(dim=0)
        real, fake = values[:n], values[n:]
        return real - fake if cfg.discr == "critic_gap" else -fake
