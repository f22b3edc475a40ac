"""Base of the inpainting-GAN detectors (PICARD, DMSE): fit = train the inpainter, state = generator + critics.

Subclasses differ only in how a window's centred hole is completed and scored (`score_windows`) and in the
dropout they use at inference. Models load from the project's own `Method.save` directories and from official
`gen_*.pt` / `dis_*.pt` checkpoint directories alike (`from_checkpoint`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from pydantic import Field, model_validator

from adbench_dbt.config import WindowConfig
from adbench_dbt.data.slices import Slice
from adbench_dbt.method import WindowMethod
from adbench_dbt.nn.critics import GlobalCritic, LocalCritic
from adbench_dbt.nn.deepfill import InpaintGenerator
from adbench_dbt.nn.inpainting_trainer import InpaintingTrainer, InpaintingTrainingConfig, flush_denormals
from adbench_dbt.nn.official_checkpoints import find_checkpoint, load_official
from adbench_dbt.training import seeded_weights

NETWORKS = ("generator", "local_critic", "global_critic")


class InpaintingConfig(WindowConfig, InpaintingTrainingConfig):
    """Window + training settings of an inpainting detector, plus the network widths."""

    cnum: int = Field(32, ge=2, description="generator width (official: 32)")
    critic_cnum: int = Field(32, ge=1, description="critic width (official PICARD: 32)")
    checkpoint_iter: int | None = Field(None, ge=0, description="official gen_*.pt iteration to load (default latest)")

    @model_validator(mode="after")
    def _check_geometry(self) -> "InpaintingConfig":
        if self.window % 8:
            raise ValueError(f"window ({self.window}) must be a multiple of 8 (generator strides + attention rate)")
        if self.hole >= self.window or (self.window - self.hole) % 2:
            raise ValueError(f"hole ({self.hole}) must be smaller than the window ({self.window}) and centrable "
                             "(window - hole even)")
        if 2 * self.hole_shrink >= self.hole:
            raise ValueError(f"hole_shrink ({self.hole_shrink}) leaves no training hole of side {self.hole}")
        if self.cnum % 2:
            raise ValueError(f"cnum ({self.cnum}) must be even")
        return self


class InpaintingMethod(WindowMethod):
    """Shared inpainter lifecycle; subclasses implement `score_windows` and `inference_dropout`."""

    Config = InpaintingConfig
    supports_distributed_fit = True  # the trainer wraps its nets in DDP under torchrun; rank 0 checkpoints

    def __init__(self, config: InpaintingConfig | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device)
        cfg = self.config
        with seeded_weights(cfg.seed):
            self.generator = InpaintGenerator(1, cfg.cnum)
            self.local_critic = LocalCritic(1, cfg.critic_cnum, cfg.hole)
            self.global_critic = self.build_global_critic()
        for net in self.networks():
            net.to(self.device).eval()
        self.generator.set_dropout(*self.inference_dropout())
        self.training_l1 = torch.zeros(0, 2)  # (iteration, mean hole L1) per checkpoint interval
        offset = (cfg.window - cfg.hole) // 2
        self.hole_box = (..., slice(offset, offset + cfg.hole), slice(offset, offset + cfg.hole))
        self.hole_mask = torch.zeros(1, 1, cfg.window, cfg.window, device=self.device)
        self.hole_mask[self.hole_box] = 1.0

    # ---- hooks for subclasses ----------------------------------------------------------------------------
    def build_global_critic(self) -> GlobalCritic:
        return GlobalCritic(1, self.config.critic_cnum, self.config.window)

    def inference_dropout(self) -> tuple[float, bool]:
        """(p, fine_stage) of the generator's dropout while scoring; none by default."""
        return 0.0, False

    # ---- shared helpers ------------------------------------------------------------------------------------
    def networks(self) -> tuple[torch.nn.Module, ...]:
        return tuple(getattr(self, name) for name in NETWORKS)

    def masked_input(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[0,1] windows -> (ground truth in [-1,1], input with the centred hole zeroed)."""
        truth = windows * 2 - 1
        return truth, truth * (1 - self.hole_mask)

    # ---- Method interface --------------------------------------------------------------------------------
    def score_map(self, sl: Slice) -> dict:
        with flush_denormals():
            return super().score_map(sl)

    def fit(self, train: Sequence[Slice], val: Sequence[Slice] | None = None) -> None:
        """Train the inpainter on normal slices (val is unused: the paper selects by training-set L1).

        With a `work_dir`, checkpoints and train-log.jsonl go there and a fit killed earlier continues from its
        last checkpoint."""
        for net in self.networks():
            net.train()
        trainer = InpaintingTrainer(self.generator, self.local_critic, self.global_critic, self.config,
                                    self.config.window, self.device)
        history = trainer.train(train, self.work_dir, name=self.name)
        self.training_l1 = torch.tensor([[h["iteration"], h["hole_l1"]] for h in history]).reshape(-1, 2)
        for net in self.networks():
            net.eval()

    def state_dict(self) -> dict[str, Any]:
        return {**{name: net.state_dict() for name, net in zip(NETWORKS, self.networks())},
                "training_l1": self.training_l1.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {*NETWORKS, "training_l1"}
        if set(state) != expected:
            raise ValueError(f"{self.name}: state keys {sorted(state)}, expected {sorted(expected)}")
        for name, net in zip(NETWORKS, self.networks()):
            try:
                net.load_state_dict(state[name], strict=True)
            except RuntimeError as err:
                raise ValueError(f"{self.name}: saved {name} does not match the config: {err}") from None
        self.training_l1 = state["training_l1"].detach().cpu().reshape(-1, 2)

    @classmethod
    def from_checkpoint(cls, directory: str | Path, config: InpaintingConfig,
                        device: str | torch.device = "cpu") -> "InpaintingMethod":
        """A scorer from official gen_*.pt / dis_*.pt files (project `save` directories go through `restore`).

        The config must describe the checkpoint's networks: window/hole/cnum (PICARD: 256 / 128 / 32);
        `config.checkpoint_iter` picks the iteration (default latest).
        """
        method = cls(config, device)
        load_official(directory, method.generator, method.local_critic, method.global_critic,
                      method.config.checkpoint_iter, map_location=method.device)
        return method

    @classmethod
    def checkpoint_files(cls, path: Path, config: InpaintingConfig) -> list[Path]:
        """Only the gen/dis pair that is loaded: an official directory holds many iterations."""
        if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
            return list(find_checkpoint(path, config.checkpoint_iter))
        return super().checkpoint_files(path, config)
