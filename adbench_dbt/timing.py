"""Wall-clock timing that is honest on GPUs (synchronised), plus the device facts recorded with every timing."""
from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from typing import Iterator

import torch

from adbench_dbt.errors import DeviceError


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def stopwatch(device: torch.device) -> Iterator[list[float]]:
    """`with stopwatch(dev) as t: ...` then t[0] holds the seconds, measured after a device synchronisation."""
    result: list[float] = [0.0]
    synchronize(device)
    start = time.perf_counter()
    try:
        yield result
    finally:
        synchronize(device)
        result[0] = time.perf_counter() - start


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; a device this machine lacks is a DeviceError that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name!r}: not a device name; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: this machine has no CUDA device visible to torch "
                              f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device.type != "cpu":
        raise DeviceError(f"--device {name}: unsupported device type {device.type!r}; expected cpu or cuda")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
