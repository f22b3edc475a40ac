"""The one sliding-window engine every patch method shares.

Windows are zero-copy strided views of the slice tensor on the method's device; each batch is gathered on the
device, scored by the method, and scores stay on the device until the slice is assembled into heatmaps. No Python
loop runs per window or per pixel: the only loop is over batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from adbench_dbt import window_rng
from adbench_dbt.config import AssemblyMode, WindowConfig
from adbench_dbt.hardware import cuda_peak_bytes, reset_peak_memory

WindowScorer = Callable[[torch.Tensor], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class WindowGrid:
    """Top-left corners (i*s, j*s) of P x P windows; n = floor((L - P) / s) + 1 per axis (PICARD's grid)."""

    height: int
    width: int
    window: int
    stride: int

    def __post_init__(self) -> None:
        if self.height < self.window or self.width < self.window:
            raise ValueError(f"slice {self.height}x{self.width} is smaller than the {self.window}px window")

    @property
    def n_rows(self) -> int:
        return (self.height - self.window) // self.stride + 1

    @property
    def n_cols(self) -> int:
        return (self.width - self.window) // self.stride + 1

    @property
    def count(self) -> int:
        return self.n_rows * self.n_cols

    def tops(self) -> np.ndarray:
        return np.arange(self.n_rows) * self.stride

    def lefts(self) -> np.ndarray:
        return np.arange(self.n_cols) * self.stride


def window_view(image: torch.Tensor, grid: WindowGrid) -> torch.Tensor:
    """n_rows x n_cols x P x P zero-copy view of a contiguous H x W tensor."""
    image = image.contiguous()
    s, w = grid.stride, image.shape[1]
    return image.as_strided((grid.n_rows, grid.n_cols, grid.window, grid.window), (s * w, s, w, 1))


def tissue_windows(breast: torch.Tensor, grid: WindowGrid) -> torch.Tensor:
    """n_rows x n_cols bool: windows that contain at least one breast pixel."""
    cover = F.max_pool2d(breast[None, None].float(), kernel_size=grid.window, stride=grid.stride)[0, 0]
    return cover[: grid.n_rows, : grid.n_cols] > 0


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


class WindowGatherer:
    """Copies batches of windows into one reused N x 1 x P x P buffer, a contiguous run of a grid row at a time.

    Windows of one grid row that follow each other in `indices` are a single strided copy; advanced indexing
    would gather them one window at a time (about 5x slower on a CPU, where the gather dominates the engine's
    overhead). The loop is over runs (a handful per batch), never over windows.
    """

    def __init__(self, windows: torch.Tensor, indices: torch.Tensor, capacity: int) -> None:
        self.windows = windows
        self.n_cols = windows.shape[1]
        self.host_indices = indices.cpu().numpy()
        self.buffer = torch.zeros((capacity, 1, *windows.shape[2:]), dtype=windows.dtype, device=windows.device)

    def gather(self, start: int, count: int, fixed_shape: bool) -> torch.Tensor:
        """Windows indices[start:start+count] in the buffer; with `fixed_shape` the whole buffer is returned (its
        tail holds earlier windows, whose outputs the caller drops), so every batch has the same shape."""
        if count > len(self.buffer):
            self.buffer = self.buffer.new_zeros((count, *self.buffer.shape[1:]))
        idx = self.host_indices[start: start + count]
        rows, cols = idx // self.n_cols, idx % self.n_cols
        breaks = np.flatnonzero((np.diff(idx) != 1) | (rows[1:] != rows[:-1])) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(idx)]])
        for a, b in zip(starts.tolist(), ends.tolist()):
            self.buffer[a:b, 0].copy_(self.windows[rows[a], cols[a]: cols[a] + b - a])
        return self.buffer if fixed_shape else self.buffer[:count]


def run_batches(windows: torch.Tensor, indices: torch.Tensor, scorer: WindowScorer,
                batch_size: int) -> tuple[dict[str, torch.Tensor], int]:
    """Score windows.flatten(0,1)[indices] in batches; halve the batch on out-of-memory and retry.

    A scorer with a true `fixed_shape` attribute (a compiled or CUDA-graph `WindowExecutor`) always receives
    full batches. Each call runs with the batch's window keys current (`window_rng`), so a stochastic method draws
    the same numbers for a window whatever the batch size. Returns ({variant: len(indices) x ...}, the batch size
    that worked).
    """
    fixed_shape = bool(getattr(scorer, "fixed_shape", False))
    gatherer = WindowGatherer(windows, indices, batch_size if fixed_shape else min(batch_size, len(indices)))
    keys = window_rng.window_keys(window_rng.slice_key(indices.device), indices)
    outputs: dict[str, list[torch.Tensor]] = {}
    start = 0
    while start < len(indices):
        count = min(batch_size, len(indices) - start)
        batch = gatherer.gather(start, count, fixed_shape)
        batch_keys = keys[start: start + count]
        if batch.shape[0] > count:  # a padded fixed-shape batch: the tail's outputs are dropped, any keys do
            batch_keys = torch.cat([batch_keys, batch_keys.new_zeros(batch.shape[0] - count)])
        try:
            with window_rng.current_keys(batch_keys):
                scores = scorer(batch)
        except RuntimeError as err:
            if not _is_oom(err) or batch_size == 1:
                raise
            del batch
            gatherer.buffer = gatherer.buffer[:0]  # free it: the smaller batch reallocates
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)
            continue
        for name, value in scores.items():
            if value.shape[0] != batch.shape[0]:
                raise ValueError(f"scorer returned {value.shape[0]} {name!r} scores for {batch.shape[0]} windows")
            value = value.detach()[:count]
            if value.untyped_storage().data_ptr() == batch.untyped_storage().data_ptr():
                value = value.clone()  # a view of the reused buffer would be overwritten by the next batch
            outputs.setdefault(name, []).append(value)
        start += count
    return {k: torch.cat(v) for k, v in outputs.items()}, batch_size


class MemoryGauge:
    """Peak device memory of one call, and whether a larger peak would still fit (CUDA only)."""

    def __init__(self, device: torch.device, headroom: float = 0.85) -> None:
        self.device = device
        self.budget = headroom * torch.cuda.get_device_properties(device).total_memory

    def reset(self) -> None:
        reset_peak_memory(self.device)

    def peak(self) -> float:
        return cuda_peak_bytes(self.device)

    def fits(self, peak: float) -> bool:
        return peak <= self.budget


def memory_gauge(device: torch.device) -> MemoryGauge | None:
    """A gauge where peak memory is measurable (CUDA); None on a CPU, where the batch size stays as configured
    (a process out of host memory is killed, not told)."""
    return MemoryGauge(device) if device.type == "cuda" else None


def largest_batch(scorer: WindowScorer, windows: torch.Tensor, indices: torch.Tensor, start: int,
                  gauge: MemoryGauge | None) -> int:
    """The largest batch (start doubled while the measured peak says the next doubling fits; at most the slice's
    window count, in powers of two times `start`) that scores without running out of memory."""
    limit = len(indices)
    if gauge is None or limit == 0:
        return start
    size, best = start, 0
    while True:
        sample = indices[torch.arange(size, device=indices.device) % limit]
        gatherer = WindowGatherer(windows, sample, size)
        try:
            gauge.reset()
            scorer(gatherer.gather(0, size, False))
            peak = gauge.peak()
        except RuntimeError as err:
            if not _is_oom(err):
                raise
            del gatherer
            gauge.reset()
            return best if best else max(1, size // 2)
        best = size
        if size * 2 > max(limit, start) or not gauge.fits(2 * peak):
            return best
        size *= 2


def assemble(scores: torch.Tensor, grid: WindowGrid, mode: AssemblyMode) -> torch.Tensor:
    """Turn per-window scores (n_rows x n_cols, or n_rows x n_cols x h x w small maps) into an H x W map.

    - grid-bicubic: PICARD's released behaviour, the score grid stretched over the slice (bicubic, NaN -> 0).
    - centered / centered-nearest: each score at its window's true centre, bilinear (or nearest) between
      centres, constant beyond the outermost centres.
    - averaged: every window adds its score (or its small map, stretched over the window) to the pixels it
      covers; divided by coverage (Swiecicki 2021, PatchSVDD). Pixels no window covers (a border strip when the
      stride does not tile the slice) get the lowest covered value, the rule for unscored windows too: a 0 fill
      would rank them above everything for methods whose scores are negative.
    """
    if mode == "averaged":
        return _averaged(scores, grid)
    if scores.dim() != 2:
        raise ValueError(f"assembly {mode!r} needs one score per window; got maps of shape {tuple(scores.shape[2:])}")
    if mode == "grid-bicubic":
        out = F.interpolate(scores[None, None].float(), size=(grid.height, grid.width), mode="bicubic",
                            align_corners=False)[0, 0]
        return torch.nan_to_num(out, nan=0.0)
    if mode in ("centered", "centered-nearest"):
        return _centered(scores.float(), grid, nearest=mode == "centered-nearest")
    raise ValueError(f"unknown assembly mode {mode!r}")


def _axis_weights(length: int, n: int, grid: WindowGrid, device: torch.device, nearest: bool):
    """For each pixel along an axis: the two neighbouring window-centre indices and the weight of the second."""
    pos = torch.arange(length, device=device, dtype=torch.float64)
    frac = ((pos - (grid.window - 1) / 2) / grid.stride).clamp(0, n - 1)
    if nearest:
        frac = torch.floor(frac + 0.5).clamp(0, n - 1)
    lo = frac.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    return lo, hi, (frac - lo).float()


def _centered(scores: torch.Tensor, grid: WindowGrid, nearest: bool) -> torch.Tensor:
    r0, r1, wr = _axis_weights(grid.height, grid.n_rows, grid, scores.device, nearest)
    c0, c1, wc = _axis_weights(grid.width, grid.n_cols, grid, scores.device, nearest)
    rows = scores[r0] * (1 - wr)[:, None] + scores[r1] * wr[:, None]  # H x n_cols
    return rows[:, c0] * (1 - wc)[None] + rows[:, c1] * wc[None]


def _averaged(scores: torch.Tensor, grid: WindowGrid) -> torch.Tensor:
    """Coverage-weighted mean via a 2-D difference array: O(pixels + rectangles), exact, no per-window loop."""
    if scores.dim() == 2:
        scores = scores[..., None, None]
    h, w = scores.shape[2:]
    if grid.window % h or grid.window % w:
        raise ValueError(f"small maps of {h}x{w} do not tile a {grid.window}px window")
    ch, cw = grid.window // h, grid.window // w
    dev = scores.device
    tops = (torch.arange(grid.n_rows, device=dev) * grid.stride)[:, None, None, None] \
        + (torch.arange(h, device=dev) * ch)[None, None, :, None]
    lefts = (torch.arange(grid.n_cols, device=dev) * grid.stride)[None, :, None, None] \
        + (torch.arange(w, device=dev) * cw)[None, None, None, :]
    tops, lefts = torch.broadcast_to(tops, scores.shape).reshape(-1), torch.broadcast_to(lefts, scores.shape).reshape(-1)
    values = scores.reshape(-1).double()
    total = _rect_sum(grid.height, grid.width, tops, lefts, ch, cw, values)
    count = _rect_sum(grid.height, grid.width, tops, lefts, ch, cw, torch.ones_like(values))
    covered = count > 0
    mean = total / count.clamp(min=1)
    return torch.where(covered, mean, mean[covered].min()).float()


def _rect_sum(height: int, width: int, tops: torch.Tensor, lefts: torch.Tensor, rh: int, rw: int,
              values: torch.Tensor) -> torch.Tensor:
    diff = torch.zeros(height + 1, width + 1, dtype=torch.float64, device=values.device)
    flat = diff.view(-1)
    stride = width + 1
    for dy, dx, sign in ((0, 0, 1.0), (0, rw, -1.0), (rh, 0, -1.0), (rh, rw, 1.0)):
        flat.index_add_(0, (tops + dy) * stride + (lefts + dx), values * sign)
    return diff.cumsum(0).cumsum(1)[:height, :width]


@dataclass(frozen=True)
class GridOutputs:
    """Unassembled outputs of the scored windows; `indices` are raster positions in `grid` (row = i // n_cols)."""

    grid: WindowGrid
    indices: torch.Tensor
    outputs: dict[str, torch.Tensor]
    batch_size: int  # the batch size that fitted in memory

    @property
    def rows(self) -> torch.Tensor:
        return self.indices // self.grid.n_cols

    @property
    def cols(self) -> torch.Tensor:
        return self.indices % self.grid.n_cols


def run_on_grid(scorer: WindowScorer, image: np.ndarray, breast: np.ndarray, window: int, stride: int,
                batch_size: int, device: torch.device, tissue_only: bool, limit: int | None = None,
                rng: np.random.Generator | None = None, auto_batch: bool = False) -> GridOutputs:
    """Run `scorer` over the window grid of one slice (batched, OOM-safe) and return its outputs unassembled.

    Scoring uses it through `score_slice`; methods that fit statistics on training windows (a density, a
    nearest-neighbour bank) use it directly. `tissue_only` keeps windows with at least one breast pixel;
    `limit` keeps a random subset of that many; `auto_batch` first grows the batch to the largest that fits.
    """
    grid = WindowGrid(*image.shape, window, stride)
    img = upload(image, device)
    if tissue_only:
        keep = tissue_windows(torch.tensor(breast, dtype=torch.bool, device=device), grid).reshape(-1)
        indices = keep.nonzero().squeeze(1)
    else:
        indices = torch.arange(grid.count, device=device)
    if limit is not None and len(indices) > limit:
        rng = rng if rng is not None else np.random.default_rng(0)
        chosen = np.sort(rng.choice(len(indices), size=limit, replace=False))
        indices = indices[torch.from_numpy(chosen).to(device)]
    if len(indices) == 0:
        return GridOutputs(grid, indices, {}, batch_size)
    with torch.inference_mode():
        view = window_view(img, grid)
        if auto_batch:
            batch_size = largest_batch(scorer, view, indices, batch_size, memory_gauge(device))
        outputs, batch_size = run_batches(view, indices, scorer, batch_size)
    return GridOutputs(grid, indices, outputs, batch_size)


def upload(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """The slice as a float32 tensor on `device`: a private copy (cached slices are read-only memmaps), staged
    through pinned host memory on CUDA so the transfer is one asynchronous DMA."""
    host = torch.from_numpy(np.array(image, dtype=np.float32, copy=True))
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host


def assemble_outputs(out: GridOutputs, values: torch.Tensor, mode: AssemblyMode) -> np.ndarray:
    """Heatmap (float32 numpy, H x W) of one output; windows that were not scored get the slice's lowest score."""
    full = values.new_empty((out.grid.count, *values.shape[1:]))
    full.fill_(values.min())  # a 0-dim device tensor: no host round trip
    full[out.indices] = values
    grid_scores = full.reshape(out.grid.n_rows, out.grid.n_cols, *values.shape[1:])
    with torch.inference_mode():
        return assemble(grid_scores, out.grid, mode).cpu().numpy().astype(np.float32)


@dataclass(frozen=True)
class SliceScores:
    """What scoring one slice produced: a heatmap per variant, the windows scored and the batch that ran."""

    maps: dict[str, np.ndarray]
    windows: int
    batch_size: int


def score_slice(scorer: WindowScorer, image: np.ndarray, breast: np.ndarray, config: WindowConfig,
                batch_size: int, device: torch.device, variants: tuple[str, ...],
                auto_batch: bool = False) -> SliceScores:
    """Score every window of one slice with `scorer` and assemble each variant's heatmap (a slice without any
    scored window gets all-zero maps for `variants`)."""
    out = run_on_grid(scorer, image, breast, config.window, config.stride, batch_size, device,
                      config.skip_background, auto_batch=auto_batch)
    if not out.outputs:
        return SliceScores({v: np.zeros(image.shape, np.float32) for v in variants}, 0, out.batch_size)
    maps = {name: assemble_outputs(out, values, config.assembly) for name, values in out.outputs.items()}
    return SliceScores(maps, int(len(out.indices)), out.batch_size)


def warmup_windows(scorer: WindowScorer, image: np.ndarray, config: WindowConfig, batch_size: int,
                   device: torch.device) -> None:
    """One batch through `scorer`, so that lazy initialisation and kernel selection are not timed."""
    run_on_grid(scorer, image, np.ones(image.shape, bool), config.window, config.stride, batch_size, device,
                tissue_only=False, limit=batch_size)
