"""`adbench run`: fit (or load) -> score every test slice -> heatmaps, per-slice metrics, overlays -> summary.

Resumable: every finished slice leaves `slices/<id>.json` (written last, atomically), so a killed run started again
with the same command skips finished slices and ends with the same summary. Under torchrun the test slices are
sharded across ranks and rank 0 merges.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from adbench_dbt import distributed
from adbench_dbt.data.slices import Slice
from adbench_dbt.datasets_resolve import OpenedDataset, open_dataset
from adbench_dbt.io import save_npz, write_json
from adbench_dbt.metrics import SingleClassError, bootstrap_mean, slice_metrics
from adbench_dbt.method import Method
from adbench_dbt.overlay import render_overlay
from adbench_dbt.provenance import environment, stable_hash
from adbench_dbt.registry import get_method
from adbench_dbt.timing import device_name, resolve_device, stopwatch
from adbench_dbt.config import build_config

console = Console(stderr=True)
METRIC_KEYS = ("auroc", "ap", "auroc_breast", "inout_ratio")


@dataclass(frozen=True)
class RunSpec:
    method: str
    dataset: str = "phantom"
    profile: str = "demo"
    overrides: dict[str, Any] = field(default_factory=dict)
    split: str | None = None  # None: the dataset's test split (the documented fallback when test boxes are absent)
    device: str = "auto"
    checkpoint: str | None = None
    out: str = "runs"
    cache: str | None = None
    breast_only: bool = False
    overlays: bool = True


class RunError(RuntimeError):
    """A failure that names the method, the slice and the file involved."""


def slice_seed(seed: int, slice_id: str) -> int:
    """Per-slice seed: scoring one slice never depends on which slices were scored before (resume-safe)."""
    return (seed * 1_000_003 + zlib.crc32(slice_id.encode())) % (2**63)


def run(spec: RunSpec) -> dict[str, Any]:
    device = resolve_device(spec.device)
    is_dist = distributed.init_from_env(device)
    if is_dist and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    method_cls = get_method(spec.method)
    config = build_config(method_cls.Config, method_cls.name, method_cls.profiles(), spec.profile, spec.overrides)
    data = open_dataset(spec.dataset, cache=spec.cache)
    split = spec.split or data.dataset.test_split
    run_key = stable_hash([config.model_dump(mode="json"), data.fingerprint, split, spec.checkpoint,
                           spec.breast_only])
    run_dir = Path(spec.out) / data.tag / f"{spec.method}-{spec.profile}-{run_key}"
    record = _run_record(spec, split, config.model_dump(mode="json"), data, device)
    if distributed.rank() == 0:
        _check_or_write_record(run_dir, record)
        _remove_stale_temporaries(run_dir)
    distributed.barrier()

    method = _obtain_model(spec, method_cls, config, data, run_dir, device)
    test = data.dataset.split(split)
    if not test:
        raise RunError(f"dataset {data.tag!r} ({data.root}) has no slices in split {split!r}")
    mine = test[distributed.rank()::distributed.world_size()]
    _score_slices(method, mine, run_dir, spec)
    distributed.barrier()
    summary = _summarise(run_dir, test, record) if distributed.rank() == 0 else {}
    distributed.barrier()
    return summary


def _run_record(spec: RunSpec, split: str, config: dict, data: OpenedDataset,
                device: torch.device) -> dict[str, Any]:
    return {"method": spec.method, "profile": spec.profile, "overrides": spec.overrides, "config": config,
            "seed": config.get("seed", 0), "dataset": data.tag, "dataset_root": str(data.root),
            "fingerprint": data.fingerprint, "split": split, "checkpoint": spec.checkpoint,
            "breast_only": spec.breast_only, "device": device_name(device),
            "precision": config.get("precision", "fp32"), "batch_size": config.get("batch_size"),
            "environment": environment(), "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _check_or_write_record(run_dir: Path, record: dict[str, Any]) -> None:
    path = run_dir / "run.json"
    if path.exists():
        old = json.loads(path.read_text())
        for key in ("method", "config", "fingerprint", "split", "checkpoint"):
            if old.get(key) != record[key]:
                raise RunError(f"{path}: existing run has a different {key!r}; use another --out to start afresh")
        return
    write_json(path, record)


def _remove_stale_temporaries(run_dir: Path) -> None:
    """A process killed mid-write (SIGKILL, power loss) leaves its hidden temporary behind, never a half-written
    target; sweep them when the run is started again."""
    for leftover in sorted(run_dir.glob("**/.*.tmp*"), reverse=True):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        elif leftover.exists():
            leftover.unlink()


def _obtain_model(spec: RunSpec, method_cls: type[Method], config, data: OpenedDataset, run_dir: Path,
                  device: torch.device) -> Method:
    """The run's cached model, else --checkpoint, else fit on the training split (rank 0 unless the method trains
    with DDP itself) and cache it."""
    model_dir = run_dir / "model"
    if spec.checkpoint:
        return _load_checkpoint(method_cls, config, Path(spec.checkpoint), device)
    if not model_dir.exists():
        trains_everywhere = getattr(method_cls, "supports_distributed_fit", False)
        if distributed.rank() == 0 or trains_everywhere:
            method = method_cls(config, device=device)
            method.work_dir = run_dir / "train"
            torch.manual_seed(config.seed)
            np.random.seed(config.seed % 2**32)
            train = data.dataset.split("train")
            val = data.dataset.split("validation")
            if not train:
                raise RunError(f"dataset {data.tag!r} ({data.root}) has no training slices")
            console.print(f"[bold]fit[/] {spec.method} ({spec.profile}) on {len(train)} normal slices, device {device}")
            with stopwatch(device) as t:
                method.fit(train, val or None)
            if distributed.rank() == 0:
                method.save(model_dir)
                write_json(run_dir / "fit.json", {"seconds": t[0], "train_slices": len(train)})
        distributed.barrier()
    return method_cls.load(model_dir, device=device)


def _load_checkpoint(method_cls: type[Method], config, path: Path, device: torch.device) -> Method:
    if (path / "config.json").exists():
        return method_cls.load(path, device=device)
    loader = getattr(method_cls, "from_checkpoint", None)
    if loader is None:
        raise RunError(f"--checkpoint {path}: no config.json (not a saved adbench model) and method "
                       f"{method_cls.name!r} cannot load foreign checkpoints")
    return loader(path, config, device)


def _score_slices(method: Method, slices: Sequence[Slice], run_dir: Path, spec: RunSpec) -> None:
    pending = [sl for sl in slices if not (run_dir / "slices" / f"{sl.id}.json").exists()]
    if not pending:
        return
    try:
        torch.manual_seed(slice_seed(method.config.seed, "warmup"))
        method.warmup(pending[0])
    except Exception as err:
        raise RunError(f"method {method.name!r}: warm-up on slice {pending[0].id!r} failed: {err}") from err
    columns = (TextColumn("[bold]score[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]} windows/s"), TimeElapsedColumn(), TimeRemainingColumn())
    windows_total, seconds_total = 0, 0.0
    with Progress(*columns, console=console, disable=distributed.rank() != 0) as progress:
        task = progress.add_task(method.name, total=len(pending), rate="-")
        for sl in pending:
            seconds, windows = _score_one(method, sl, run_dir, spec)
            windows_total += windows
            seconds_total += seconds
            rate = f"{windows_total / seconds_total:,.0f}" if windows_total else "-"
            progress.update(task, advance=1, rate=rate)


def _score_one(method: Method, sl: Slice, run_dir: Path, spec: RunSpec) -> tuple[float, int]:
    heat_path = run_dir / "heatmaps" / f"{sl.id}.npz"
    try:
        image, breast = sl.load()
        torch.manual_seed(slice_seed(method.config.seed, sl.id))
        with stopwatch(method.device) as t:
            maps = method.score_map(sl)
    except Exception as err:
        raise RunError(f"method {method.name!r} failed on slice {sl.id!r}: {err}") from err
    labels = sl.label_mask
    record: dict[str, Any] = {"id": sl.id, "shape": list(sl.shape), "boxes": [list(b) for b in sl.boxes],
                              "seconds": t[0], "windows": method.last_window_count, "metrics": {}}
    for variant, heat in maps.items():
        if heat.shape != sl.shape:
            raise RunError(f"method {method.name!r}, slice {sl.id!r}: variant {variant!r} heatmap {heat.shape} "
                           f"!= slice {sl.shape}")
        try:
            record["metrics"][variant] = slice_metrics(heat, labels, breast, spec.breast_only, where=sl.id)
        except SingleClassError as err:
            console.print(f"[yellow]skipped in the means[/]: {err}")
            record["metrics"][variant] = {k: None for k in METRIC_KEYS} | {"note": str(err)}
    save_npz(heat_path, **maps)
    if spec.overlays:
        first = next(iter(maps))
        render_overlay(run_dir / "overlays" / f"{sl.id}.png", image, maps[first], sl.boxes)
    write_json(run_dir / "slices" / f"{sl.id}.json", record)
    return t[0], method.last_window_count


def _summarise(run_dir: Path, slices: Sequence[Slice], record: dict[str, Any]) -> dict[str, Any]:
    per_slice = []
    for sl in slices:
        path = run_dir / "slices" / f"{sl.id}.json"
        if not path.exists():
            raise RunError(f"{path} missing after scoring: a rank did not finish")
        per_slice.append(json.loads(path.read_text()))
    seconds = np.array([r["seconds"] for r in per_slice])
    windows = np.array([r["windows"] for r in per_slice])
    fit_path = run_dir / "fit.json"
    variants: dict[str, Any] = {}
    for variant in per_slice[0]["metrics"]:
        values = {k: np.array([np.nan if r["metrics"][variant][k] is None else r["metrics"][variant][k]
                               for r in per_slice], dtype=np.float64) for k in METRIC_KEYS}
        stats = {k: bootstrap_mean(v, seed=record["seed"]) for k, v in values.items()}
        variants[variant] = {
            **{f"{k}": s.mean for k, s in stats.items()},
            **{f"{k}_ci": [s.low, s.high] for k, s in stats.items() if k != "inout_ratio"},
            "inout_ratio_std": float(np.nanstd(values["inout_ratio"])) if stats["inout_ratio"].n else None,
            "slices_scored": stats["auroc"].n,
        }
    summary = {
        **{k: record[k] for k in ("method", "profile", "overrides", "dataset", "fingerprint", "split", "seed",
                                  "device", "precision", "batch_size", "checkpoint", "breast_only")},
        "harness_revision": record["environment"]["harness_revision"],
        "slices": len(per_slice),
        "variants": variants,
        "timing": {
            "score_seconds": float(seconds.sum()),
            "s_per_slice": float(seconds.mean()),
            "windows": int(windows.sum()),
            "ms_per_patch": float(1000 * seconds.sum() / windows.sum()) if windows.sum() else None,
            "windows_per_s": float(windows.sum() / seconds.sum()) if windows.sum() else None,
            "fit_seconds": json.loads(fit_path.read_text())["seconds"] if fit_path.exists() else None,
        },
        "date": dt.date.today().isoformat(),
        "run_dir": str(run_dir),
    }
    write_json(run_dir / "summary.json", summary)
    return summary
