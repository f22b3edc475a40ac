"""`adbench bench`: speed of the engine and of each method on one phantom slice, as committed benchmark rows.

Timing needs no trained model (weights do not change the cost), so methods are built from a profile with random
weights and `prepare_untrained` fits whatever statistics scoring needs. The `engine` pseudo-method scores each
window by its mean: it measures the harness's own overhead (cutting, batching, assembly).
"""
from __future__ import annotations

import datetime as dt
import statistics
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from adbench_dbt.config import WindowConfig
from adbench_dbt.data.slices import Slice
from adbench_dbt.errors import ConfigError
from adbench_dbt.io import atomic_path, write_text
from adbench_dbt.leaderboard import profile_label
from adbench_dbt.method import Method, WindowMethod
from adbench_dbt.provenance import harness_revision
from adbench_dbt.registry import create_method
from adbench_dbt.timing import device_name, stopwatch

BENCH_KEY = ["method", "profile", "variant_count", "shape", "device", "precision", "batch_size"]
BENCH_COLUMNS = ["method", "profile", "shape", "windows", "s_per_slice", "ms_per_patch", "windows_per_s",
                 "repeats", "variant_count", "device", "precision", "batch_size", "harness_revision", "date",
                 "forwards_per_window", "timing"]


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


def time_slice(model: Method, sl: Slice, repeats: int) -> dict[str, Any]:
    """Median seconds of `repeats` score_map calls after one warm-up (pixels read once, before timing)."""
    sl = sl.pinned()
    model.warmup(sl)
    times = []
    for _ in range(repeats):
        with stopwatch(model.device) as t:
            maps = model.score_map(sl)
        times.append(t[0])
    seconds = statistics.median(times)
    windows = model.last_window_count
    return {"shape": f"{sl.shape[0]}x{sl.shape[1]}", "windows": windows, "s_per_slice": seconds,
            "ms_per_patch": 1000 * seconds / windows if windows else None,
            "windows_per_s": windows / seconds if windows else None, "repeats": repeats,
            "variant_count": len(maps)}


def time_windows(model: Method, sl: Slice, count: int, repeats: int) -> dict[str, Any]:
    """Cost of `count` tissue windows of `sl` (for methods too slow to score a whole slice here), extrapolated to
    the slice's window count. Completion methods report through their backbone's `cost_probe` (HFPIC: measured
    transformer forward x forwards per window + the measured rest); others time `score_windows`."""
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
    if isinstance(model, CompletionMethod):
        cost = model.backbone.cost_probe(windows, repeats)
    else:
        with torch.inference_mode():
            model.score_windows(windows)
            times = []
            for _ in range(repeats):
                with stopwatch(model.device) as t:
                    model.score_windows(windows)
                times.append(t[0])
        cost = {"s_per_window": statistics.median(times) / count, "estimated": False}
    per_window = cost["s_per_window"]
    how = "estimated: forwards x measured forward + measured rest" if cost["estimated"] else "measured"
    return {"shape": f"{sl.shape[0]}x{sl.shape[1]}", "windows": count, "s_per_slice": per_window * total,
            "ms_per_patch": 1000 * per_window, "windows_per_s": 1 / per_window, "repeats": repeats,
            "variant_count": len(model.variants), "forwards_per_window": cost.get("forwards_per_window"),
            "batch_size": count,
            "timing": f"{how} on {count} window(s); s_per_slice = x {total} windows"}


def bench_row(method: str, profile: str, overrides: dict[str, Any], model: Method,
              timing: dict[str, Any]) -> dict[str, Any]:
    label = profile_label(profile if method != "engine" else "-", overrides)
    timing = dict(timing)
    batch = timing.pop("batch_size", model.batch_size_used)  # --windows mode: the windows timed together
    return {"method": method, "profile": label, **timing,
            "device": device_name(model.device), "precision": model.precision, "batch_size": batch,
            "harness_revision": harness_revision(), "date": dt.date.today().isoformat()}


def merge_bench(path: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    return merge_table(path, rows, BENCH_COLUMNS, BENCH_KEY, [
        "# Speed benchmarks", "", "Generated by `adbench bench` (median of repeats after a warm-up; random weights: "
        "cost does not depend on training). `engine` = harness overhead alone."])


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
    lines = [*intro, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in table.to_dict("records"):
        lines.append("| " + " | ".join(("" if v != v else f"{v:.4g}") if isinstance(v, float) else str(v)
                                       for v in r.values()) + " |")
    write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")
    return table
