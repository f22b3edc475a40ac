"""`adbench bench`: speed of the engine and of each method on one phantom slice, as committed benchmark rows.

Timing needs no trained model (weights do not change the cost), so methods are built from a profile with random
weights and `prepare_untrained` fits whatever statistics scoring needs. The `engine` pseudo-method scores each
window by its mean: it measures the harness's own overhead (cutting, batching, assembly).
"""
from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from adbench_dbt.config import WindowConfig, build_config
from adbench_dbt.data.slices import Slice
from adbench_dbt.errors import ConfigError
from adbench_dbt.execution import autocast
from adbench_dbt.hardware import count_flops, peak_memory_gb, peak_tflops, reset_peak_memory
from adbench_dbt.io import atomic_path, write_text
from adbench_dbt.leaderboard import profile_label
from adbench_dbt.markdown import table_lines
from adbench_dbt.method import Method, WindowMethod
from adbench_dbt.provenance import harness_revision
from adbench_dbt.registry import create_method, get_method
from adbench_dbt.timing import device_name, stopwatch

BENCH_KEY = ["method", "profile", "variant_count", "shape", "device", "precision", "batch_size"]
BENCH_COLUMNS = ["method", "profile", "shape", "windows", "s_per_slice", "extrapolated", "ms_per_patch",
                 "windows_per_s", "flop_per_window", "tflops", "pct_of_peak", "peak_tflops", "peak_memory_gb",
                 "rank_vs_fp32", "repeats", "variant_count", "device", "precision", "batch_size", "harness_revision", "date",
                 "forwards_per_window", "timing", "peak_basis", "memory_basis", "fit_s"]


class EngineProbe(WindowMethod):
    """Scores a window by its mean: the cheapest possible method, so its time is the engine's overhead."""

    name = "engine"
    variants = ("mean",)

    def fit(self, train: Sequence[Slice], val: Sequence[Slice] | None = None) -> None:
        """Nothing to learn."""

    def score_windows(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mean": windows.mean(dim=(1, 2, 3))}


def build_for_bench(method: str, profile: str, overrides: dict[str, Any], device: torch.device,
                    train: Sequence[Slice]) -> Method:
    if method == "engine":
        return EngineProbe(WindowConfig(**{"window": 256, "stride": 32, "batch_size": 256, **overrides}), device)
    model = create_method(method, profile, overrides, device=device)
    model.prepare_untrained(train)
    return model


def fit_for_bench(method: str, profile: str, overrides: dict[str, Any], device: torch.device,
                  train: Sequence[Slice]) -> tuple[Method, float]:
    """The method fitted on `train` as `adbench run` fits it (random or profile weights), and the fit's seconds."""
    model = create_method(method, profile, overrides, device=device)
    with stopwatch(model.device) as t:
        model.fit(train)
    return model, t[0]


def time_slice(model: Method, sl: Slice, repeats: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Median seconds of `repeats` score_map calls after one warm-up (pixels read once, before timing), peak
    memory over them, and FLOPs counted on one more, eager, call. Returns (timing, the last heatmaps)."""
    sl = sl.pinned()
    model.warmup(sl)
    reset_peak_memory(model.device)
    times = []
    for _ in range(repeats):
        torch.manual_seed(0)  # the same dropout masks in every repeat and every execution mode
        with stopwatch(model.device) as t:
            maps = model.score_map(sl)
        times.append(t[0])
    memory, memory_basis = peak_memory_gb(model.device)
    seconds = statistics.median(times)
    windows = model.last_window_count
    with torch._dynamo.config.patch(disable=True):  # count the eager graph: the compiled one hides its ops
        flops = count_flops(lambda: model.score_map(sl))
    return {"shape": f"{sl.shape[0]}x{sl.shape[1]}", "windows": windows, "s_per_slice": seconds,
            "ms_per_patch": 1000 * seconds / windows if windows else None,
            "windows_per_s": windows / seconds if windows else None, "repeats": repeats,
            "variant_count": len(maps), "flop_per_window": flops / windows if windows else None,
            "peak_memory_gb": memory, "memory_basis": memory_basis, "timing": "measured on the full slice",
            "extrapolated": False}, maps


def time_windows(model: Method, sl: Slice, count: int, repeats: int) -> dict[str, Any]:
    """Cost of `count` tissue windows of `sl` (for methods too slow to score a whole slice here), extrapolated to
    the slice's window count. Completion methods report through their backbone's `cost_probe` (HFPIC: measured
    transformer forward x forwards per window + the measured rest); others time `score_windows`. Both run under
    the config's execution mode."""
    from adbench_dbt.completion.method import CompletionMethod
    from adbench_dbt.windows import WindowGrid, window_view

    if not isinstance(model, WindowMethod):
        raise ConfigError(f"--windows needs a sliding-window method, {model.name!r} is not one")
    image, breast = sl.load()
    grid = WindowGrid(image.shape[0], image.shape[1], model.config.window, model.config.stride)
    total = grid.count
    # the `count` windows with the most tissue (a fixed, reproducible choice)
    cover = F.avg_pool2d(torch.tensor(breast)[None, None].float(), grid.window, grid.stride)[0, 0]
    chosen = torch.argsort(-cover[:grid.n_rows, :grid.n_cols].flatten(), stable=True)[:count]
    windows = window_view(torch.tensor(image), grid).reshape(total, grid.window, grid.window)[chosen]
    windows = windows[:, None].float().to(model.device)
    reset_peak_memory(model.device)
    if isinstance(model, CompletionMethod):
        with autocast(model.device, model.precision):
            cost = model.backbone.cost_probe(windows, repeats)
    else:
        scorer = model.execute(model.score_windows)
        with torch.inference_mode():
            scorer(windows)
            times = []
            for _ in range(repeats):
                with stopwatch(model.device) as t:
                    scorer(windows)
                times.append(t[0])
        with torch._dynamo.config.patch(disable=True):
            flops = count_flops(lambda: scorer(windows))
        cost = {"s_per_window": statistics.median(times) / count, "estimated": False, "flop_per_window": flops / count}
    memory, memory_basis = peak_memory_gb(model.device)
    per_window = cost["s_per_window"]
    how = "estimated: forwards x measured forward + measured rest" if cost["estimated"] else "measured"
    return {"shape": f"{sl.shape[0]}x{sl.shape[1]}", "windows": count, "s_per_slice": per_window * total,
            "ms_per_patch": 1000 * per_window, "windows_per_s": 1 / per_window, "repeats": repeats,
            "variant_count": len(model.variants), "forwards_per_window": cost.get("forwards_per_window"),
            "flop_per_window": cost.get("flop_per_window"), "batch_size": count,
            "peak_memory_gb": memory, "memory_basis": memory_basis, "extrapolated": True,
            "timing": f"{how} on {count} window(s); s_per_slice = x {total} windows"}


def bench_row(method: str, profile: str, overrides: dict[str, Any], model: Method,
              timing: dict[str, Any]) -> dict[str, Any]:
    """One benchmark row: the timing plus achieved TFLOP/s against the device's peak for the precision used."""
    label = profile_label(profile if method != "engine" else "-", overrides)
    timing = dict(timing)
    batch = timing.pop("batch_size", model.batch_size_used)  # --windows mode: the windows timed together
    flops, rate = timing.get("flop_per_window"), timing.get("windows_per_s")
    achieved = flops * rate / 1e12 if flops and rate else None
    peak = peak_tflops(model.device, model.precision)
    return {"method": method, "profile": label, **timing, "tflops": achieved, "peak_tflops": peak.tflops,
            "pct_of_peak": 100 * achieved / peak.tflops if achieved and peak.tflops else None,
            "peak_basis": peak.basis, "device": device_name(model.device), "precision": model.precision,
            "batch_size": batch, "harness_revision": harness_revision(), "date": dt.date.today().isoformat()}


def merge_bench(path: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    return merge_table(path, rows, BENCH_COLUMNS, BENCH_KEY, [
        "# Speed benchmarks", "", "Generated by `adbench bench` (median of repeats after a warm-up; random weights: "
        "cost does not depend on training). `engine` = harness overhead alone. `flop_per_window` is counted by "
        "torch.utils.flop_counter (matrix products and convolutions); `tflops` = achieved, `pct_of_peak` against "
        "`peak_tflops`, the device's dense peak for the precision (`peak_basis` says where it comes from; a CPU's is "
        "an estimate). `extrapolated`: s_per_slice from N windows (see `timing`). `rank_vs_fp32` = Spearman of the "
        "heatmap's pixels against the fp32 row of the same case (suite runs)."])


def merge_table(path: Path, rows: list[dict[str, Any]], columns: list[str], key: list[str],
                intro: list[str]) -> pd.DataFrame:
    """Merge `rows` into the CSV at `path` (a re-measured `key` replaces its row) and regenerate its Markdown twin
    (`intro` lines, then the table), both written atomically."""
    path = Path(path)
    old = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=columns)
    table = pd.concat([old, pd.DataFrame(rows, columns=columns)], ignore_index=True)
    table = table.drop_duplicates(subset=key, keep="last")[columns]
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    cells = ([("" if v != v else f"{v:.4g}") if isinstance(v, float) else v for v in r.values()]
             for r in table.to_dict("records"))
    write_text(path.with_suffix(".md"), "\n".join([*intro, "", *table_lines(columns, cells)]) + "\n")
    return table


@dataclass(frozen=True)
class BenchCase:
    """One row of a benchmark suite; `windows` times that many windows instead of the whole slice."""

    method: str
    profile: str = "paper"
    overrides: dict[str, Any] = field(default_factory=dict)
    windows: int | None = None


BF16 = {"precision": "bf16"}
# `adbench bench --suite gpu` (benchmarks/gpu.sh): every method's paper profile on one full phantom slice, PICARD in
# fp32 and bf16, eager and compiled; bf16 rows carry their rank agreement with the fp32 row of the same case.
GPU_SUITE: tuple[BenchCase, ...] = (
    BenchCase("engine", "-"),
    BenchCase("picard"),
    BenchCase("picard", overrides=BF16),
    BenchCase("picard", overrides={**BF16, "channels_last": True}),
    BenchCase("picard", overrides={**BF16, "channels_last": True, "compile": True}),
    BenchCase("picard", overrides={**BF16, "channels_last": True, "compile": True, "cuda_graphs": True}),
    # the batch grown to what fits: keyed dropout masks, so its rank_vs_fp32 must match the fixed-batch bf16 row's
    BenchCase("picard", overrides={**BF16, "channels_last": True, "auto_batch": True}),
    BenchCase("dmse"),
    BenchCase("dmse", overrides=BF16),
    BenchCase("cutpaste"),
    BenchCase("cutpaste", overrides=BF16),
    BenchCase("patchsvdd"),  # fp32 only (PatchSVDD.fp32_only)
    BenchCase("hfpic", overrides={"sampling": "parallel"}, windows=32),
    BenchCase("hfpic", overrides={"sampling": "parallel", **BF16}, windows=32),
)
SUITES = {"gpu": GPU_SUITE}
FP32_ONLY = ("precision", "channels_last", "compile", "cuda_graphs", "auto_batch")


def run_suite(cases: Sequence[BenchCase], device: torch.device, dataset: Any, repeats: int,
              dry_run: bool) -> list[dict[str, Any]]:
    """Bench every case on the dataset's first test slice. `dry_run` checks the suite on any machine in seconds:
    smoke profiles, 2 windows at most, eager (compile and CUDA graphs dropped), one repeat."""
    train, sl = dataset.split("train"), dataset.split("test")[0]
    rows, reference_maps, seen = [], {}, set()
    for case in cases:
        overrides = dict(case.overrides)
        profile = case.profile
        if dry_run:
            if case.method != "engine":  # the real case's config must validate, even though it does not run
                cls = get_method(case.method)
                build_config(cls.Config, cls.name, cls.profiles(), profile, overrides)
            overrides = {k: v for k, v in overrides.items() if k not in ("compile", "cuda_graphs")}
            if case.method == "engine":
                overrides |= {"window": 32, "stride": 8}  # the tiny phantom's slices are smaller than 256 px
            else:
                profile = "smoke"
            if (identity := (case.method, profile, str(sorted(overrides.items())))) in seen:
                continue  # the same case once compile and CUDA graphs are dropped
            seen.add(identity)
        model = build_for_bench(case.method, profile, overrides, device, train)
        windows = min(case.windows, 2) if dry_run and case.windows else case.windows
        if windows is None:
            timing, maps = time_slice(model, sl, 1 if dry_run else repeats)
            key = (case.method, profile, tuple(sorted((k, str(v)) for k, v in overrides.items()
                                                      if k not in FP32_ONLY)))
            if model.precision == "fp32" and key not in reference_maps:
                reference_maps[key] = maps
            elif key in reference_maps:
                timing["rank_vs_fp32"] = rank_agreement(reference_maps[key], maps)
        else:
            timing = time_windows(model, sl, windows, 1 if dry_run else repeats)
        rows.append(bench_row(case.method, profile, overrides, model, timing))
    return rows


def rank_agreement(reference: dict[str, np.ndarray], maps: dict[str, np.ndarray]) -> float:
    """The lowest Spearman rank correlation of pixel scores over the variants (1.0 for identical rankings)."""
    from scipy.stats import spearmanr

    return float(min(spearmanr(reference[v].ravel(), maps[v].ravel())[0] for v in reference))
