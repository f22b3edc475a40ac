"""Random numbers keyed by window, so that a stochastic method's draws for a window do not depend on its batch.

PICARD's inference dropout and HFPIC's token sampling used to draw from torch's generator batch by batch, so a
window's completions changed with the batch it landed in: `--set batch_size=7` moved PICARD's heatmaps as much as
a new seed (pixel Spearman 0.44-0.64 against batch 10), and out-of-memory halving, `--auto-batch` and the padded
batches of `--compile` did the same silently. Here every draw is a hash of (window key, stream, counter): no
generator state, so a window's numbers are the same in any batch, any batch order, and on a CPU or a GPU.

- The engine gives each window of a slice a key: a hash of the slice's scoring seed (`torch.initial_seed()`, which
  the runner sets per slice) and the window's grid index. It makes the keys of the batch being scored current
  (`current_keys`) around each call of the method.
- A method turns a window's key into one key per draw, e.g. per completion (`per_draw`), makes those current for its
  network, and a layer draws `uniform(keys, stream, shape)` with its own stream number.
- Called outside the engine (a unit test, a direct network call), each draw takes fresh keys from torch's global
  generator (`keys_or_fresh`), so seeding torch still makes a run repeatable.

The hash is Wellons' lowbias32 on int64 tensors holding 32-bit values (multipliers below 2**31, so no product
overflows); uniforms take its top 24 bits, exact in float32.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch

_MASK = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # offsets small counters away from the hash's fixed point at 0

_current: list[torch.Tensor] = []  # a stack: the engine's window keys, a method's per-draw keys above them


def mix(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 of each element of an int64 tensor of values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _MASK
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _MASK
    return x ^ (x >> 15)


def combine(keys: torch.Tensor, value: torch.Tensor | int) -> torch.Tensor:
    """A new key for each (key, value) pair (broadcast); distinct values give unrelated keys."""
    value = torch.as_tensor(value, dtype=torch.int64, device=keys.device)
    return mix(keys ^ mix((value + _GOLDEN) & _MASK))


def slice_key(device: torch.device | str = "cpu") -> torch.Tensor:
    """The key of the slice being scored: a hash of torch's current seed (the runner seeds torch per slice)."""
    seed = torch.initial_seed()
    return combine(torch.tensor(seed & _MASK, device=device), (seed >> 32) & _MASK)


def window_keys(base: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """One key per window: the slice key combined with the window's flat grid index."""
    return combine(base, indices.to(torch.int64))


def per_draw(keys: torch.Tensor, draws: int) -> torch.Tensor:
    """`draws` keys per key, key-major (the order of `repeat_interleave(draws)`): draw j of key i is combine(i, j)."""
    return combine(keys.repeat_interleave(draws), torch.arange(draws, device=keys.device).repeat(len(keys)))


def uniform(keys: torch.Tensor, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
    """len(keys) x *shape float32 uniforms in [0, 1): element c of row i is a hash of (keys[i], stream, c)."""
    base = combine(keys, stream).view(-1, *([1] * len(shape)))
    counters = torch.arange(math.prod(shape), device=keys.device, dtype=torch.int64).view(shape)
    return (combine(base, counters) >> 8).to(torch.float32) * (1.0 / (1 << 24))


@contextmanager
def current_keys(keys: torch.Tensor) -> Iterator[None]:
    """Make `keys` (one per row of the batch about to run) the ones `keys_or_fresh` returns inside the block."""
    _current.append(keys)
    try:
        yield
    finally:
        _current.pop()


def current() -> torch.Tensor | None:
    """The innermost current keys, or None outside any `current_keys` block."""
    return _current[-1] if _current else None


def keys_or_fresh(rows: int, device: torch.device) -> torch.Tensor:
    """The current keys (one per row of this batch, else a ValueError), or outside any `current_keys` block `rows`
    fresh keys from torch's generator."""
    keys = current()
    if keys is not None:
        if len(keys) != rows:
            raise ValueError(f"window keys: {len(keys)} current keys for a batch of {rows} rows")
        return keys.to(device)
    return torch.randint(0, _MASK + 1, (rows,), device=device, dtype=torch.int64)
