"""The chance floor. It checks the metrics end to end: any real method must beat it, and its AUROC must be ~0.5."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from adbench_dbt.data.slices import Slice
from adbench_dbt.method import Heatmaps, Method
from adbench_dbt.registry import register_method


@register_method
class RandomScores(Method):
    name = "random"
    paper = "chance floor (no paper)"
    variants = ("uniform",)

    def fit(self, train: Sequence[Slice], val: Sequence[Slice] | None = None) -> None:
        """Nothing to learn."""

    def score_map(self, sl: Slice) -> Heatmaps:
        # drawn from torch's global generator, which the runner seeds per slice: reruns give identical maps
        return {"uniform": torch.rand(sl.shape, dtype=torch.float32).numpy().astype(np.float32)}
