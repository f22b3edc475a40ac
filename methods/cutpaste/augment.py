"""CutPaste and CutPaste-Scar (Li et al. 2021), vectorised over a batch of grayscale crops, tissue-only pasting.

Both augmentations are one operation: cut a (possibly rotated) h x w rectangle from a colour-jittered copy of the
same crop and paste it at a destination centred on breast tissue; only destination pixels that are tissue are
overwritten, so a patch is never pasted into the black background (PICARD's DBT rule, which keeps the task hard).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

AREA_RATIO = (0.02, 0.15)
ASPECT_RATIO = (0.3, 3.3)
SCAR_WIDTH = (2.0, 16.0)
SCAR_LENGTH = (10.0, 25.0)
SCAR_ANGLE_DEG = (-45.0, 45.0)
JITTER = 0.1  # brightness and contrast (saturation and hue do not exist in grayscale)


@dataclass(frozen=True)
class PasteParams:
    """Per-sample parameters drawn for one batch (heights/widths in pixels, angles in radians)."""

    heights: torch.Tensor
    widths: torch.Tensor
    angles: torch.Tensor
    centers: torch.Tensor  # B x 2 destination centre (row, col)


def _uniform(low: float, high: float, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def color_jitter(images: torch.Tensor, gen: torch.Generator, strength: float = JITTER) -> torch.Tensor:
    """Random brightness then contrast factor in [1 - strength, 1 + strength] per image (torchvision order)."""
    n, device = len(images), images.device
    shape = (n,) + (1,) * (images.dim() - 1)
    out = images * _uniform(1 - strength, 1 + strength, n, gen, device).view(shape)
    mean = out.mean(dim=tuple(range(1, images.dim())), keepdim=True)
    out = (out - mean) * _uniform(1 - strength, 1 + strength, n, gen, device).view(shape) + mean
    return out.clamp(0, 1)


def cutpaste(images: torch.Tensor, breast: torch.Tensor, gen: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, PasteParams]:
    """Rectangle of area ratio U[0.02, 0.15] and log-uniform aspect ratio in [0.3, 3.3], no rotation."""
    n, size, device = len(images), images.shape[-1], images.device
    area = _uniform(*AREA_RATIO, n, gen, device) * size * size
    aspect = torch.exp(_uniform(math.log(ASPECT_RATIO[0]), math.log(ASPECT_RATIO[1]), n, gen, device))
    heights = torch.sqrt(area / aspect).round().clamp(1, size)
    widths = torch.sqrt(area * aspect).round().clamp(1, size)
    return _paste(images, breast, heights, widths, torch.zeros(n, device=device), gen)


def cutpaste_scar(images: torch.Tensor, breast: torch.Tensor, gen: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor, PasteParams]:
    """Thin scar: width U[2, 16] px, length U[10, 25] px, rotated by U[-45, 45] degrees."""
    n, size, device = len(images), images.shape[-1], images.device
    widths = _uniform(*SCAR_WIDTH, n, gen, device).round().clamp(1, size)
    heights = _uniform(*SCAR_LENGTH, n, gen, device).round().clamp(1, size)
    angles = torch.deg2rad(_uniform(*SCAR_ANGLE_DEG, n, gen, device))
    return _paste(images, breast, heights, widths, angles, gen)


def _paste(images: torch.Tensor, breast: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor,
           angles: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, PasteParams]:
    """images, breast: B x P x P. Returns (augmented images, pasted-pixel mask, parameters)."""
    if images.dim() != 3 or images.shape[1] != images.shape[2] or breast.shape != images.shape:
        raise ValueError(f"CutPaste expects B x P x P images and masks, got {tuple(images.shape)} and "
                         f"{tuple(breast.shape)}")
    n, size, device = len(images), images.shape[-1], images.device
    cos, sin = torch.cos(angles), torch.sin(angles)
    # half-extent of the rotated patch, so that the whole patch fits inside the crop around its centre
    half_rows = 0.5 * (heights * cos.abs() + widths * sin.abs())
    half_cols = 0.5 * (heights * sin.abs() + widths * cos.abs())
    centers = _tissue_centers(breast, half_rows, half_cols, gen)

    coords = torch.arange(size, device=device, dtype=torch.float32)
    dy = coords.view(1, -1, 1) - centers[:, 0].view(-1, 1, 1)
    dx = coords.view(1, 1, -1) - centers[:, 1].view(-1, 1, 1)
    u = cos.view(-1, 1, 1) * dy + sin.view(-1, 1, 1) * dx  # destination -> unrotated patch coordinates
    v = -sin.view(-1, 1, 1) * dy + cos.view(-1, 1, 1) * dx
    h, w = heights.view(-1, 1, 1), widths.view(-1, 1, 1)
    inside = (u >= -h / 2) & (u < h / 2) & (v >= -w / 2) & (v < w / 2)
    pasted = inside & breast

    # source: the unrotated patch at a random top-left of the jittered crop
    src_top = torch.floor(torch.rand(n, generator=gen, device=device) * (size - heights + 1))
    src_left = torch.floor(torch.rand(n, generator=gen, device=device) * (size - widths + 1))
    src_rows = torch.floor(src_top.view(-1, 1, 1) + h / 2 + u).clamp(0, size - 1).long()
    src_cols = torch.floor(src_left.view(-1, 1, 1) + w / 2 + v).clamp(0, size - 1).long()
    source = color_jitter(images, gen)
    values = torch.gather(source.reshape(n, -1), 1, (src_rows * size + src_cols).reshape(n, -1)).view_as(images)
    return torch.where(pasted, values, images), pasted, PasteParams(heights, widths, angles, centers)


def _tissue_centers(breast: torch.Tensor, half_rows: torch.Tensor, half_cols: torch.Tensor,
                    gen: torch.Generator) -> torch.Tensor:
    """A tissue pixel per sample where the patch fits inside the crop (fallbacks: any tissue, any fitting pixel)."""
    n, size = breast.shape[0], breast.shape[-1]
    coords = torch.arange(size, device=breast.device, dtype=torch.float32)
    fits_rows = (coords.view(1, -1) >= half_rows.view(-1, 1)) & (coords.view(1, -1) <= size - half_rows.view(-1, 1))
    fits_cols = (coords.view(1, -1) >= half_cols.view(-1, 1)) & (coords.view(1, -1) <= size - half_cols.view(-1, 1))
    fits = fits_rows[:, :, None] & fits_cols[:, None, :]
    weights = (fits & breast).reshape(n, -1).float()
    for fallback in (breast, fits):
        empty = weights.sum(1) == 0
        weights = torch.where(empty[:, None], fallback.reshape(n, -1).float(), weights)
    weights = torch.where((weights.sum(1) == 0)[:, None], torch.ones_like(weights), weights)
    flat = torch.multinomial(weights, 1, generator=gen).squeeze(1)
    return torch.stack([flat // size, flat % size], 1).float()
