"""Does scoring in another execution mode (bf16, fp16, compiled) rank pixels as the finished fp32 run did?

`adbench fidelity RUN_DIR --set precision=bf16` restores the run's model, re-scores evenly spaced slices of its
test split with the run's own per-slice seeds under the overrides, and compares the heatmaps with the ones the run
saved: per slice Spearman rank correlation of the pixels, and mean pixel AUROC of both over the same slices. The
first slice is also re-scored unchanged, to prove the saved heatmaps are reproduced (`reference_max_abs_diff`).

Issue 13's bar: Spearman >= 0.999 on every slice and |mean AUROC difference| <= 0.005.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

from adbench_dbt.bench import merge_table
from adbench_dbt.config import build_config
from adbench_dbt.datasets_resolve import open_dataset
from adbench_dbt.errors import RunError
from adbench_dbt.io import read_run_json
from adbench_dbt.metrics import slice_metrics
from adbench_dbt.registry import get_method
from adbench_dbt.runner import slice_seed
from adbench_dbt.summary import read_slice_record
from adbench_dbt.timing import resolve_device

SPEARMAN_BAR = 0.999
AUROC_BAR = 0.005
KEY = ["method", "variant", "mode"]  # one row per method and mode: a newer run's measurement replaces an older run's
COLUMNS = ["method", "run", "variant", "mode", "slices", "spearman_min", "spearman_median", "slices_below_bar",
           "auroc_run", "auroc_mode", "auroc_difference", "passes", "reference_max_abs_diff", "fingerprint"]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two equally shaped maps (average ranks for ties; 1.0 when both are constant)."""
    ra, rb = rankdata(a.ravel()), rankdata(b.ravel())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return 1.0 if denominator == 0 else float((ra * rb).sum() / denominator)


def fidelity(run_dir: str | Path, overrides: dict[str, Any], slices: int, device: str = "cpu") -> list[dict[str, Any]]:
    """One row per score variant: `overrides` against the run's saved heatmaps on `slices` evenly spaced slices."""
    run_dir = Path(run_dir)
    record = read_run_json(run_dir / "run.json", "run record")
    if not (run_dir / "model").is_dir():
        raise RunError(f"{run_dir}: no saved model (model/); only a run that fitted its own model can be re-scored")
    data = open_dataset(record["dataset_root"], cache=record.get("cache"))
    if data.fingerprint != record["fingerprint"]:
        raise RunError(f"{record['dataset_root']}: split fingerprint {data.fingerprint[:12]} is not the run's "
                       f"{record['fingerprint'][:12]}; the data changed since the run")
    method_cls = get_method(record["method"])
    config = build_config(method_cls.Config, method_cls.name, {"run": record["config"]}, "run")
    dev = resolve_device(device)
    reference = method_cls.restore(run_dir / "model", config, dev)
    changed = method_cls.restore(run_dir / "model", build_config(method_cls.Config, method_cls.name,
                                                                  {"run": record["config"]}, "run", overrides), dev)
    test = data.dataset.split(record["split"])
    chosen = [test[i] for i in np.unique(np.linspace(0, len(test) - 1, min(slices, len(test))).round().astype(int))]
    rho: dict[str, list[float]] = {}
    auroc_run: dict[str, list[float]] = {}
    auroc_mode: dict[str, list[float]] = {}
    reference_diff = 0.0
    for position, sl in enumerate(chosen):
        sl = sl.pinned()
        image, breast = sl.load()
        with np.load(run_dir / "heatmaps" / f"{sl.id}.npz") as saved:
            stored = {k: saved[k] for k in saved.files}
        if position == 0:
            torch.manual_seed(slice_seed(config.seed, sl.id))
            again = reference.score_map(sl)
            reference_diff = max(float(np.abs(again[v] - stored[v]).max()) for v in stored)
        torch.manual_seed(slice_seed(changed.config.seed, sl.id))  # `--set seed=1`: the seed-to-seed floor
        maps = changed.score_map(sl)
        recorded = read_slice_record(run_dir / "slices" / f"{sl.id}.json").metrics  # the run's own AUROCs
        for v in stored:
            rho.setdefault(v, []).append(spearman(stored[v], maps[v]))
            run_value = recorded[v].auroc
            mode_value = slice_metrics(maps[v], sl.label_mask, breast, record.get("breast_only", False), sl.id)["auroc"]
            for target, value in ((auroc_run, run_value), (auroc_mode, mode_value)):
                if value is not None and np.isfinite(value):
                    target.setdefault(v, []).append(value)
    mode = " ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    rows = []
    for v, values in rho.items():
        values_array = np.array(values)
        below = int((values_array < SPEARMAN_BAR).sum())
        a, b = float(np.mean(auroc_run.get(v, [np.nan]))), float(np.mean(auroc_mode.get(v, [np.nan])))
        rows.append({"method": record["method"], "run": run_dir.name, "variant": v, "mode": mode,
                     "slices": len(chosen), "spearman_min": float(values_array.min()),
                     "spearman_median": float(np.median(values_array)), "slices_below_bar": below,
                     "auroc_run": a, "auroc_mode": b, "auroc_difference": b - a,
                     "passes": bool(below == 0 and abs(b - a) <= AUROC_BAR),
                     "reference_max_abs_diff": reference_diff, "fingerprint": record["fingerprint"][:12]})
    return rows


def merge_fidelity(path: str | Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Merge rows into the CSV (a newer row replaces the same method/variant/mode, also one measured on an older run,
    e.g. before the method's scores changed) and rewrite the .md."""
    return merge_table(Path(path), rows, COLUMNS, KEY, [
        "# Reduced-precision fidelity", "",
        "Generated by `adbench fidelity RUN_DIR --set precision=bf16 --slices N`: the run's model re-scores N evenly "
        "spaced test slices with the run's per-slice seeds in the given mode; per slice Spearman rank correlation "
        "against the run's saved (fp32) heatmaps, and the mean pixel AUROC of both over those slices. Bar: Spearman "
        f">= {SPEARMAN_BAR} on every slice and |AUROC difference| <= {AUROC_BAR}. `reference_max_abs_diff`: the "
        "first slice re-scored unchanged against the saved heatmap."])
