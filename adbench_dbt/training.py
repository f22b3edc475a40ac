"""The plain optimisation loop shared by self-supervised window methods (CutPaste, PatchSVDD)."""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

log = logging.getLogger(__name__)


def seeded_generators(seed: int, device: torch.device) -> tuple[np.random.Generator, torch.Generator]:
    """Seed torch's global generator and return fresh numpy and torch generators: one seed drives a whole fit."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed), torch.Generator(device=device).manual_seed(seed)


def run_steps(loss_fn: Callable[[int], torch.Tensor], optimizer: torch.optim.Optimizer, steps: int, name: str,
              scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, log_every: int = 100) -> list[float]:
    """`steps` optimiser updates of `loss_fn(step)`; returns the loss per step.

    Losses stay on the device until the end (no host sync per step), except at logging steps.
    """
    losses: list[torch.Tensor] = []
    for step in range(steps):
        loss = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.detach())
        if step % log_every == 0 or step == steps - 1:
            log.info("%s step %d/%d loss %.4f", name, step + 1, steps, float(losses[-1]))
    return torch.stack(losses).tolist() if losses else []
