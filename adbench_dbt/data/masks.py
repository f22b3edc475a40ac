"""Breast (tissue) mask: threshold + largest connected component. Cheap, used by metrics and window skipping."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

TISSUE_THRESHOLD = 0.02


def breast_mask(image: np.ndarray, threshold: float = TISSUE_THRESHOLD) -> np.ndarray:
    """Largest connected region brighter than `threshold`, holes filled (background is black in DBT)."""
    fg = image > threshold
    labels, n = ndimage.label(fg)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        fg = labels == int(np.argmax(sizes))
    return ndimage.binary_fill_holes(fg)
