"""How window batches execute: precision (autocast), memory format, torch.compile and CUDA graphs.

Methods are written once, in plain eager fp32; the engine wraps the window function a method scores with in a
`WindowExecutor` built from the config's execution fields. Parts whose numerics reduced precision would spoil
(distances, covariances, final reductions) are decorated with `fp32_numerics`, which turns autocast off and
promotes their tensor arguments, so a bf16 run differs from fp32 only inside the networks.
"""
from __future__ import annotations

import functools
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch
from rich.console import Console
from rich.markup import escape
from torch import nn

from adbench_dbt import window_rng
from adbench_dbt.errors import ConfigError, DeviceError

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
WindowFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]
F = TypeVar("F", bound=Callable[..., Any])


_stderr = Console(stderr=True, soft_wrap=True)


def print_notice(message: str) -> None:
    """One `notice:` line on stderr (a fallback the user should know about, not an error)."""
    _stderr.print(f"[yellow]notice:[/] {escape(message)}", highlight=False)


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """Autocast to `precision` on `device` (a no-op for fp32)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def fp32_numerics(fn: F) -> F:
    """Run `fn` with autocast off and its floating tensor arguments in fp32: for distances, covariances and the
    reductions that turn network outputs into scores (bf16 would quantise scores to ~3 significant digits)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_to_fp32(a) for a in args)
        kwargs = {k: _to_fp32(v) for k, v in kwargs.items()}
        if not torch.is_autocast_enabled("cpu") and not torch.is_autocast_enabled("cuda"):
            return fn(*args, **kwargs)
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@fp32_numerics
def fp32_linear(linear: nn.Linear, features: torch.Tensor) -> torch.Tensor:
    """A network's output layer in fp32: the logits or critic values scores are ranked (or sampled) by. Under bf16
    autocast a bf16 output would round them to ~3 significant digits."""
    return linear(features)


class NetworkAutocast:
    """Reduced precision only inside named networks, for models whose forward mixes networks with score arithmetic
    (anomalib's: features -> embeddings -> distances -> blurred maps, all in one `forward`).

    Inside `scoring()` autocast is off, so the arithmetic between the networks runs in fp32; each wrapped network
    runs under the autocast that was active when scoring began and hands back fp32 outputs. Outside `scoring()`
    (fitting) the networks run as they are.
    """

    def __init__(self, networks: Iterable[nn.Module]) -> None:
        self.dtype: torch.dtype | None = None
        self.device_type = "cpu"
        for network in networks:
            network.forward = self._at_precision(network.forward)

    def _at_precision(self, forward: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(forward)
        def run(*args: Any, **kwargs: Any) -> Any:
            if self.dtype is None:
                return forward(*args, **kwargs)
            with torch.autocast(self.device_type, dtype=self.dtype):
                return _tree_fp32(forward(*args, **kwargs))

        return run

    @contextmanager
    def scoring(self, device_type: str) -> Iterator[None]:
        """Autocast off; the networks at the dtype autocast had on entry (none: fp32 throughout)."""
        enabled = torch.is_autocast_enabled(device_type)
        self.dtype, self.device_type = (torch.get_autocast_dtype(device_type) if enabled else None), device_type
        try:
            with torch.autocast(device_type, enabled=False):
                yield
        finally:
            self.dtype = None


def _tree_fp32(value: Any) -> Any:
    """Every floating tensor of a network's output (a tensor, or dicts / lists / tuples of them) in fp32."""
    if isinstance(value, dict):
        return {k: _tree_fp32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_tree_fp32(v) for v in value)
    return _to_fp32(value)


def _to_fp32(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
        return value.float()
    return value


def check_execution(device: torch.device, precision: str, cuda_graphs: bool) -> None:
    """Refuse combinations this device cannot run, before any work (one line naming the field)."""
    if precision not in DTYPES:
        raise ConfigError(f"precision {precision!r}: expected one of {sorted(DTYPES)}")
    if cuda_graphs and device.type != "cuda":
        raise DeviceError(f"cuda_graphs: CUDA graphs need a CUDA device, this run is on {device.type}; "
                          "drop --cuda-graphs")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"precision bf16: {torch.cuda.get_device_name(device)} has no bf16 support; use fp16")


def to_channels_last(modules: Iterable[nn.Module]) -> None:
    """NHWC weights for every 4-D parameter/buffer of `modules` (convolutions then run NHWC kernels)."""
    for module in modules:
        module.to(memory_format=torch.channels_last)


class WindowExecutor:
    """A window function under the configured execution mode; called like the function itself.

    - precision: autocast around the call, outputs returned as fp32;
    - channels_last: each batch is handed over NHWC (the networks were converted by the method);
    - compile: `torch.compile` on first use; a compiler that is missing or fails falls back to eager with one
      notice line (an out-of-memory error is not a compiler failure and propagates, so the engine can halve);
    - cuda_graphs: the first full batch is captured once and replayed (needs fixed shapes; with compile it is
      torch.compile's own "reduce-overhead" mode);
    - fixed_shape (compile or CUDA graphs): the engine hands over full batches only, so shapes never change.
    """

    def __init__(self, fn: WindowFn, device: torch.device, precision: str = "fp32", channels_last: bool = False,
                 compile: bool = False, cuda_graphs: bool = False,
                 notice: Callable[[str], None] | None = None) -> None:
        check_execution(device, precision, cuda_graphs)
        self.fn, self.device, self.precision = fn, device, precision
        self.channels_last, self.cuda_graphs = channels_last, cuda_graphs
        self.notice = notice or (lambda message: None)
        self._compiled: WindowFn | None = None
        self.compile = compile and self._compile()
        self._graph: _CapturedBatch | None = None

    @property
    def fixed_shape(self) -> bool:
        return self.compile or self.cuda_graphs

    def _compile(self) -> bool:
        try:
            mode = "reduce-overhead" if self.cuda_graphs else None
            self._compiled = torch.compile(self.fn, dynamic=False, mode=mode)
        except Exception as err:  # torch builds without a compiler backend (e.g. Python versions dynamo lacks)
            self.notice(f"torch.compile unavailable ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
                        "scoring eagerly")
            return False
        return True

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self.cuda_graphs and not self.compile:
            if self._graph is None or not self._graph.accepts(batch):
                try:
                    self._graph = _CapturedBatch(self._eager, batch)
                except RuntimeError as err:  # e.g. a host synchronisation inside the method cannot be captured
                    if "out of memory" in str(err).lower():
                        raise
                    self.notice(f"CUDA graph capture failed ({str(err).splitlines()[0][:120]}); scoring without")
                    self.cuda_graphs, self._graph = False, None
                    return self._eager(batch)
            return self._graph.replay(batch)
        if self.compile and self._compiled is not None:
            try:
                return self._run(self._compiled, batch)
            except Exception as err:
                if "out of memory" in str(err).lower() or isinstance(err, torch.OutOfMemoryError):
                    raise
                self.notice(f"torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
                            "scoring eagerly")
                self.compile, self._compiled = False, None
        return self._eager(batch)

    def _eager(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._run(self.fn, batch)

    def _run(self, fn: WindowFn, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast(self.device, self.precision):
            out = fn(batch)
        return {name: value.float() for name, value in out.items()}


class _CapturedBatch:
    """One CUDA graph of the window function for one batch shape: replay = copy in, launch once, copy out. The
    batch's `window_rng` keys are an input like the batch: captured from a static copy, refreshed at each replay."""

    def __init__(self, fn: WindowFn, example: torch.Tensor) -> None:
        self.static_input = example.clone()
        keys = window_rng.current()
        self.static_keys = None if keys is None else keys.to(example.device).clone()
        stream = torch.cuda.Stream(example.device)
        stream.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(stream), self._keys():  # warm-up outside the graph: lazy initialisation, autotuning
            for _ in range(2):
                fn(self.static_input)
        torch.cuda.current_stream(example.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), self._keys():
            self.static_output = fn(self.static_input)

    def _keys(self) -> AbstractContextManager[None]:
        return nullcontext() if self.static_keys is None else window_rng.current_keys(self.static_keys)

    def accepts(self, batch: torch.Tensor) -> bool:
        return (batch.shape == self.static_input.shape and batch.stride() == self.static_input.stride()
                and (window_rng.current() is None) == (self.static_keys is None))

    def replay(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        self.static_input.copy_(batch)
        if self.static_keys is not None:
            self.static_keys.copy_(window_rng.current())
        self.graph.replay()
        return {name: value.clone() for name, value in self.static_output.items()}
