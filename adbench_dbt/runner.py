"""`adbench run`: fit (or load) -> score every test slice -> heatmaps, per-slice metrics, overlays -> summary.

Before any training, `preflight` checks everything the run will need (device, config, checkpoint, the test and
training splits present, cached and non-empty, the output writable), so a bad input costs seconds, not a training.
A run directory is named after the content of what the run loads (config, split manifest, checkpoint bytes), so
changed inputs never reuse old results. Resumable: every finished slice leaves `slices/<id>.json` (written last,
atomically), so a killed run started again with the same command skips finished slices and ends with the same
summary. Under torchrun the test slices are sharded across ranks and rank 0 merges.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from adbench_dbt import distributed
from adbench_dbt.data.slices import Slice
from adbench_dbt.datasets_resolve import OpenedDataset, open_dataset
from adbench_dbt.config import MethodConfig, build_config, referenced_paths
from adbench_dbt.detection import DetectionConfig, detect
from adbench_dbt.errors import AdbenchError, ConfigError, RunError
from adbench_dbt.io import save_npz, write_json
from adbench_dbt.method import Method, WindowMethod, content_files, files_sha256
from adbench_dbt.metrics import SingleClassError, slice_metrics
from adbench_dbt.overlay import render_overlay
from adbench_dbt.provenance import environment, stable_hash
from adbench_dbt.registry import get_method
from adbench_dbt.summary import METRIC_KEYS, RunSummary, SliceMetrics, SliceRecord
from adbench_dbt.summarise import summarise
from adbench_dbt.timing import device_name, resolve_device, stopwatch

console = Console(stderr=True)


@dataclass(frozen=True)
class RunSpec:
    method: str
    dataset: str = "phantom"
    profile: str = "demo"
    overrides: dict[str, Any] = field(default_factory=dict)
    split: str | None = None  # None: the dataset's test split (the documented fallback when test boxes are absent)
    split_options: dict[str, Any] = field(default_factory=dict)  # protocol and split-definition fields
    device: str = "auto"
    checkpoint: str | None = None
    out: str = "runs"
    cache: str | None = None
    breast_only: bool = False
    overlays: bool = True
    detection: DetectionConfig = field(default_factory=DetectionConfig)  # heatmap -> boxes (README "Detection")


@dataclass
class RunPlan:
    """Everything a run needs, checked before any training or scoring starts."""

    spec: RunSpec
    method_cls: type[Method]
    config: MethodConfig
    device: torch.device
    data: OpenedDataset
    split: str
    test: list[Slice]
    run_dir: Path
    record: dict[str, Any]
    model: Method | None  # loaded from --checkpoint or from the run's cached model; None: must be fitted
    train: list[Slice]
    val: list[Slice]


def slice_seed(seed: int, slice_id: str) -> int:
    """Per-slice seed: scoring one slice never depends on which slices were scored before (resume-safe)."""
    return (seed * 1_000_003 + zlib.crc32(slice_id.encode())) % (2**63)


def run(spec: RunSpec) -> RunSummary:
    plan = preflight(spec)
    method = plan.model if plan.model is not None else _fit(plan)
    mine = plan.test[distributed.rank()::distributed.world_size()]
    _score_slices(method, mine, plan.run_dir, spec)
    distributed.barrier()
    summary = _summarise(plan, method) if distributed.rank() == 0 else None
    distributed.barrier()
    return summary


def preflight(spec: RunSpec) -> RunPlan:
    """Check device, config, checkpoint, data and output before any work; raise the first problem found."""
    device = resolve_device(spec.device)
    is_dist = distributed.init_from_env(device)
    if is_dist and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    method_cls = get_method(spec.method)
    config = build_config(method_cls.Config, method_cls.name, method_cls.profiles(), spec.profile, spec.overrides)
    if issubclass(method_cls, WindowMethod):  # e.g. CUDA graphs on a CPU: refused now, not after the training
        method_cls.check_execution(config, device)
    referenced = _referenced_files_sha256(config)
    checkpoint_sha = None
    if spec.checkpoint:
        path = Path(spec.checkpoint)
        model = method_cls.restore(path, config, device)  # readable and compatible, or a CheckpointError
        checkpoint_sha = files_sha256(method_cls.checkpoint_files(path, config), path)
    data = open_dataset(spec.dataset, cache=spec.cache, split_options=spec.split_options)
    split = spec.split or data.dataset.test_split
    test = data.dataset.split(split)  # present and cached (prepared now if needed), or a DataError
    if not test:
        raise RunError(f"dataset {data.tag!r} ({data.root}): split {split!r} has no slices to score")
    config_json = config.model_dump(mode="json")
    version = method_cls.scores_version
    run_key = stable_hash([_identity(config_json), data.fingerprint, split, checkpoint_sha, spec.breast_only]
                          + ([referenced] if referenced else []) + ([version] if version > 1 else []))
    run_dir = Path(spec.out) / data.tag / f"{spec.method}-{spec.profile}-{run_key}"
    record = _run_record(spec, split, config_json, data, device, checkpoint_sha)
    if referenced:  # only when the config names files: earlier run records stay valid
        record["referenced_files"] = referenced
    if version > 1:  # likewise: only methods whose scores changed get new keys
        record["scores_version"] = version
    if distributed.rank() == 0:
        _check_or_write_record(run_dir, record)  # also proves the output directory is writable
        _remove_stale_temporaries(run_dir)
    distributed.barrier()
    train: list[Slice] = []
    val: list[Slice] = []
    if not spec.checkpoint:
        model_dir = run_dir / "model"
        if model_dir.exists():
            model = method_cls.load(model_dir, device=device, config=config)
        else:
            model = None
            train = data.dataset.split("train")
            if not train:
                raise RunError(f"dataset {data.tag!r} ({data.root}) has no training slices")
            val = data.dataset.split("validation") if "validation" in data.dataset.split_names else []
    return RunPlan(spec, method_cls, config, device, data, split, test, run_dir, record, model, train, val)


def _referenced_files_sha256(config: MethodConfig) -> dict[str, str]:
    """{config field: sha256 of the contents} of every file the config names (pretrained weights, critics, palettes),
    so that replacing such a file at the same path never reuses old results."""
    out = {}
    for name, path in referenced_paths(config).items():
        if not path.exists():
            raise ConfigError(f"--set {name}={path}: no such file or directory")
        out[name] = files_sha256(content_files(path), path)
    return out


def _run_record(spec: RunSpec, split: str, config: dict, data: OpenedDataset, device: torch.device,
                checkpoint_sha: str | None) -> dict[str, Any]:
    return {"method": spec.method, "profile": spec.profile, "overrides": spec.overrides, "config": config,
            "seed": config.get("seed", 0), "dataset": data.tag, "dataset_root": str(data.root),
            "fingerprint": data.fingerprint, "split": split, "split_options": spec.split_options,
            "checkpoint": spec.checkpoint, "checkpoint_sha256": checkpoint_sha, "breast_only": spec.breast_only,
            "cache": spec.cache, "device": device_name(device), "environment": environment(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


IDENTITY_KEYS = ("method", "config", "fingerprint", "split", "checkpoint_sha256", "breast_only", "referenced_files",
                 "scores_version")
DISPLAY_ONLY = ("progress", "log_every")  # config fields that change what is shown, never what is computed


def _check_or_write_record(run_dir: Path, record: dict[str, Any]) -> None:
    path = run_dir / "run.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError as err:
            raise RunError(f"{path}: unreadable run record ({err}); use another --out to start afresh") from None
        for key in IDENTITY_KEYS:
            old_value, new_value = old.get(key), record.get(key)
            if key == "config":
                old_value, new_value = _identity(old_value or {}), _identity(new_value)
            if old_value != new_value:
                raise RunError(f"{path}: existing run has a different {key!r}; use another --out to start afresh")
        return
    write_json(path, record)


def _identity(config_json: dict[str, Any]) -> dict[str, Any]:
    """The config as far as it changes results (display-only fields dropped): what a run's identity hashes."""
    return {k: v for k, v in config_json.items() if k not in DISPLAY_ONLY}


def _remove_stale_temporaries(run_dir: Path) -> None:
    """A process killed mid-write (SIGKILL, power loss) leaves its hidden temporary behind, never a half-written
    target; sweep them when the run is started again."""
    for leftover in sorted(run_dir.glob("**/.*.tmp*"), reverse=True):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        elif leftover.exists():
            leftover.unlink()


def _fit(plan: RunPlan) -> Method:
    """Fit on the training split (rank 0 unless the method trains with DDP itself), cache the model in the run."""
    spec, config, device, run_dir = plan.spec, plan.config, plan.device, plan.run_dir
    model_dir = run_dir / "model"
    if distributed.rank() == 0 or plan.method_cls.supports_distributed_fit:
        torch.manual_seed(config.seed)  # before construction: initial weights drawn from the global RNG
        np.random.seed(config.seed % 2**32)
        method = plan.method_cls(config, device=device)
        method.work_dir = run_dir / "train"
        console.print(f"[bold]fit[/] {spec.method} ({spec.profile}) on {len(plan.train)} normal slices, "
                      f"device {device}")
        with stopwatch(device) as t:
            method.fit(plan.train, plan.val or None)
        if distributed.rank() == 0:
            method.save(model_dir)
            log = method.work_dir / "train-log.jsonl"
            write_json(run_dir / "fit.json", {"seconds": _training_seconds(log, t[0]), "train_slices": len(plan.train),
                                              "log": str(log.relative_to(run_dir)) if log.exists() else None})
    distributed.barrier()
    return plan.method_cls.load(model_dir, device=device, config=config)


def _training_seconds(log: Path, measured: float) -> float:
    """Training wall time over every resumed piece (the log's cumulative seconds), else this piece's time."""
    if log.exists():
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        try:
            return max(measured, float(json.loads(lines[-1])["seconds"])) if lines else measured
        except (ValueError, KeyError):
            return measured
    return measured


def _score_slices(method: Method, slices: Sequence[Slice], run_dir: Path, spec: RunSpec,
                  overlap: bool | None = None) -> None:
    """Score the slices not scored yet. With `overlap` (default: on CUDA) the next slice is read and the last
    one's metrics and files are written on worker threads while the device scores, so it never waits for the
    host; on a CPU those threads would only compete with scoring for the same cores."""
    pending = [sl for sl in slices if not (run_dir / "slices" / f"{sl.id}.json").exists()]
    if not pending:
        return
    first = pending[0] = pending[0].pinned()
    torch.manual_seed(slice_seed(method.config.seed, "warmup"))
    _guarded(method, first, "warm-up", lambda: method.warmup(first))
    columns = (TextColumn("[bold]score[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]} windows/s"), TimeElapsedColumn(), TimeRemainingColumn())
    windows_total, seconds_total = 0, 0.0
    overlap = method.device.type == "cuda" if overlap is None else overlap
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="adbench-io") if overlap else None
    with Progress(*columns, console=console, disable=distributed.rank() != 0) as progress, \
            (pool if pool is not None else nullcontext()):
        task = progress.add_task(method.name, total=len(pending), rate="-")
        reading = _Prefetch(pool, pending)
        writing: Future | None = None
        for index in range(len(pending)):
            sl = reading.get(index)
            seconds, windows, maps = _score_one(method, sl)
            record = _SliceOutputs(sl, maps, seconds, windows, method.batch_size_used)
            if writing is not None:
                writing.result()  # the previous slice's files are on disk (or its error is raised) first
            if pool is not None:  # metrics, heatmap, overlay and detection on the host while the device scores on
                writing = pool.submit(_finish_slice, method.name, record, run_dir, spec)
            else:
                _finish_slice(method.name, record, run_dir, spec)
            windows_total += windows
            seconds_total += seconds
            rate = f"{windows_total / seconds_total:,.0f}" if windows_total else "-"
            progress.update(task, advance=1, rate=rate)
        if writing is not None:
            writing.result()


def _guarded(method: Method, sl: Slice, what: str, work: Callable[[], Any]) -> Any:
    """Run a method's own code; a bug inside it becomes a RunError naming the method and the slice."""
    try:
        return work()
    except (AdbenchError, KeyboardInterrupt):
        raise
    except Exception as err:
        raise RunError(f"method {method.name!r}: {what} on slice {sl.id!r} failed: "
                       f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}") \
            from err


class _Prefetch:
    """Slices read (pinned) one ahead on a worker thread, so decoding the next slice overlaps scoring this one."""

    def __init__(self, pool: ThreadPoolExecutor | None, slices: Sequence[Slice]) -> None:
        self.pool, self.slices = pool, slices
        self.next: Future | None = pool.submit(slices[0].pinned) if pool is not None and slices else None

    def get(self, index: int) -> Slice:
        if self.pool is None:
            return self.slices[index].pinned()
        sl = self.next.result()
        self.next = self.pool.submit(self.slices[index + 1].pinned) if index + 1 < len(self.slices) else None
        return sl


@dataclass(frozen=True)
class _SliceOutputs:
    sl: Slice
    maps: dict[str, Any]
    seconds: float
    windows: int
    batch_size: int | None


def _score_one(method: Method, sl: Slice) -> tuple[float, int, dict[str, Any]]:
    """Score one (pinned) slice: its heatmaps, seconds (device-synchronised) and window count."""
    torch.manual_seed(slice_seed(method.config.seed, sl.id))
    with stopwatch(method.device) as t:
        maps = _guarded(method, sl, "scoring", lambda: method.score_map(sl))
    return t[0], method.last_window_count, maps


def _finish_slice(method_name: str, out: _SliceOutputs, run_dir: Path, spec: RunSpec) -> None:
    """Metrics, heatmap file, overlay, detections and the slice record of one scored slice."""
    sl, maps = out.sl, out.maps
    image, breast = sl.load()
    labels = sl.label_mask
    metrics: dict[str, SliceMetrics] = {}
    for variant, heat in maps.items():
        if heat.shape != sl.shape:
            raise RunError(f"method {method_name!r}, slice {sl.id!r}: variant {variant!r} heatmap {heat.shape} "
                           f"!= slice {sl.shape}")
        try:
            metrics[variant] = SliceMetrics(**slice_metrics(heat, labels, breast, spec.breast_only, where=sl.id))
        except SingleClassError as err:
            console.print(f"[yellow]skipped in the means[/]: {err}")
            metrics[variant] = SliceMetrics(**{k: None for k in METRIC_KEYS}, note=str(err))
    save_npz(run_dir / "heatmaps" / f"{sl.id}.npz", **maps)
    if spec.overlays:
        render_overlay(run_dir / "overlays" / f"{sl.id}.png", image, next(iter(maps.values())), sl.boxes)
    detections = {variant: detect(heat, breast, spec.detection) for variant, heat in maps.items()}
    record = SliceRecord(id=sl.id, shape=sl.shape, boxes=[tuple(b) for b in sl.boxes], seconds=out.seconds,
                         windows=out.windows, batch_size=out.batch_size, metrics=metrics, detections=detections)
    write_json(run_dir / "slices" / f"{sl.id}.json", record.model_dump(mode="json"))


def _summarise(plan: RunPlan, method: Method) -> RunSummary:
    return summarise(plan.run_dir, plan.record, plan.data.dataset, plan.split, [sl.id for sl in plan.test],
                     method.precision, plan.spec.detection)
