"""The colour palette that turns a 32 x 32 image into tokens: grayscale K-means by default, or ICT's RGB palette.

ICT quantises RGB pixels to the nearest of 512 ImageNet k-means centres; only 48 of them are ever nearest to a pure
grey, so grey windows get a palette of their own: K-means of the 32 x 32 pixel values of normal training windows
(stored in the checkpoint). ICT's own `kmeans_centers.npy` (512 x 3 in [-1, 1]) is accepted too, so official ICT
checkpoints are usable: grey g is replicated to (g, g, g) and mapped to the nearest RGB centre; a token's grey
value is the ITU-R 601 luma of its centre.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adbench_dbt.errors import CheckpointError

LUMA = (0.299, 0.587, 0.114)  # PIL's convert("L"), which makes ICT's RGB output grey


def fit_grey_palette(values: torch.Tensor, k: int, iterations: int = 30) -> torch.Tensor:
    """K x 1 centres in [0, 1]: Lloyd's K-means on 1-D pixel values, started at the quantiles (deterministic)."""
    values = values.reshape(-1).double()
    if values.numel() < k:
        raise ValueError(f"{values.numel()} pixel values cannot make a palette of {k} colours")
    centres = torch.quantile(values, (torch.arange(k, dtype=torch.float64) + 0.5) / k)
    for _ in range(iterations):
        centres, _ = torch.sort(centres)
        labels = torch.bucketize(values, (centres[1:] + centres[:-1]) / 2)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, labels, values)
        counts = torch.bincount(labels, minlength=k).double()
        # an empty cluster keeps its centre (duplicated quantiles in flat images)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return torch.sort(centres).values.float()[:, None]


def read_ict_palette(path: str | Path) -> torch.Tensor:
    """ICT's `kmeans_centers.npy` (K x 3 in [-1, 1]) as K x 3 centres in [0, 1] (ICT: rint(127.5 * (c + 1)) / 255)."""
    path = Path(path)
    try:
        centres = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: palette file not found (expected ICT's kmeans_centers.npy, K x 3 in "
                              "[-1, 1])") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable .npy palette ({err})") from None
    if centres.ndim != 2 or centres.shape[1] != 3 or not np.issubdtype(centres.dtype, np.number):
        raise CheckpointError(f"{path}: palette of shape {centres.shape}, expected K x 3 RGB centres in [-1, 1] "
                              "(ICT's kmeans_centers.npy is 512 x 3)")
    if np.abs(centres).max() > 1.0 + 1e-6:
        raise CheckpointError(f"{path}: palette values outside [-1, 1] (max |c| = {np.abs(centres).max():.3g})")
    return torch.from_numpy(np.rint(127.5 * (centres.astype(np.float64) + 1)) / 255.0).float()


def quantise(images: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """B x 1 x h x w grey images in [0, 1] -> B x (h*w) indices of the nearest centre.

    Grey palette (K x 1): bucketize against the midpoints of the sorted centres (no B x hw x K distance tensor).
    RGB palette (K x 3): as ICT, pixels are 8-bit grey levels l, replicated to (l, l, l) and mapped to the centre
    at the smallest squared distance: a 256-entry lookup table.
    """
    pixels = images.flatten(1)
    if centres.shape[1] == 1:
        order = torch.argsort(centres[:, 0])
        ordered = centres[order, 0].to(pixels.dtype)
        return order[torch.bucketize(pixels.contiguous(), (ordered[1:] + ordered[:-1]) / 2)]
    levels = torch.arange(256, dtype=torch.float64, device=centres.device)[:, None, None] / 255.0
    table = (levels - centres.double()).pow(2).sum(-1).argmin(dim=1)  # 256 grey levels -> nearest centre
    return table[torch.round(pixels.clamp(0, 1) * 255).long()]


def dequantise(tokens: torch.Tensor, centres: torch.Tensor, side: int) -> torch.Tensor:
    """B x (side*side) indices -> B x C x side x side colours of the palette (C = 1 grey or 3 RGB)."""
    return centres[tokens].transpose(1, 2).reshape(tokens.shape[0], centres.shape[1], side, side)


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """B x C x H x W -> B x 1 x H x W: identity for grey, ITU-R 601 luma for RGB."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)
