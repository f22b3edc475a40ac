"""Random training crops that overlap breast tissue, shared by every method that trains on windows.

Blank (pure background) crops teach nothing and make self-supervised tasks trivial, so every trainer draws crops
here: rejection sampling on the breast mask, reading only the crop from the slice cache.

`CropStream` is how trainers get each step's crops. With `loader_workers = 0` they are drawn in the training
process from the fit's own random stream (bitwise the crops of earlier harness versions). With N > 0 worker
processes cut the crops of upcoming steps while the current one trains: the crops of step k are drawn from
their own generator seeded by (fit seed, rank, stream, k), so which worker cut them, how many workers there are
and where a resumed fit restarts change nothing (determinism without saving any loader state). On a CUDA fit
the batches come in pinned memory and are copied asynchronously. With `device_crops` the training slices are
uploaded to the fit's device once and every step's crops are cut there, all at once (rejection sampling on
integral images of the breast masks, then one gather): no host work per step at all; step k's crops come from a
device generator seeded by (fit seed, rank, stream, k), so they resume deterministically as well (a CUDA and a CPU
fit draw different crops: their generators differ).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from adbench_dbt.data.slices import Slice
from adbench_dbt.errors import ConfigError, RunError
from adbench_dbt.training import TrainingConfig, note_samples


WORKER_TIMEOUT_S = 600.0
"""A loader worker that delivers no batch for this long has stalled (a crop takes milliseconds, a slice load
seconds): the fit stops with an error instead of waiting forever."""


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


class _StepCrops(Dataset):
    """Item k = the crops of training step k, from a generator seeded by (*key, k): any process can cut it."""

    def __init__(self, slices: Sequence[Slice], count: int, size: int, min_tissue_fraction: float,
                 key: Sequence[int]) -> None:
        self.slices, self.count, self.size, self.min_fraction, self.key = (
            list(slices), count, size, min_tissue_fraction, tuple(key))

    def __len__(self) -> int:
        return 2 ** 62  # indexed by step; the sampler bounds it

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([*self.key, step])
        images, masks = sample_tissue_crops(self.slices, self.count, self.size, rng, self.min_fraction)
        return torch.from_numpy(images), torch.from_numpy(masks)


def _step_seed(key: Sequence[int], step: int) -> int:
    """One 63-bit seed from (*key, step), well mixed (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([*key, step]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _as_is(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


class DeviceSlices:
    """Training slices resident on one device (zero-padded to a common size) with integral images of their breast
    masks, so the crops of a whole step are drawn and cut by a few batched tensor operations."""

    def __init__(self, slices: Sequence[Slice], size: int, device: torch.device, budget_gb: float) -> None:
        shapes = np.array([sl.shape for sl in slices])
        if (shapes < size).any():
            small = slices[int(np.flatnonzero((shapes < size).any(axis=1))[0])]
            raise ValueError(f"slice {small.id!r} ({small.shape[0]}x{small.shape[1]}) is smaller than the {size}px "
                             "training crop")
        height, width = shapes.max(axis=0)
        need = len(slices) * (height + 1) * (width + 1) * 9 / 1e9  # float32 pixels, bool mask, int32 mask sums
        if need > budget_gb:
            raise ConfigError(f"device_crops: {len(slices)} training slices need {need:.1f} GB on {device}, over "
                              f"device_crops_gb={budget_gb:g}; raise it or use loader_workers instead")
        self.size, self.device = size, device
        self.limits = torch.as_tensor(shapes - size + 1, device=device)  # valid top/left positions per slice
        self.images = torch.zeros(len(slices), height, width, device=device)
        self.masks = torch.zeros(len(slices), height, width, dtype=torch.bool, device=device)
        self.sums = torch.zeros(len(slices), height + 1, width + 1, dtype=torch.int32, device=device)
        for k, sl in enumerate(slices):
            image, mask = sl.load()
            h, w = image.shape
            self.images[k, :h, :w] = torch.from_numpy(np.ascontiguousarray(image, np.float32)).to(device)
            self.masks[k, :h, :w] = torch.from_numpy(np.ascontiguousarray(mask, bool)).to(device)
            self.sums[k, 1:h + 1, 1:w + 1] = self.masks[k, :h, :w].to(torch.int32).cumsum(0).cumsum(1)

    def cut(self, count: int, gen: torch.Generator, min_fraction: float,
            max_tries: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
        """`count` crops with the rule of `sample_tissue_crops`: the first of `max_tries` random positions with
        at least `min_fraction` breast, else the one with the most."""
        n, s, dev = len(self.images), self.size, self.device
        which = torch.randint(n, (count,), generator=gen, device=dev)
        limits = self.limits[which]  # count x 2
        corners = (torch.rand(count, max_tries, 2, generator=gen, device=dev) * limits[:, None]).long()
        top, left = corners[..., 0], corners[..., 1]
        b = which[:, None]
        area = (self.sums[b, top + s, left + s] - self.sums[b, top, left + s] - self.sums[b, top + s, left]
                + self.sums[b, top, left]).float() / (s * s)
        ok = area >= min_fraction
        pick = torch.where(ok.any(1), ok.float().argmax(1), area.argmax(1))  # first acceptable, else the best
        top, left = top.gather(1, pick[:, None]), left.gather(1, pick[:, None])  # count x 1
        offsets = torch.arange(s, device=dev)
        index = (which[:, None, None], (top + offsets)[:, :, None], (left + offsets)[:, None, :])
        return self.images[index], self.masks[index]


class CropStream:
    """Each step's `count` tissue crops (count x size x size images in [0, 1] and breast masks, on `device`).

    `take(step, rng)` with no workers draws from `rng` (the fit's stream); with workers it returns the prefetched
    crops of `step` (requests must follow step order; a jump, as after a resume, restarts the workers there).
    Use as a context manager so worker processes end with the fit.
    """

    def __init__(self, slices: Sequence[Slice], count: int, size: int, device: torch.device | str, *,
                 workers: int = 0, key: Sequence[int] = (0,), min_tissue_fraction: float = 0.05,
                 prefetch: int = 2, on_device: DeviceSlices | None = None) -> None:
        self.device = torch.device(device)
        self.workers, self.prefetch, self.on_device = workers, prefetch, on_device
        self.dataset = _StepCrops(slices, count, size, min_tissue_fraction, key)
        self._iterator = None
        self._next = -1

    @classmethod
    def for_config(cls, config: TrainingConfig, slices: Sequence[Slice], count: int, size: int, device: torch.device | str,
                   key: Sequence[int], min_tissue_fraction: float = 0.05,
                   on_device: DeviceSlices | None = None) -> "CropStream":
        """The stream a training config asks for (`loader_workers`, `device_crops`, `device_crops_gb`); pass
        `on_device` to share one upload between the streams of one fit."""
        device = torch.device(device)
        if config.device_crops and on_device is None:
            on_device = DeviceSlices(slices, size, device, config.device_crops_gb)
        return cls(slices, count, size, device, workers=config.loader_workers, key=key,
                   min_tissue_fraction=min_tissue_fraction, on_device=on_device)

    def take(self, step: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        note_samples(self.dataset.count)
        if self.on_device is not None:
            d = self.dataset
            gen = torch.Generator(self.device).manual_seed(_step_seed(d.key, step))
            return self.on_device.cut(d.count, gen, d.min_fraction)
        if self.workers == 0:
            d = self.dataset
            images, masks = sample_tissue_crops(d.slices, d.count, d.size, rng, d.min_fraction)
            return torch.from_numpy(images).to(self.device), torch.from_numpy(masks).to(self.device)
        if self._iterator is None or step != self._next:
            self.close()
            self._iterator = iter(DataLoader(
                self.dataset, batch_size=None, sampler=range(step, len(self.dataset)), num_workers=self.workers,
                prefetch_factor=self.prefetch, collate_fn=_as_is, pin_memory=self.device.type == "cuda",
                generator=torch.Generator().manual_seed(0),  # the workers' base seed: not from the global RNG
                timeout=WORKER_TIMEOUT_S))
        self._next = step + 1
        try:
            images, masks = next(self._iterator)
        except RuntimeError as exc:
            if "timed out" not in str(exc):
                raise
            self.close()
            raise RunError(f"loader_workers: no training crops from the {self.workers} loader worker(s) for "
                           f"{WORKER_TIMEOUT_S:g} s at step {step}; set loader_workers=0 to cut crops in the "
                           f"training process") from exc
        return images.to(self.device, non_blocking=True), masks.to(self.device, non_blocking=True)

    def close(self) -> None:
        """End the worker processes (they would also end with the iterator's garbage collection)."""
        self._iterator = None  # the last reference: the iterator shuts its workers down

    def __enter__(self) -> "CropStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
