"""A completion detector = one backbone + scorers over its completions; the shared engine does the windowing.

A method folder (`methods/picard`, `methods/dmse`, `methods/telea`, `methods/hfpic`) subclasses `CompletionMethod`,
names its `Backbone`, builds it in `build_backbone` and maps completions to scores in `score_completions` with
the scorers of `scorers.py`. fit/save/load/restore all go through the backbone.
"""
from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from adbench_dbt.completion.backbone import CompletionBackbone, Completions
from adbench_dbt.config import MethodConfig, WindowConfig
from adbench_dbt.data.slices import Slice
from adbench_dbt.method import Heatmaps, WindowMethod


class CompletionMethod(WindowMethod):
    """Scores windows by comparing their true hole content with a backbone's completions."""

    Backbone: ClassVar[type[CompletionBackbone]]
    supports_distributed_fit = False

    def __init__(self, config: WindowConfig | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device)
        self.backbone = self.build_backbone()

    @abstractmethod
    def build_backbone(self) -> CompletionBackbone:
        """The backbone this method's config describes, on self.device."""

    @abstractmethod
    def score_completions(self, completions: Completions) -> dict[str, torch.Tensor]:
        """{variant: N scores} from the backbone's completions (scorers of `adbench_dbt.completion.scorers`)."""

    def score_windows(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.score_completions(self.backbone.complete(windows))

    def networks(self) -> list[torch.nn.Module]:
        return list(self.backbone.networks().values())

    def score_map(self, sl: Slice) -> Heatmaps:
        with self.backbone.scoring_context():
            return super().score_map(sl)

    def fit(self, train: Sequence[Slice], val: Sequence[Slice] | None = None) -> None:
        """Fit the backbone on normal slices (with `work_dir`: resumable checkpoints and train-log.jsonl there)."""
        self.backbone.fit(train, self.work_dir, self.name)

    def prepare_untrained(self, train: Sequence[Slice]) -> None:
        self.backbone.prepare_untrained(train)

    def state_dict(self) -> dict[str, Any]:
        return self.backbone.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.backbone.load_state_dict(state)
        except ValueError as err:
            raise ValueError(f"{self.name}: {err}") from None

    @classmethod
    def from_checkpoint(cls, path: Path, config: MethodConfig,
                        device: str | torch.device = "cpu") -> "CompletionMethod":
        """A scorer from the backbone's foreign checkpoint format (e.g. official PICARD or ICT weights)."""
        load_foreign = getattr(cls.Backbone, "load_foreign", None)
        if load_foreign is None:
            return super().from_checkpoint(path, config, device)
        method = cls(config, device)
        method.backbone.load_foreign(Path(path))
        return method

    @classmethod
    def checkpoint_files(cls, path: Path, config: MethodConfig) -> list[Path]:
        foreign = getattr(cls.Backbone, "foreign_files", None)
        files = foreign(Path(path), config) if foreign is not None else None
        return files if files is not None else super().checkpoint_files(path, config)

