"""The completion backbone: whatever fills a window's centred hole, M times per window, in one batched call.

PICARD's dropout inpainter, the DMSE inpainter, HFPIC and Telea are backbones; the scorers (`scorers.py`) only see
what `complete` returns, so one MCD implementation serves every backbone. Completions stay in the backbone's own
value space (`value_range`): the GAN inpainters and their critics work in [-1, 1], Telea in [0, 1], and converting
would change the published scores' rounding.
"""
from __future__ import annotations

import statistics
import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from adbench_dbt import window_rng
from adbench_dbt.data.slices import Slice
from adbench_dbt.hardware import count_flops
from adbench_dbt.io import atomic_path, load_state_file


def centred_box(window: int, hole: int) -> tuple[slice, slice]:
    """(rows, cols) of the centred hole of side `hole` in a `window` x `window` window."""
    if hole >= window or (window - hole) % 2:
        raise ValueError(f"hole ({hole}) must be smaller than the window ({window}) and centrable (window - hole even)")
    lo = (window - hole) // 2
    return slice(lo, lo + hole), slice(lo, lo + hole)


def centred_mask(window: int, hole: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """1 x 1 x window x window float mask, 1 inside the centred hole."""
    mask = torch.zeros(1, 1, window, window, device=device)
    mask[(..., *centred_box(window, hole))] = 1.0
    return mask


@dataclass(frozen=True)
class Completions:
    """What a backbone returns for N windows: the truth (N x 1 x P x P) and M completed windows per window
    (N x M x 1 x P x P, known pixels equal to the truth), both in the backbone's value space."""

    truth: torch.Tensor
    samples: torch.Tensor
    box: tuple[slice, slice]

    def __post_init__(self) -> None:
        n, p = self.truth.shape[0], self.truth.shape[-1]
        if self.samples.dim() != 5 or self.samples.shape[0] != n or self.samples.shape[2:] != self.truth.shape[1:]:
            raise ValueError(f"completions {tuple(self.samples.shape)} do not match truth {tuple(self.truth.shape)} "
                             f"(expected N x M x 1 x {p} x {p})")

    @property
    def count(self) -> int:
        """M, completions per window."""
        return self.samples.shape[1]

    def truth_hole(self) -> torch.Tensor:
        """N x 1 x h x h true hole content."""
        return self.truth[(..., *self.box)]

    def samples_hole(self) -> torch.Tensor:
        """(N*M) x 1 x h x h completed hole content, sample-major per window (x1..x1 x2..x2)."""
        return self.samples.flatten(0, 1)[(..., *self.box)]


class CompletionBackbone(ABC):
    """N windows in [0, 1] with a centred hole -> M completions each (`complete`); plus fit, state, save and load.

    Subclasses set `value_range` and implement `complete`; learned ones also `networks`, `fit`, `state_dict`
    and `load_state_dict`.
    """

    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(self, window: int, hole: int, completions: int, device: torch.device | str = "cpu") -> None:
        self.window, self.hole, self.completions = window, hole, completions
        self.device = torch.device(device)
        self.box = centred_box(window, hole)
        self.hole_box = (..., *self.box)
        self.hole_mask = centred_mask(window, hole, self.device)

    @abstractmethod
    def complete(self, windows: torch.Tensor) -> Completions:
        """windows: N x 1 x P x P in [0, 1] -> Completions (N x M x 1 x P x P), one batched call for all N*M."""

    def completion_keys(self) -> AbstractContextManager[None]:
        """Within the block, one `window_rng` key per (window, completion), window-major like
        `repeat_interleave(M)`, derived from the engine's window keys: completion j of a window draws the same
        numbers in any batch. Outside the engine nothing changes (each draw takes fresh keys from torch)."""
        keys = window_rng.current()
        return nullcontext() if keys is None else window_rng.current_keys(window_rng.per_draw(keys, self.completions))

    def to_space(self, windows: torch.Tensor) -> torch.Tensor:
        """[0, 1] windows in the backbone's value space."""
        lo, hi = self.value_range
        return windows if (lo, hi) == (0.0, 1.0) else windows * (hi - lo) + lo

    def cost_probe(self, windows: torch.Tensor, repeats: int = 1) -> dict[str, Any]:
        """Measured cost of completing `windows` (median of `repeats` timed calls after one warm-up), for
        `adbench bench --windows`; backbones too slow to run whole override it with a component measurement."""
        with torch.inference_mode():
            self.complete(windows)
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                self.complete(windows)
                _sync(self.device)
                times.append(time.perf_counter() - started)
        n = windows.shape[0]
        return {"s_per_window": statistics.median(times) / n, "estimated": False,
                "flop_per_window": count_flops(lambda: self.complete(windows)) / n}

    def networks(self) -> dict[str, nn.Module]:
        """The learned modules by name (none for a classical backbone)."""
        return {}

    def scoring_context(self) -> AbstractContextManager[Any]:
        """Entered around a whole slice's scoring (e.g. flush denormals on the CPU)."""
        return nullcontext()

    def fit(self, train: Sequence[Slice], work_dir: Path | None, name: str) -> None:
        """Learn from normal slices; with a work dir, checkpoint there and resume from it. Nothing by default."""

    def prepare_untrained(self, train: Sequence[Slice]) -> None:
        """Make `complete` possible with random weights (speed benchmarks); nothing by default."""

    def state_dict(self) -> dict[str, Any]:
        return {name: net.state_dict() for name, net in self.networks().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        nets = self.networks()
        if set(state) != set(nets):
            raise ValueError(f"state keys {sorted(state)}, expected {sorted(nets)}")
        for name, net in nets.items():
            try:
                net.load_state_dict(state[name], strict=True)
            except RuntimeError as err:
                raise ValueError(f"saved {name} does not match the config: {err}") from None

    def save(self, path: str | Path) -> Path:
        """The state dict as one torch file, written atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)
        return path

    def load(self, path: str | Path) -> None:
        """Load a file written by `save` (weights_only); a mismatch is a CheckpointError naming the file."""
        load_state_file(path, self.load_state_dict, self.device, f"this {type(self).__name__}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
