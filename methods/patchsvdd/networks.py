"""Patch SVDD networks (Yi & Yoon 2020): a 32 px encoder, hierarchical encoders for 64, 128, 256 ... px, and the
relative-position classifier of the self-supervised task. Grayscale input (one channel)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SmallEncoder(nn.Module):
    """32 x 32 -> D: eight unpadded 3x3 convs (first one stride 2), LeakyReLU(0.1), tanh at the end."""

    size = 32

    def __init__(self, dim: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        widths = [in_channels, 32, 64, 128, 128, 64, 32, 32, dim]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Conv2d(cin, cout, 3, stride=2 if i == 0 else 1))
            layers.append(nn.LeakyReLU(0.1) if i < len(widths) - 2 else nn.Tanh())
        self.layers = nn.Sequential(*layers)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.layers(patches).flatten(1)


class HierarchicalEncoder(nn.Module):
    """K x K -> D: the four (K/2)-quadrants go through the inner encoder, a 2x2 conv merges their 2x2 grid.

    The inner encoder is a SmallEncoder for K = 64 and another HierarchicalEncoder above (recursion), so K = 256
    nests 256 -> 128 -> 64 -> 32.
    """

    def __init__(self, size: int, dim: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        if size < 64 or size & (size - 1):
            raise ValueError(f"HierarchicalEncoder: patch size must be a power of two >= 64, got {size}")
        self.size, self.dim = size, dim
        half = size // 2
        self.inner = SmallEncoder(dim, in_channels) if half == 32 else HierarchicalEncoder(half, dim, in_channels)
        self.merge = nn.Sequential(nn.Conv2d(dim, 128, 2), nn.LeakyReLU(0.1), nn.Conv2d(128, dim, 1), nn.Tanh())

    def forward_with_quadrants(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N x C x K x K -> (N x D embedding, N x 2 x 2 x D embeddings of the quadrants by the inner encoder)."""
        n, c, k, _ = patches.shape
        if k != self.size:
            raise ValueError(f"HierarchicalEncoder({self.size}) got {k} px patches")
        half = k // 2
        quadrants = patches.reshape(n, c, 2, half, 2, half).permute(0, 2, 4, 1, 3, 5).reshape(4 * n, c, half, half)
        inner = self.inner(quadrants).view(n, 2, 2, self.dim)
        return self.merge(inner.permute(0, 3, 1, 2)).flatten(1), inner

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.forward_with_quadrants(patches)[0]


class NormalizedLinear(nn.Linear):
    """Linear layer whose weight columns are unit-normalised; as in the official code the normalisation runs
    without gradient, so only the bias of this layer learns (kept for fidelity)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            weight = self.weight / self.weight.norm(dim=0, keepdim=True)
        return F.linear(x, weight, self.bias)


class PositionClassifier(nn.Module):
    """h1 - h2 -> logits over the 8 neighbour positions of the 3x3 grid."""

    def __init__(self, dim: int = 64, hidden: int = 128) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, hidden),
                                    nn.LeakyReLU(0.1), NormalizedLinear(hidden, 8))

    def forward(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        return self.layers(h1 - h2)
