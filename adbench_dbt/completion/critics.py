"""WGAN critics of DeepFill v1 (PICARD layout): a local critic on the hole crop and a global one on the window.

Names match the official `dis_*.pt` ({'localD', 'globalD'}: `dis_conv_module.conv{1..4}.conv.*`, `linear.*`).
The local critic's conv features (after conv4's LeakyReLU) are PICARD's feature encoder E for MCD_feature.
"""
from __future__ import annotations

import torch
from torch import nn

from adbench_dbt.completion.deepfill import Conv2dBlock
from adbench_dbt.execution import fp32_linear, fp32_numerics


def _halved(size: int, times: int) -> int:
    """Output side after `times` 5x5 / stride-2 / padding-2 convs (ceil(size / 2) each)."""
    for _ in range(times):
        size = (size - 1) // 2 + 1
    return size


class DisConvModule(nn.Module):
    """Four 5x5 stride-2 convs with LeakyReLU(0.2): channels cnum, 2cnum, 4cnum, 4cnum."""

    def __init__(self, input_dim: int = 1, cnum: int = 32) -> None:
        super().__init__()
        self.conv1 = Conv2dBlock(input_dim, cnum, 5, 2, 2, activation="lrelu")
        self.conv2 = Conv2dBlock(cnum, cnum * 2, 5, 2, 2, activation="lrelu")
        self.conv3 = Conv2dBlock(cnum * 2, cnum * 4, 5, 2, 2, activation="lrelu")
        self.conv4 = Conv2dBlock(cnum * 4, cnum * 4, 5, 2, 2, activation="lrelu")

    @fp32_numerics
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """In fp32 under any autocast: these features are PICARD's feature-space encoder and DMSE's critic score,
        distances and differences of which are the scores; in bf16 one demo slice in 30 fell below a Spearman of
        0.999 against fp32 (the critics are a few percent of a completion's FLOPs)."""
        return self.conv4(self.conv3(self.conv2(self.conv1(x))))


class LocalCritic(nn.Module):
    """Critic for a size x size input: conv features, flatten, one linear output (no sigmoid: WGAN)."""

    def __init__(self, input_dim: int = 1, cnum: int = 32, size: int = 128) -> None:
        super().__init__()
        self.size = size
        self.dis_conv_module = DisConvModule(input_dim, cnum)
        self.linear = nn.Linear(cnum * 4 * _halved(size, 4) ** 2, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """N x 4cnum x size/16 x size/16 (PICARD's `saved_featuremap`)."""
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise ValueError(f"{type(self).__name__}: expected {self.size}x{self.size} inputs, "
                             f"got {tuple(x.shape[-2:])}")
        return self.dis_conv_module(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 1 critic values."""
        return fp32_linear(self.linear, self.features(x).flatten(1))


class GlobalCritic(LocalCritic):
    """Critic of the whole window. `extra_downsample` prepends one 5x5 stride-2 conv (input_dim -> input_dim)
    so that a 512 window has the same feature size as a 256 one (Swiecicki 2021, FOV 512)."""

    def __init__(self, input_dim: int = 1, cnum: int = 32, size: int = 256, extra_downsample: bool = False) -> None:
        super().__init__(input_dim, cnum, _halved(size, 1) if extra_downsample else size)
        self.input_size = size
        self.input_conv = Conv2dBlock(input_dim, input_dim, 5, 2, 2, activation="lrelu") if extra_downsample else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_conv is not None:
            if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
                raise ValueError(f"GlobalCritic: expected {self.input_size}x{self.input_size} inputs, "
                                 f"got {tuple(x.shape[-2:])}")
            x = self.input_conv(x)
        return super().features(x)

