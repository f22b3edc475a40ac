"""What the hardware could do: peak dense TFLOP/s per device and precision, counted FLOPs, peak memory.

Benchmarks state how far a timing is from the device's limit. GPU peaks are the vendors' dense (no sparsity)
datasheet figures; a CPU's is estimated from its threads, clock and vector width, and the estimate says so.
"""
from __future__ import annotations

import platform
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense TFLOP/s by precision. fp32 convolutions on CUDA run as TF32 on tensor cores by default
# (torch.backends.cudnn.allow_tf32), so "fp32" uses the TF32 figure where the device has one.
GPU_PEAKS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "H100 SXM": {"fp32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "H100 NVL": {"fp32": 417.5, "bf16": 835.0, "fp16": 835.0},
    "H100 PCIe": {"fp32": 378.0, "bf16": 756.0, "fp16": 756.0},
    "H100": {"fp32": 494.7, "bf16": 989.4, "fp16": 989.4},  # HBM3 SXM boards report as plain "H100"
    "A100": {"fp32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "L40S": {"fp32": 183.0, "bf16": 362.0, "fp16": 362.0},
    "RTX 4090": {"fp32": 82.6, "bf16": 165.2, "fp16": 165.2},
    "RTX 3090": {"fp32": 35.6, "bf16": 71.0, "fp16": 71.0},
}


@dataclass(frozen=True)
class Peak:
    tflops: float | None
    basis: str  # where the figure comes from, printed next to it


def peak_tflops(device: torch.device, precision: str) -> Peak:
    """The device's peak for `precision` (None with the reason when unknown)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key in sorted(GPU_PEAKS, key=len, reverse=True):  # "H100 SXM" before "H100"
            if key.lower() in name.lower():
                return Peak(GPU_PEAKS[key][precision], f"{key} datasheet, dense {precision}"
                            + (" (TF32 tensor cores)" if precision == "fp32" else ""))
        return Peak(None, f"no peak known for {name!r}")
    return cpu_peak(precision)


def cpu_peak(precision: str, cpuinfo: str | None = None, threads: int | None = None) -> Peak:
    """threads x clock x FLOP/cycle, FLOP/cycle = 2 (FMA) x 2 (FMA pipes) x fp32 lanes (16 with AVX-512, 8 with
    AVX2), doubled for bf16 where the CPU has AVX512_BF16. An upper bound: cores that split 512-bit operations
    in two (e.g. AMD Zen 4) reach half of it."""
    text = cpuinfo if cpuinfo is not None else _read_cpuinfo()
    flags = set(_field(text, "flags").split())
    mhz = float(_field(text, "cpu MHz") or 0.0)
    threads = threads or torch.get_num_threads()
    lanes, isa = (16, "AVX-512") if "avx512f" in flags else (8, "AVX2") if "avx2" in flags else (4, "SSE")
    per_cycle = 2 * 2 * lanes
    if precision == "bf16" and "avx512_bf16" in flags:
        per_cycle, isa = per_cycle * 2, isa + " + AVX512_BF16"
    if not mhz:
        return Peak(None, f"CPU clock unknown ({platform.processor() or platform.machine()})")
    tflops = threads * mhz * 1e6 * per_cycle / 1e12
    return Peak(tflops, f"estimate: {threads} threads x {mhz / 1000:.2f} GHz x {per_cycle} FLOP/cycle ({isa})")


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _field(cpuinfo: str, name: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def count_flops(work: Callable[[], Any]) -> int:
    """FLOPs of the matrix products and convolutions `work` runs (torch.utils.flop_counter; elementwise work
    is not counted, so achieved TFLOP/s is a lower bound of the arithmetic done)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        work()
    return int(counter.get_total_flops())


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak (CUDA; a process's peak resident set cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_bytes(device: torch.device) -> float:
    """CUDA's max allocated bytes since the last `reset_peak_memory`, after the queued work finished."""
    torch.cuda.synchronize(device)
    return float(torch.cuda.max_memory_allocated(device))


def peak_memory_gb(device: torch.device) -> tuple[float, str]:
    """(GB, what it is): CUDA's max allocated since the last reset, or the process's peak resident set."""
    if device.type == "cuda":
        return cuda_peak_bytes(device) / 1e9, "cuda max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, "process peak RSS"
