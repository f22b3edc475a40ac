"""How each anomalib model learns from normal windows, as anomalib's Lightning modules do it, without Lightning.

- `MemoryBank` (PatchCore): patch embeddings of `fit_windows` training windows, reduced by the greedy k-center
  coreset (`coreset.greedy_coreset`, anomalib's selection on the device).
- `Gaussians` (PaDiM): anomalib's per-position multivariate Gaussians over the embeddings of `fit_windows` windows.
- `Trained`: the model's own loss, optimiser and learning-rate drops through the shared resumable loop
  (`adbench_dbt.training.run_steps`: progress bar, train-log.jsonl, checkpoints in the run's work dir);
  `SimulatedAnomalies` (DRAEM) and `EfficientAd` add what those models need around the loop.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
from torch import nn

from adbench_dbt.data.slices import Slice
from adbench_dbt.training import run_steps

from .adapter import Recipe, import_object
from .coreset import coreset_size, greedy_coreset

if TYPE_CHECKING:
    from .adapter import AnomalibMethod


def feature_mode(model: nn.Module, frozen: Sequence[str]) -> None:
    """anomalib's training branch (model.training) with the frozen pretrained parts kept in eval mode (their
    BatchNorm statistics must not move)."""
    model.train()
    for path in frozen:
        model.get_submodule(path).eval()


class MemoryBank(Recipe):
    def fit(self, method: "AnomalibMethod", train: Sequence[Slice], rng: np.random.Generator,
            gen: torch.Generator) -> None:
        model, cfg = method.model, method.config
        feature_mode(model, method.spec.frozen)
        with torch.no_grad():
            for batch in method.window_batches(train, rng):
                model(batch)  # appends the batch's patch embeddings to model.embedding_store
        bank = torch.vstack(model.embedding_store)
        model.embedding_store.clear()
        keep = greedy_coreset(bank, coreset_size(len(bank), cfg.coreset_ratio), seed=cfg.seed,
                              presample=cfg.coreset_presample)
        model.memory_bank = bank[keep]

    def prepare_untrained(self, method: "AnomalibMethod", train: Sequence[Slice]) -> None:
        rng, gen = np.random.default_rng(method.config.seed), torch.Generator().manual_seed(method.config.seed)
        self.fit(method, train, rng, gen)


class Gaussians(Recipe):
    def fit(self, method: "AnomalibMethod", train: Sequence[Slice], rng: np.random.Generator,
            gen: torch.Generator) -> None:
        feature_mode(method.model, method.spec.frozen)
        with torch.no_grad():
            for batch in method.window_batches(train, rng):
                method.model(batch)  # appends the batch's embeddings to model.memory_bank
            method.model.fit()

    def prepare_untrained(self, method: "AnomalibMethod", train: Sequence[Slice]) -> None:
        self.fit(method, train, np.random.default_rng(method.config.seed), torch.Generator())


class Trained(Recipe):
    """`steps` updates of the row's loss over the training-mode outputs of the model (STFPM, and any model whose
    anomalib loss takes its forward's outputs), with the row's optimiser and learning-rate drops."""

    def fit(self, method: "AnomalibMethod", train: Sequence[Slice], rng: np.random.Generator,
            gen: torch.Generator) -> None:
        self.before(method, train, rng, gen)
        self.train_loop(method, train, rng, gen)
        self.after(method, train, rng)

    def before(self, method: "AnomalibMethod", train: Sequence[Slice], rng: np.random.Generator,
               gen: torch.Generator) -> None:
        """Work before the training loop (EfficientAD: the teacher and its channel statistics)."""

    def after(self, method: "AnomalibMethod", train: Sequence[Slice], rng: np.random.Generator) -> None:
        """Work after the training loop (EfficientAD: the map-normalising quantiles)."""

    def objective(self, method: "AnomalibMethod") -> Callable[[torch.Tensor, np.random.Generator], torch.Tensor]:
        """The loss of one batch of training inputs: the row's anomalib loss over the training-mode outputs."""
        loss = import_object(method.spec.loss)().to(method.device)
        return lambda batch, rng: loss(*method.model(batch))

    def optimizer(self, method: "AnomalibMethod") -> torch.optim.Optimizer:
        spec, cfg = method.spec, method.config
        modules = [method.model.get_submodule(p) for p in spec.trainable] or [method.model]
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        if spec.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def train_loop(self, method: "AnomalibMethod", train: Sequence[Slice], rng: np.random.Generator,
                   gen: torch.Generator) -> None:
        cfg = method.config
        optimizer = self.optimizer(method)
        milestones = sorted({max(1, int(f * cfg.steps)) for f in method.spec.lr_drops})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1) if milestones else None
        objective = self.objective(method)
        feature_mode(method.model, method.spec.frozen)

        def loss(_: int) -> torch.Tensor:
            return objective(method.training_windows(train, cfg.train_batch, rng), rng)

        run_steps(loss, optimizer, cfg.steps, method.name, config=cfg, work_dir=stage_dir(method, "train"),
                  modules={"model": method.model}, rng=rng, gen=gen, scheduler=scheduler)
        method.model.eval()

    def prepare_untrained(self, method: "AnomalibMethod", train: Sequence[Slice]) -> None:
        rng = np.random.default_rng(method.config.seed)
        gen = torch.Generator(device=method.device).manual_seed(method.config.seed)
        self.before(method, train, rng, gen)
        self.after(method, train, rng)


def stage_dir(method: "AnomalibMethod", stage: str) -> Path | None:
    """Each training stage keeps its own resumable checkpoint under the method's work dir."""
    return None if method.work_dir is None else Path(method.work_dir) / stage


class SimulatedAnomalies(Trained):
    """DRAEM: Perlin-noise anomalies pasted into normal windows (no external texture set: noise textures), then
    anomalib's reconstruction + SSIM + focal loss on the reconstructive and discriminative sub-networks."""

    def objective(self, method: "AnomalibMethod") -> Callable[[torch.Tensor, np.random.Generator], torch.Tensor]:
        from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator

        augmenter = PerlinAnomalyGenerator(anomaly_source_path=None, blend_factor=method.config.blend)
        loss = import_object(method.spec.loss)().to(method.device)

        def step(batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
            augmented, mask = augmenter(batch)
            reconstruction, prediction = method.model(augmented)
            return loss(batch, reconstruction, mask, prediction)

        return step
