"""Training a user can watch and resume, shared by every trainer (CutPaste, PatchSVDD, the inpainting GANs).

`TrainingProgress` is what a user sees: one rich bar on stderr (step, losses, steps/s, ETA) and one JSON line per
logged step in `<work_dir>/train-log.jsonl`. Checkpoints hold everything that decides the next step (weights,
optimiser, scheduler, step, every RNG stream the loop draws from, the log's running sums), so a killed fit started
again in the same work dir ends with the same weights as an uninterrupted one (bitwise on CPU). `run_steps` is the
plain one-loss, one-optimiser loop built from these pieces; the GAN trainer uses the pieces directly.

`TrainingMode` is how every trainer executes its steps (config fields `train_precision`, `train_channels_last`,
`train_compile`): autocast dtype, memory format, torch.compile, and fp16 loss scaling, in one place. The default
(fp32, contiguous, eager) runs exactly the plain PyTorch code, so fp32 fits stay bitwise resumable.
"""
from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

import numpy as np
import torch
from pydantic import Field
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text
from torch import nn

from adbench_dbt.config import MethodConfig, Precision
from adbench_dbt.errors import CheckpointError, ConfigError
from adbench_dbt.execution import autocast
from adbench_dbt.io import atomic_path, load_weights, write_text

LOG_FILE = "train-log.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
console = Console(stderr=True)  # progress and resume notices never mix with results printed on stdout


MODE_FIELDS = ("train_precision", "train_channels_last", "train_compile", "loader_workers", "device_crops",
               "device_crops_gb")


class TrainingConfig(MethodConfig):
    """Fields of every method that trains: checkpoint and log cadence, progress bar."""

    # settings a resumed fit may change without changing what it computes
    resume_free: ClassVar[frozenset[str]] = frozenset({"checkpoint_every", "log_every", "progress"})

    checkpoint_every: int = Field(1000, ge=1, description="steps between resumable checkpoints in the work dir "
                                                          "(one is also written at the end)")
    log_every: int = Field(20, ge=1, description="steps per line of train-log.jsonl (mean losses) and per loss "
                                                 "update of the progress bar")
    progress: bool = Field(True, description="rich progress bar on stderr during training")
    # execution mode (TrainingMode); part of a run's identity: bf16/fp16 and channels_last change the last bits
    train_precision: Precision = Field("fp32", description="autocast dtype of training steps: fp32 (none), bf16 "
                                       "(CPU and CUDA), fp16 (CUDA only, with loss scaling); losses, norms and "
                                       "optimiser updates stay fp32")
    train_channels_last: bool = Field(False, description="convolution weights and image batches in channels_last "
                                      "memory format while training (faster convolutions on GPUs)")
    train_compile: bool = Field(False, description="torch.compile the trained networks (opt-in; falls back to "
                                "eager with a notice where compiling is unavailable)")
    loader_workers: int = Field(0, ge=0, description="worker processes cutting training crops ahead of the "
                                "steps (0 = in the training process, one random stream; >0: each step's crops "
                                "from their own stream seeded by (seed, step), identical for any worker count)")
    device_crops: bool = Field(False, description="upload the training slices to the fit's device once and cut "
                               "every step's crops there (no host work per step; a GPU's own random stream)")
    device_crops_gb: float = Field(8.0, gt=0, description="device memory device_crops may use (an error beyond)")

    @classmethod
    def upgrade_settings(cls, saved: Mapping[str, Any]) -> dict[str, Any]:
        """Settings a checkpoint recorded, as this harness would write them: fields added since then take their
        defaults (which is what that fit ran with). Trainers with renamed fields extend this."""
        return {**{name: cls.model_fields[name].default for name in MODE_FIELDS}, **saved}


@contextmanager
def seeded_weights(seed: int) -> Iterator[None]:
    """Build networks inside this block: their initial weights are a function of the config's seed alone, whatever
    ran before in the process, and the caller's global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def seeded_generators(seed: int, device: torch.device) -> tuple[np.random.Generator, torch.Generator]:
    """Seed torch's global generator and return fresh numpy and torch generators: one seed drives a whole fit."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed), torch.Generator(device=device).manual_seed(seed)


# ---- execution mode ----------------------------------------------------------------------------------------
class TrainingMode:
    """How a fit executes its steps, from the config's `train_*` fields; every trainer builds one and calls it.

    - `autocast()` wraps forwards and losses: bf16/fp16 autocast on the fit's device (numerically sensitive ops
      run in fp32 under autocast; trainers also cast losses and norms to fp32 explicitly);
    - `step(loss, optimizer)` replaces `loss.backward(); optimizer.step()`: fp32 backward, and with fp16 a
      GradScaler (whose state goes into checkpoints through `state_dict`);
    - `applied(modules)` puts the networks in channels_last and compiles them for the fit, and undoes both after
      it (saved weights, scoring and the next fit see plain eager, contiguous networks);
    - `batch(x)` gives an image batch the networks' memory format.
    """

    def __init__(self, config: TrainingConfig, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.precision, self.channels_last, self.compile = (config.train_precision, config.train_channels_last,
                                                            config.train_compile)
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError(f"train_precision: fp16 training needs a CUDA device (loss scaling), this fit runs on "
                              f"{self.device}; use train_precision=bf16 or fp32")
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.compiled = False  # whether the networks really run compiled (False after a fallback)

    def describe(self) -> dict[str, Any]:
        """The mode as recorded in train-log.jsonl and benchmark rows."""
        return {"precision": self.precision, "channels_last": self.channels_last, "compile": self.compiled}

    def autocast(self) -> AbstractContextManager[Any]:
        return autocast(self.device, self.precision)

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
             clip: tuple[Iterable[torch.Tensor], float] | None = None) -> None:
        """Backward of `loss` (in fp32) and one update of `optimizer`; `clip` = (parameters, max grad norm)."""
        if self.scaler is None:
            loss.float().backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(*clip)
            optimizer.step()
            return
        self.scaler.scale(loss.float()).backward()
        if clip is not None:
            self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(*clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    def grad_scale(self) -> float:
        """Factor inner gradients (a gradient penalty) are scaled by before autograd.grad: 1 except with fp16."""
        return float(self.scaler.get_scale()) if self.scaler is not None else 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        if self.scaler is not None and state and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    @contextmanager
    def applied(self, modules: Iterable[nn.Module]) -> Iterator["TrainingMode"]:
        """Networks in this mode's memory format and compiled (in place: state-dict keys do not change) inside."""
        modules = list(modules)
        if self.channels_last:
            for module in modules:
                module.to(memory_format=torch.channels_last)
        self.compiled = self.compile and _compile_available(self.device)
        if self.compiled:
            for module in modules:
                module.compile()
        try:
            yield self
        finally:
            for module in modules:
                if self.compiled:
                    module._compiled_call_impl = None  # nn.Module.compile's handle: back to the eager forward
                if self.channels_last:
                    module.to(memory_format=torch.contiguous_format)


def _compile_available(device: torch.device) -> bool:
    """Whether torch.compile works here: a tiny function is compiled and run once; if that fails (no C++
    compiler, no Triton, an unsupported Python) the fit says so in one line and runs eagerly."""
    try:
        probe = torch.compile(lambda x: torch.relu(x) * 2 + 1, dynamic=False)
        probe(torch.ones(4, device=device))
        return True
    except Exception as err:  # noqa: BLE001 - any failure means "not here"; the notice names it
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        console.print(f"[yellow]notice:[/] train_compile: torch.compile is unavailable here ({reason[:200]}); "
                      "training runs eagerly", highlight=False, soft_wrap=True)
        return False


# ---- random streams ----------------------------------------------------------------------------------------
def rng_state(rng: np.random.Generator | None = None, gen: torch.Generator | None = None) -> dict[str, Any]:
    """Every stream a training step may draw from: torch's global CPU (and, once in use, CUDA) generators plus the
    loop's own numpy and torch generators. Without them a resumed fit draws other crops than an uninterrupted one."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if rng is not None:
        state["numpy"] = rng.bit_generator.state
    if gen is not None:
        state["generator"] = gen.get_state()
    return state


def set_rng_state(state: Mapping[str, Any], rng: np.random.Generator | None = None,
                  gen: torch.Generator | None = None) -> None:
    """Put the streams back where `rng_state` found them (tensors must be on the CPU, as `load_weights` gives)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if rng is not None:
        rng.bit_generator.state = state["numpy"]
    if gen is not None:
        gen.set_state(state["generator"])


def resume_settings(config: TrainingConfig) -> dict[str, Any]:
    """The settings a checkpoint records: all but those a resumed fit may change."""
    return config.model_dump(mode="json", exclude=set(config.resume_free))


def check_resumable(saved: Mapping[str, Any] | None, config: TrainingConfig, path: Path) -> None:
    """Refuse to continue a checkpoint written under other settings: the result would be neither run."""
    if saved is None:  # written before checkpoints recorded their settings
        return
    saved, current = type(config).upgrade_settings(saved), resume_settings(config)
    changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    if changed:
        diff = ", ".join(f"{k} {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise CheckpointError(f"{path}: written by a fit with other settings ({diff}); delete it (or use another "
                              "work dir) to train afresh")


# ---- step clock (benchmarks) ----------------------------------------------------------------------------------
@dataclass
class StepWatch:
    """What `watch_steps` records: the device-synchronised finish time of every training step, the crops drawn
    (`CropStream.take` reports them), and the mode the steps ran in. `stop_after` ends the fit by raising
    `EnoughSteps` once that many steps are done (a benchmark needs no more)."""

    stop_after: int | None = None
    times: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)  # crops drawn before each step finished, cumulative
    mode: dict[str, Any] = field(default_factory=dict)
    _drawn: int = 0


class EnoughSteps(Exception):
    """Raised from inside a fit by a `StepWatch` with `stop_after`: the benchmark has its steps."""


_WATCHES: list[StepWatch] = []


@contextmanager
def watch_steps(stop_after: int | None = None) -> Iterator[StepWatch]:
    """Record every training step finished inside the block (any trainer: they all report to TrainingProgress)."""
    watch = StepWatch(stop_after)
    _WATCHES.append(watch)
    try:
        yield watch
    except EnoughSteps:
        pass
    finally:
        _WATCHES.remove(watch)


def note_samples(count: int) -> None:
    """Crops drawn for a step (called by the crop stream), counted by active step watches."""
    for watch in _WATCHES:
        watch._drawn += count


def _step_done(mode: TrainingMode | None) -> None:
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    now = time.perf_counter()
    for watch in _WATCHES:
        watch.times.append(now)
        watch.samples.append(watch._drawn)
        watch.mode = mode.describe() if mode is not None else {}
        if watch.stop_after is not None and len(watch.times) >= watch.stop_after:
            raise EnoughSteps


# ---- what the user watches ---------------------------------------------------------------------------------
class _SpeedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.2f} steps/s" if task.speed else "-- steps/s", style="progress.data.speed")


def announce_resume(name: str, step: int, total: int, path: Path, active: bool = True,
                    out: Console | None = None) -> None:
    """The one line a resumed fit prints, so a user knows the work before `step` is not redone."""
    if active:
        (out or console).print(f"[bold]fit[/] {name}: resuming from step {step}/{total} ({path})", highlight=False)


class TrainingProgress:
    """Progress bar on stderr and `<work_dir>/train-log.jsonl` (none without a work dir) of one fit.

    `update` takes one step's losses (tensors stay on the device: no host sync except at logging steps). Every
    `log_every` steps and at the last step, the mean of each loss since the previous line is shown and logged as
    {"step", "seconds", "losses", "mode"}; `seconds` counts training time over all resumed pieces, `mode` is the
    `TrainingMode` the steps ran in (precision, channels_last, compile). Lines are appended one write each; a
    restart first drops lines past its checkpoint (and a torn last line), atomically.
    """

    def __init__(self, name: str, total: int, config: TrainingConfig, work_dir: str | Path | None,
                 state: Mapping[str, Any] | None = None, active: bool = True, out: Console | None = None,
                 mode: TrainingMode | None = None) -> None:
        state = state or {}
        self.mode = mode
        self.name, self.total, self.every = name, total, config.log_every
        self.step = int(state.get("step", 0))
        self._seconds_before = float(state.get("seconds", 0.0))
        self._sums: dict[str, torch.Tensor | float] = dict(state.get("sums", {}))
        self._counts: dict[str, int] = dict(state.get("counts", {}))
        self.log_path = Path(work_dir) / LOG_FILE if work_dir is not None and active else None
        if self.log_path is not None and self.log_path.exists():
            _truncate_log(self.log_path, self.step)
        columns = (TextColumn("[bold]fit[/] {task.description}"), BarColumn(), MofNCompleteColumn(), _SpeedColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[losses]}"))
        self._progress = Progress(*columns, console=out or console, disable=not (config.progress and active))
        self._task = self._progress.add_task(name, total=total, completed=self.step, losses="")
        self._file = None
        self._started = 0.0

    def __enter__(self) -> "TrainingProgress":
        self._started = time.perf_counter()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.log_path, "a", encoding="utf-8")
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def seconds(self) -> float:
        """Training seconds so far, including those of the runs this one resumed."""
        return self._seconds_before + (time.perf_counter() - self._started if self._started else 0.0)

    def update(self, losses: Mapping[str, torch.Tensor | float]) -> None:
        """Count one finished step with its losses; show and log the means at logging steps."""
        self.step += 1
        if _WATCHES:
            _step_done(self.mode)
        for key, value in losses.items():
            value = value.detach() if isinstance(value, torch.Tensor) else float(value)
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1
        self._progress.advance(self._task)
        if self.step % self.every and self.step != self.total:
            return
        means = {k: float(v) / self._counts[k] for k, v in self._sums.items()}
        self._sums, self._counts = {}, {}
        self._progress.update(self._task, losses="  ".join(f"{k} {v:.4g}" for k, v in means.items()))
        if self._file is not None:
            line = {"step": self.step, "seconds": round(self.seconds, 3), "losses": means}
            if self.mode is not None:
                line["mode"] = self.mode.describe()
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue the log exactly (running sums of the unfinished log interval)."""
        return {"step": self.step, "seconds": self.seconds, "sums": {k: float(v) for k, v in self._sums.items()},
                "counts": dict(self._counts)}


def _truncate_log(path: Path, step: int) -> None:
    """Keep the complete lines up to `step`: the killed run logged steps that the resumed one redoes."""
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):  # a line torn by the kill
            continue
    write_text(path, "".join(kept))


# ---- the plain loop ----------------------------------------------------------------------------------------
def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """torch.save through a temporary file: a kill mid-write leaves the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save(dict(payload), tmp)


@dataclass
class LoopState:
    """Everything that decides the next step of a one-optimiser loop; saved whole and restored whole."""

    modules: Mapping[str, nn.Module]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    rng: np.random.Generator | None = None
    gen: torch.Generator | None = None
    mode: TrainingMode | None = None

    def save(self, path: Path, step: int, total: int, losses: list[float], progress: TrainingProgress,
             config: TrainingConfig) -> None:
        save_checkpoint(path, {
            "step": step, "total": total, "config": resume_settings(config),
            "modules": {name: module.state_dict() for name, module in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": rng_state(self.rng, self.gen), "losses": torch.tensor(losses, dtype=torch.float64),
            "progress": progress.state_dict(), "mode": self.mode.state_dict() if self.mode is not None else {}})

    def load(self, path: Path, total: int, config: TrainingConfig) -> tuple[int, list[float], dict[str, Any]]:
        """Restore from `path`; returns (step, per-step losses so far, progress state)."""
        state = load_weights(path, map_location="cpu")  # RNG states must stay on the CPU
        expected = {"step", "total", "config", "modules", "optimizer", "scheduler", "rng", "losses", "progress"}
        if not isinstance(state, dict) or not expected <= set(state):
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"{path}: not a training checkpoint of this project (keys {found})")
        check_resumable(state["config"], config, path)
        if int(state["total"]) != total:
            raise CheckpointError(f"{path}: written by a fit of {int(state['total'])} steps, this one has {total} "
                                  "(other training data?); delete it (or use another work dir) to train afresh")
        if set(state["modules"]) != set(self.modules):
            raise CheckpointError(f"{path}: holds modules {sorted(state['modules'])}, expected {sorted(self.modules)}")
        for name, module in self.modules.items():
            try:
                module.load_state_dict(state["modules"][name])
            except RuntimeError as err:
                raise CheckpointError(f"{path}: {name} does not match the network: {err}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"], self.rng, self.gen)
        if self.mode is not None:
            self.mode.load_state_dict(state.get("mode"))
        return int(state["step"]), state["losses"].tolist(), state["progress"]


def run_steps(loss_fn: Callable[[int], torch.Tensor], optimizer: torch.optim.Optimizer, steps: int, name: str, *,
              config: TrainingConfig, work_dir: str | Path | None, modules: Mapping[str, nn.Module],
              rng: np.random.Generator | None = None, gen: torch.Generator | None = None,
              scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
              mode: TrainingMode | None = None) -> list[float]:
    """`steps` optimiser updates of `loss_fn(step)`; returns the loss of every step (resumed ones included).

    With a `work_dir`, `<work_dir>/checkpoint.pt` (modules, optimizer, scheduler, step, the RNG streams `rng`,
    `gen` and torch's global ones) is written every `config.checkpoint_every` steps and at the end, and a fit that
    finds one continues from it. `loss_fn` must draw its randomness only from those streams. `loss_fn` runs under
    `mode`'s autocast and the update is `mode.step` (default: the config's mode on the modules' device); the
    caller applies `mode.applied(...)` to its networks and `mode.batch` to its image batches.
    """
    if mode is None:
        device = next((p.device for m in modules.values() for p in m.parameters()), torch.device("cpu"))
        mode = TrainingMode(config, device)
    state = LoopState(modules, optimizer, scheduler, rng, gen, mode)
    path = Path(work_dir) / CHECKPOINT_FILE if work_dir is not None else None
    start, done, progress_state = 0, [], None
    if path is not None and path.exists():
        start, done, progress_state = state.load(path, steps, config)
        announce_resume(name, start, steps, path)
    recent: list[torch.Tensor] = []  # on the device until a checkpoint or the end (no host sync per step)
    with TrainingProgress(name, steps, config, work_dir, progress_state, mode=mode) as progress:
        for step in range(start, steps):
            with mode.autocast():
                loss = loss_fn(step).float()
            optimizer.zero_grad(set_to_none=True)
            mode.step(loss, optimizer)
            if scheduler is not None:
                scheduler.step()
            recent.append(loss.detach())
            progress.update({"loss": recent[-1]})
            if path is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == steps):
                done, recent = done + torch.stack(recent).tolist(), []
                state.save(path, step + 1, steps, done, progress, config)
    return done + (torch.stack(recent).tolist() if recent else [])
