"""The DeepFill-v1 inpainter as a completion backbone (PICARD with inference dropout, DMSE without).

fit = WGAN-GP training of generator + local/global critics (`trainer.py`); state = the three networks plus the
training-L1 history. Weights load from the project's own `Method.save` directories and from official
`gen_*.pt` / `dis_*.pt` checkpoint directories alike (`load_foreign`).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Sequence

import torch
from pydantic import Field, model_validator

from adbench_dbt.completion.backbone import CompletionBackbone, Completions
from adbench_dbt.completion.critics import GlobalCritic, LocalCritic
from adbench_dbt.completion.deepfill import InpaintGenerator
from adbench_dbt.completion.official_checkpoints import find_checkpoint, load_official
from adbench_dbt.completion.trainer import InpaintingTrainer, InpaintingTrainingConfig, flush_denormals
from adbench_dbt.config import WindowConfig
from adbench_dbt.data.slices import Slice
from adbench_dbt.training import seeded_weights

NETWORKS = ("generator", "local_critic", "global_critic")


class InpaintingConfig(WindowConfig, InpaintingTrainingConfig):
    """Window + training settings of a DeepFill inpainter, plus the network widths."""

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


class DeepFillBackbone(CompletionBackbone):
    """M completions per window as one N*M generator batch; they differ only through the inference dropout."""

    value_range = (-1.0, 1.0)

    def __init__(self, config: InpaintingConfig, completions: int = 1, device: torch.device | str = "cpu",
                 dropout: tuple[float, bool] = (0.0, False), global_extra_conv: bool = False) -> None:
        super().__init__(config.window, config.hole, completions, device)
        self.config = config
        with seeded_weights(config.seed):
            self.generator = InpaintGenerator(1, config.cnum)
            self.local_critic = LocalCritic(1, config.critic_cnum, config.hole)
            self.global_critic = GlobalCritic(1, config.critic_cnum, config.window, extra_downsample=global_extra_conv)
        for net in self.networks().values():
            net.to(self.device).eval()
        self.generator.set_dropout(*dropout)
        self.training_l1 = torch.zeros(0, 2)  # (iteration, mean hole L1) per checkpoint interval

    def networks(self) -> dict[str, torch.nn.Module]:
        return {name: getattr(self, name) for name in NETWORKS}

    def masked_input(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[0,1] windows -> (ground truth in [-1,1], input with the centred hole zeroed)."""
        truth = windows * 2 - 1
        return truth, truth * (1 - self.hole_mask)

    def complete(self, windows: torch.Tensor) -> Completions:
        truth, masked = self.masked_input(windows)
        masked = masked.repeat_interleave(self.completions, dim=0)
        with self.completion_keys():  # each completion of a window its own dropout masks, whatever the batch
            _, fine = self.generator(masked, self.hole_mask)
        done = fine * self.hole_mask + masked  # inside the hole this is the fine output itself
        return Completions(truth, done.unflatten(0, (truth.shape[0], self.completions)), self.box)

    def scoring_context(self) -> AbstractContextManager[None]:
        return flush_denormals()

    def fit(self, train: Sequence[Slice], work_dir: Path | None, name: str) -> None:
        """Train on normal slices (the paper selects by training-set L1, so no validation set); with a work dir,
        checkpoints and train-log.jsonl go there and a fit killed earlier continues from its last checkpoint."""
        nets = self.networks().values()
        for net in nets:
            net.train()
        trainer = InpaintingTrainer(self.generator, self.local_critic, self.global_critic, self.config,
                                    self.config.window, self.device)
        history = trainer.train(train, work_dir, name=name)
        self.training_l1 = torch.tensor([[h["iteration"], h["hole_l1"]] for h in history]).reshape(-1, 2)
        for net in nets:
            net.eval()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "training_l1": self.training_l1.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {*NETWORKS, "training_l1"}
        if set(state) != expected:
            raise ValueError(f"state keys {sorted(state)}, expected {sorted(expected)}")
        super().load_state_dict({k: state[k] for k in NETWORKS})
        self.training_l1 = state["training_l1"].detach().cpu().reshape(-1, 2)

    def load_foreign(self, directory: Path) -> None:
        """Official gen_*.pt / dis_*.pt files; `config.checkpoint_iter` picks the iteration (default latest). The
        config must describe the checkpoint's networks: window/hole/cnum (PICARD: 256 / 128 / 32)."""
        load_official(directory, self.generator, self.local_critic, self.global_critic,
                      self.config.checkpoint_iter, map_location=self.device)

    @classmethod
    def foreign_files(cls, path: Path, config: InpaintingConfig) -> list[Path] | None:
        """Only the gen/dis pair that is loaded: an official directory holds many iterations."""
        if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
            return list(find_checkpoint(path, config.checkpoint_iter))
        return None
