"""The record every method sees: one 2-D DBT slice, left-aligned, with its boxes and breast mask.

Images are loaded lazily (memory-mapped from the slice cache) because a training split holds thousands of
4.9-megapixel slices; only metadata lives in memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

Box = tuple[int, int, int, int]  # (x, y, width, height): top-left corner, pixels, in the left-aligned image


def boxes_mask(shape: tuple[int, int], boxes: tuple[Box, ...]) -> np.ndarray:
    """Pixel labels: True inside and on the border of any box (rows y..y+h-1, cols x..x+w-1)."""
    mask = np.zeros(shape, dtype=bool)
    for x, y, w, h in boxes:
        mask[max(y, 0): y + h, max(x, 0): x + w] = True
    return mask


@dataclass(frozen=True, eq=False)
class Slice:
    """One slice. `image` is float32 H x W in [0, 1]; `breast_mask` bool H x W; both loaded on access."""

    id: str
    shape: tuple[int, int]
    boxes: tuple[Box, ...] = ()
    patient: str = ""
    study: str = ""
    view: str = ""
    frame: int = 0
    loader: Callable[[], tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False)
    # Optional fast path for training crops: (top, left, height, width) -> (image crop, mask crop), read from a
    # memory-mapped cache without converting the whole slice.
    region_loader: Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]] | None = \
        field(default=None, repr=False)

    @property
    def image(self) -> np.ndarray:
        return self._load()[0]

    @property
    def breast_mask(self) -> np.ndarray:
        return self._load()[1]

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(image, breast_mask) in one read."""
        return self._load()

    def pinned(self) -> "Slice":
        """This slice with its pixels read once and held in memory: the runner scores, measures and draws the
        overlay from one read instead of three."""
        pair = self._load()
        return replace(self, loader=lambda: pair, region_loader=None)

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        if self.loader is None:
            raise ValueError(f"slice {self.id!r} has no pixel data attached")
        return self.loader()

    def crop(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(image, breast_mask) of one rectangle; must lie inside the slice."""
        if top < 0 or left < 0 or top + height > self.shape[0] or left + width > self.shape[1]:
            raise ValueError(f"slice {self.id!r}: crop {(top, left, height, width)} outside {self.shape}")
        if self.region_loader is not None:
            return self.region_loader(top, left, height, width)
        image, mask = self._load()
        return (np.asarray(image[top: top + height, left: left + width], dtype=np.float32),
                np.asarray(mask[top: top + height, left: left + width], dtype=bool))

    @property
    def label_mask(self) -> np.ndarray:
        return boxes_mask(self.shape, self.boxes)

    @classmethod
    def from_array(cls, id: str, image: np.ndarray, boxes: tuple[Box, ...] = (),
                   breast_mask: np.ndarray | None = None, **meta) -> "Slice":
        """An in-memory slice (tests, notebooks). The breast mask defaults to the cheap tissue threshold."""
        image = np.ascontiguousarray(image, dtype=np.float32)
        if image.ndim != 2:
            raise ValueError(f"slice {id!r}: expected a 2-D image, got shape {image.shape}")
        if breast_mask is None:
            from adbench_dbt.data.masks import breast_mask as compute_mask
            breast_mask = compute_mask(image)
        pair = (image, np.asarray(breast_mask, dtype=bool))
        return cls(id=id, shape=image.shape, boxes=tuple(tuple(int(v) for v in b) for b in boxes),
                   loader=lambda: pair, **meta)
