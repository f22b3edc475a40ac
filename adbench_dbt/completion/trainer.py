"""WGAN-GP training of the DeepFill-v1 inpainter with local + global critics (PICARD / Yu et al. 2018 losses).

Each iteration draws tissue-overlapping crops, one hole box for the whole batch (each sample's hole shrunk by its
own random margin), takes one critic step, and every `n_critic`-th iteration one generator step. Unlike the
official loop, the critic update never contains the generator's adversarial gradient (the official code
accumulates it into the critic on generator iterations); everything else follows methods/picard/README.md, "Details".
Checkpoints use the official file layout plus `optimizer.pt` (optimisers, iteration, every rank's RNG streams,
the log's running sums), so a run can be scored directly or resumed to the weights of an uninterrupted one.
Progress bar, train-log.jsonl, execution mode (train_precision / train_channels_last / train_compile) and the
crop stream (loader_workers) are the shared ones of `adbench_dbt.training` and `adbench_dbt.sampling`.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from adbench_dbt import distributed
from adbench_dbt.distributed import unwrap_ddp
from adbench_dbt.data.slices import Slice
from adbench_dbt.errors import CheckpointError
from adbench_dbt.io import load_weights
from adbench_dbt.completion.official_checkpoints import load_official, save_official
from adbench_dbt.sampling import CropStream
from adbench_dbt.training import (TrainingConfig, TrainingMode, TrainingProgress, announce_resume, check_resumable,
                                  resume_settings, rng_state, save_checkpoint, set_rng_state)

OPTIMIZER_FILE = "optimizer.pt"


class InpaintingTrainingConfig(TrainingConfig):
    """Training knobs of the inpainter (defaults = official PICARD config)."""

    # a resumed run may also train for longer, or read its checkpoints from a moved directory
    resume_free: ClassVar[frozenset[str]] = TrainingConfig.resume_free | {"iterations", "checkpoint_dir"}

    hole: int = Field(128, ge=8, description="hole side m (centred at inference; the training box size)")
    hole_shrink: int = Field(16, ge=0, description="training holes shrink by U{0..hole_shrink} px on each side")
    iterations: int = Field(130_000, ge=0, description="training iterations (critic steps)")
    train_batch_size: int = Field(55, ge=1)
    n_critic: int = Field(5, ge=1, description="one generator step every n_critic iterations")
    lr: float = Field(1e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.9, ge=0, lt=1)
    coarse_l1_alpha: float = Field(1.2, ge=0)
    l1_loss_alpha: float = Field(1.2, ge=0)
    ae_loss_alpha: float = Field(1.2, ge=0)
    gan_loss_alpha: float = Field(0.001, ge=0)
    global_wgan_loss_alpha: float = Field(1.0, ge=0)
    wgan_gp_lambda: float = Field(10.0, ge=0)
    discount_gamma: float = Field(0.9, gt=0, le=1, description="spatial discount of the hole L1")
    min_tissue_fraction: float = Field(0.05, ge=0, le=1, description="training crops need this much breast")
    checkpoint_dir: str | None = Field(None, description="write/resume training checkpoints here")
    checkpoint_every: int = Field(5000, ge=1, description="iterations between gen/dis/optimizer checkpoints and "
                                                          "between entries of the training-L1 history")

    @model_validator(mode="before")
    @classmethod
    def _replaced_amp(cls, values: Any) -> Any:
        """`amp` (CUDA-only bf16) became `train_precision`: `amp: false` is the default, `amp: true` is refused
        rather than guessed (bf16 now also applies on the CPU)."""
        if isinstance(values, dict) and "amp" in values:
            values = dict(values)
            if values.pop("amp"):
                raise ValueError("amp was replaced by train_precision: set train_precision=bf16 (CPU and CUDA) "
                                 "instead of amp=true")
        return values

    @classmethod
    def upgrade_settings(cls, saved: Mapping[str, Any]) -> dict[str, Any]:
        """Checkpoints written with `amp: false` resume as fp32 fits (what they were)."""
        saved = dict(saved)
        if saved.get("amp") is False:
            del saved["amp"]
        return super().upgrade_settings(saved)


def spatial_discount(size: int, gamma: float) -> torch.Tensor:
    """size x size weights gamma^(distance to the nearest box edge): near the known border counts most."""
    edge = torch.arange(size)
    edge = torch.minimum(edge, size - edge).double()
    axis = gamma ** edge
    return torch.maximum(axis[:, None], axis[None, :]).float()


def hole_masks(count: int, window: int, hole: int, top: int, left: int, shrink: int,
               rng: np.random.Generator) -> torch.Tensor:
    """count x 1 x window x window masks (1 = hole): the box (top, left, hole, hole) shrunk per sample."""
    delta = torch.from_numpy(rng.integers(0, shrink + 1, size=(count, 2)))
    pos = torch.arange(window)
    rows = (pos >= top + delta[:, :1]) & (pos < top + hole - delta[:, :1])
    cols = (pos >= left + delta[:, 1:]) & (pos < left + hole - delta[:, 1:])
    return (rows[:, :, None] & cols[:, None, :]).float()[:, None]


def gradient_penalty_scores(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                            grad_scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    """(D(real), D(fake), GP) from one critic forward on [real | fake | interpolates] (one forward keeps DDP happy).

    GP = mean((||grad_x D(x)||_2 - 1)^2) at x = u*real + (1-u)*fake, u ~ U(0, 1) per sample, unmasked. Under fp16
    loss scaling the inner gradient is taken of the scaled output (`grad_scale`) and unscaled, so it does not
    underflow in fp16 (PyTorch's AMP recipe for gradient penalties).
    """
    n = real.shape[0]
    u = torch.rand(n, 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (u * real + (1 - u) * fake).requires_grad_(True)
    out = critic(torch.cat([real, fake, mixed]))
    if grad_scale == 1.0:
        grad, = torch.autograd.grad(out[2 * n:].sum(), mixed, create_graph=True)
    else:
        grad, = torch.autograd.grad(out[2 * n:].float().sum() * grad_scale, mixed, create_graph=True)
        grad = grad / grad_scale
    penalty = (grad.flatten(1).float().norm(dim=1) - 1).pow(2).mean()
    return out[:n], out[n: 2 * n], penalty


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero inside the block (CPU only; a no-op elsewhere), then switch it off again.

    ELU gradients exp(x) of the black background and the scale-10 attention softmax produce subnormals; on x86
    CPUs each costs a slow microcode path (measured: 2-3x slower training steps on the phantom, ~4x slower
    contextual attention at 256 px).
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


class InpaintingTrainer:
    """Trains `generator` with `local_critic` (hole crop) and `global_critic` (window) on normal slices."""

    def __init__(self, generator: nn.Module, local_critic: nn.Module, global_critic: nn.Module,
                 config: InpaintingTrainingConfig, window: int, device: str | torch.device = "cpu") -> None:
        if config.hole > window:
            raise ValueError(f"hole ({config.hole}) is larger than the window ({window})")
        if 2 * config.hole_shrink >= config.hole:
            raise ValueError(f"hole_shrink ({config.hole_shrink}) leaves no hole of side {config.hole}")
        self.config, self.window, self.device = config, window, torch.device(device)
        self.mode = TrainingMode(config, self.device)
        self.crops: CropStream | None = None  # the stream of the running `train`
        # DistributedDataParallel when the runner (torchrun) has initialised a process group
        self.generator, self.local_critic, self.global_critic = (
            distributed.wrap_ddp(m.to(self.device)) for m in (generator, local_critic, global_critic))
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam([*local_critic.parameters(), *global_critic.parameters()],
                                      lr=config.lr, betas=betas)
        self.discount = spatial_discount(config.hole, config.discount_gamma).to(self.device)[None, None]
        self.iteration = 0
        self.history: list[dict[str, float]] = []  # training-set hole L1 per checkpoint interval (model selection)
        self.rank = distributed.rank()
        self.rng = np.random.default_rng([config.seed, self.rank, 0])  # crops, hole boxes and margins of this rank
        self.progress_state: dict[str, Any] = {}  # log position and running sums, restored by `resume`

    # ---- checkpoints -------------------------------------------------------------------------------------
    def save_checkpoint(self, directory: str | Path) -> None:
        """gen/dis in the official layout, then optimizer.pt (written last: it names the complete iteration).

        Every rank must call it: the RNG streams of all ranks are gathered (each rank draws its own crops)."""
        rngs = _from_all_ranks(rng_state(self.rng))
        if self.rank != 0:
            return
        directory = Path(directory)
        save_official(directory, self.iteration, unwrap_ddp(self.generator), unwrap_ddp(self.local_critic),
                      unwrap_ddp(self.global_critic))
        save_checkpoint(directory / OPTIMIZER_FILE, {
            "gen": self.opt_g.state_dict(), "dis": self.opt_d.state_dict(), "iteration": self.iteration,
            "history": self.history, "rng": rngs, "progress": self.progress_state,
            "config": resume_settings(self.config), "mode": self.mode.state_dict()})

    def resume(self, directory: str | Path) -> bool:
        """Continue from `directory`'s optimizer.pt and its iteration's gen/dis; False when there is none."""
        path = Path(directory) / OPTIMIZER_FILE
        if not path.exists():
            return False
        state = load_weights(path, map_location="cpu")  # RNG states must stay on the CPU
        missing = {"gen", "dis", "iteration", "history"} - set(state if isinstance(state, dict) else {})
        if missing:
            raise CheckpointError(f"{path}: not a training checkpoint of this project (missing {sorted(missing)})")
        check_resumable(state.get("config"), self.config, path)
        load_official(directory, unwrap_ddp(self.generator), unwrap_ddp(self.local_critic),
                      unwrap_ddp(self.global_critic),
                      iteration=int(state["iteration"]), map_location=self.device)
        self.opt_g.load_state_dict(state["gen"])
        self.opt_d.load_state_dict(state["dis"])
        self.iteration, self.history = int(state["iteration"]), list(state["history"])
        self.progress_state = dict(state.get("progress") or {"step": self.iteration})
        self.mode.load_state_dict(state.get("mode"))
        rngs = state.get("rng")
        if rngs is not None and len(rngs) == distributed.world_size():
            set_rng_state(rngs[self.rank], self.rng)
        else:  # an older checkpoint, or another number of ranks: fresh streams (a valid run, not a bitwise one)
            self.rng = np.random.default_rng([self.config.seed, self.rank, self.iteration])
        return True

    # ---- training --------------------------------------------------------------------------------------
    def train(self, slices: Sequence[Slice], checkpoint_dir: str | Path | None = None,
              name: str = "inpainter") -> list[dict[str, float]]:
        """Run until `config.iterations`, checkpointing to (and resuming from) `checkpoint_dir` or
        `config.checkpoint_dir` when one is given (train-log.jsonl goes there too); returns the L1 history."""
        cfg = self.config
        checkpoint_dir = checkpoint_dir or cfg.checkpoint_dir
        if checkpoint_dir is not None and self.resume(checkpoint_dir):
            announce_resume(name, self.iteration, cfg.iterations, Path(checkpoint_dir) / OPTIMIZER_FILE,
                            active=self.rank == 0)
        elif self.iteration == 0:
            torch.manual_seed(cfg.seed)  # the penalty's mixing weights: one seed drives a whole fit
        generator = unwrap_ddp(self.generator)
        nets = [generator, unwrap_ddp(self.local_critic), unwrap_ddp(self.global_critic)]
        l1_sum, l1_count = 0.0, 0
        self.crops = CropStream.for_config(cfg, slices, cfg.train_batch_size, self.window, self.device,
                                           key=(cfg.seed, self.rank, 0), min_tissue_fraction=cfg.min_tissue_fraction)
        with generator.dropout_off(), flush_denormals(), self.mode.applied(nets), self.crops, TrainingProgress(
                name, cfg.iterations, cfg, checkpoint_dir, self.progress_state or {"step": self.iteration},
                active=self.rank == 0, mode=self.mode) as progress:
            while self.iteration < cfg.iterations:
                losses = self.step(slices, self.rng)
                self.iteration += 1
                l1_sum, l1_count = l1_sum + losses["hole_l1"], l1_count + 1
                progress.update(losses)
                at_end = self.iteration == cfg.iterations
                if self.iteration % cfg.checkpoint_every == 0 or at_end:
                    self.history.append({"iteration": float(self.iteration), "hole_l1": l1_sum / l1_count})
                    l1_sum, l1_count = 0.0, 0
                    self.progress_state = progress.state_dict()
                    if checkpoint_dir is not None:
                        self.save_checkpoint(checkpoint_dir)
        self.crops = None
        return self.history

    def step(self, slices: Sequence[Slice], rng: np.random.Generator) -> dict[str, float]:
        """One critic step (+ one generator step every n_critic iterations); returns scalar losses."""
        cfg, size, hole, mode = self.config, self.window, self.config.hole, self.mode
        crops = self.crops or CropStream(slices, cfg.train_batch_size, size, self.device,
                                         min_tissue_fraction=cfg.min_tissue_fraction)
        images, _ = crops.take(self.iteration, rng)
        truth = mode.batch(images[:, None] * 2 - 1)
        top, left = (int(v) for v in rng.integers(0, max(size - hole, 1), size=2))
        mask = mode.batch(hole_masks(len(truth), size, hole, top, left, cfg.hole_shrink, rng).to(self.device))
        box = (..., slice(top, top + hole), slice(left, left + hole))
        generator_step = self.iteration % cfg.n_critic == 0

        with mode.autocast(), torch.set_grad_enabled(generator_step):
            x1, x2 = self.generator(truth * (1 - mask), mask)
        x1, x2 = x1.float(), x2.float()  # compositing and losses in fp32
        x1_done, x2_done = x1 * mask + truth * (1 - mask), x2 * mask + truth * (1 - mask)

        scale = mode.grad_scale()
        with mode.autocast():
            real_l, fake_l, gp_l = gradient_penalty_scores(self.local_critic, truth[box], x2_done[box].detach(), scale)
            real_g, fake_g, gp_g = gradient_penalty_scores(self.global_critic, truth, x2_done.detach(), scale)
        real_l, fake_l, real_g, fake_g = (t.float() for t in (real_l, fake_l, real_g, fake_g))
        wgan_d = (fake_l.mean() - real_l.mean()) + cfg.global_wgan_loss_alpha * (fake_g.mean() - real_g.mean())
        loss_d = wgan_d + cfg.wgan_gp_lambda * (gp_l + gp_g)
        self.opt_d.zero_grad(set_to_none=True)
        mode.step(loss_d, self.opt_d)
        hole_l1 = float(((x2.detach() - truth).abs() * mask).sum() / mask.sum())
        losses = {"wgan_d": float(wgan_d.detach()), "gp": float((gp_l + gp_g).detach()), "hole_l1": hole_l1}
        if generator_step:
            losses |= self._generator_step(truth, mask, box, x1, x2, x1_done, x2_done)
        return losses

    def _generator_step(self, truth: torch.Tensor, mask: torch.Tensor, box: tuple, x1: torch.Tensor,
                        x2: torch.Tensor, x1_done: torch.Tensor, x2_done: torch.Tensor) -> dict[str, float]:
        cfg, w = self.config, self.discount
        known = 1 - mask
        critics = (unwrap_ddp(self.local_critic), unwrap_ddp(self.global_critic))  # no critic gradients here
        for critic in critics:
            critic.requires_grad_(False)
        try:
            l1 = cfg.l1_loss_alpha * (cfg.coarse_l1_alpha * F.l1_loss(w * x1_done[box], w * truth[box])
                                      + F.l1_loss(w * x2_done[box], w * truth[box]))
            ae = cfg.ae_loss_alpha * (cfg.coarse_l1_alpha * F.l1_loss(x1 * known, truth * known)
                                      + F.l1_loss(x2 * known, truth * known))
            with self.mode.autocast():
                judged_l, judged_g = critics[0](x2_done[box]), critics[1](x2_done)
            adversarial = -judged_l.float().mean() - cfg.global_wgan_loss_alpha * judged_g.float().mean()
            loss_g = l1 + ae + cfg.gan_loss_alpha * adversarial
            self.opt_g.zero_grad(set_to_none=True)
            self.mode.step(loss_g, self.opt_g)
        finally:
            for critic in critics:
                critic.requires_grad_(True)
        return {"l1": float(l1.detach()), "ae": float(ae.detach()), "wgan_g": float(adversarial.detach())}


def _from_all_ranks(obj: Any) -> list[Any]:
    """`obj` of every rank in rank order (a collective under torchrun; every rank must call it)."""
    if not distributed.is_distributed():
        return [obj]
    gathered: list[Any] = [None] * distributed.world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered
