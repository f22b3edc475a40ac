"""Training pairs of Patch SVDD, cut (vectorised) from a batch of square tissue regions.

- position pairs: p2 is one of the 8 neighbours of p1 in a 3x3 grid, offset per axis by 3K/4 + U{0..K/4-1},
  clipped to the region; label = neighbour index; both patches get a per-patch intensity shift and pixel noise
  N(0, 0.02) so the classifier cannot use low-level shortcuts.
- SVDD' pairs: p2 = p1 jittered by up to K/32 px per axis (never by zero in both).
"""
from __future__ import annotations

import torch

NEIGHBOURS = torch.tensor([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])
NOISE_STD = 0.02


def gather_patches(regions: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, size: int) -> torch.Tensor:
    """regions B x C x C, integer top-left corners B -> B x 1 x size x size (one gather, no loop)."""
    n, c = regions.shape[0], regions.shape[-1]
    offsets = torch.arange(size, device=regions.device)
    rows = (tops.view(-1, 1) + offsets).view(n, size, 1)
    cols = (lefts.view(-1, 1) + offsets).view(n, 1, size)
    return torch.gather(regions.reshape(n, -1), 1, (rows * c + cols).reshape(n, -1)).view(n, 1, size, size)


def _corners(n: int, limit: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(0, limit + 1, (n, 2), generator=gen, device=device)


def position_pairs(regions: torch.Tensor, size: int, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (p1, p2, labels in 0..7)."""
    n, limit, device = regions.shape[0], regions.shape[-1] - size, regions.device
    first = _corners(n, limit, gen, device)
    labels = torch.randint(0, 8, (n,), generator=gen, device=device)
    distance = 3 * size // 4 + torch.randint(0, max(size // 4, 1), (n, 2), generator=gen, device=device)
    second = (first + NEIGHBOURS.to(device)[labels] * distance).clamp(0, limit)
    p1, p2 = (_with_noise(gather_patches(regions, c[:, 0], c[:, 1], size), gen) for c in (first, second))
    return p1, p2, labels


def jitter_pairs(regions: torch.Tensor, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (p1, p2) with p2 shifted by a non-zero jitter of at most size/32 px per axis."""
    n, limit, device = regions.shape[0], regions.shape[-1] - size, regions.device
    first = _corners(n, limit, gen, device)
    reach = max(size // 32, 1)
    side = 2 * reach + 1
    # uniform over the side x side jitter grid without its centre
    flat = torch.randint(0, side * side - 1, (n,), generator=gen, device=device)
    flat = flat + (flat >= side * side // 2).long()
    jitter = torch.stack([flat // side, flat % side], 1) - reach
    second = (first + jitter).clamp(0, limit)
    return (gather_patches(regions, first[:, 0], first[:, 1], size),
            gather_patches(regions, second[:, 0], second[:, 1], size))


def _with_noise(patches: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    shift = torch.randn(len(patches), 1, 1, 1, generator=gen, device=patches.device) * NOISE_STD
    noise = torch.randn(patches.shape, generator=gen, device=patches.device) * NOISE_STD
    return patches + shift + noise
