"""Random training crops that overlap breast tissue, shared by every method that trains on windows.

Blank (pure background) crops teach nothing and make self-supervised tasks trivial, so every trainer draws crops
here: rejection sampling on the breast mask, reading only the crop from the slice cache.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from adbench_dbt.data.slices import Slice


def sample_tissue_crops(slices: Sequence[Slice], count: int, size: int, rng: np.random.Generator,
                        min_tissue_fraction: float = 0.05, max_tries: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Draw `count` crops of size x size from random slices.

    Returns (images float32 count x size x size in [0,1], breast masks bool count x size x size). A crop is
    accepted when at least `min_tissue_fraction` of its pixels are breast; after `max_tries` rejections the
    crop with the most tissue seen is kept (so thin slices never stall training).
    """
    if not slices:
        raise ValueError("sample_tissue_crops: no slices to sample from")
    images = np.empty((count, size, size), np.float32)
    masks = np.empty((count, size, size), bool)
    for k in range(count):
        images[k], masks[k] = _one_crop(slices[int(rng.integers(len(slices)))], size, rng,
                                        min_tissue_fraction, max_tries)
    return images, masks


def _one_crop(sl: Slice, size: int, rng: np.random.Generator, min_fraction: float,
              max_tries: int) -> tuple[np.ndarray, np.ndarray]:
    height, width = sl.shape
    if height < size or width < size:
        raise ValueError(f"slice {sl.id!r} ({height}x{width}) is smaller than the {size}px training crop")
    best, best_fraction = None, -1.0
    for _ in range(max_tries):
        top, left = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
        image, mask = sl.crop(top, left, size, size)
        fraction = float(mask.mean())
        if fraction >= min_fraction:
            return image, mask
        if fraction > best_fraction:
            best, best_fraction = (image, mask), fraction
    return best
