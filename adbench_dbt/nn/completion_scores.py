"""Completion distances: how far the true hole content lies from M completions (PICARD's MCD and its ablations).

MCD(x) = min_k ||E(c) - E(c_k)||_2 with E = identity (image space) or the local critic's conv features
(feature space); the mean and (lower) median over k are the ablations of PICARD Table 3. Distances are Frobenius
norms, not averaged over pixels, as in the official code.
"""
from __future__ import annotations

from typing import Callable

import torch

Encoder = Callable[[torch.Tensor], torch.Tensor]
STATISTICS = ("mcd", "mean", "median")


def completion_distances(truth: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
    """truth N x ..., completions (N*M) x ... ordered sample-major (x1..x1 x2..x2) -> N x M L2 distances."""
    n = truth.shape[0]
    if completions.shape[0] % n or completions.shape[1:] != truth.shape[1:]:
        raise ValueError(f"completions {tuple(completions.shape)} do not match truth {tuple(truth.shape)}")
    diff = completions.reshape(n, completions.shape[0] // n, -1) - truth.reshape(n, 1, -1)
    return torch.linalg.vector_norm(diff.float(), dim=2)


def reduce_distances(distances: torch.Tensor) -> dict[str, torch.Tensor]:
    """N x M -> {'mcd': min, 'mean': mean, 'median': lower median (torch.median) for even M}."""
    return {"mcd": distances.min(dim=1).values,
            "mean": distances.mean(dim=1),
            "median": distances.median(dim=1).values}


def completion_scores(truth: torch.Tensor, completions: torch.Tensor,
                      encoder: Encoder | None = None) -> dict[str, torch.Tensor]:
    """{'<stat>_image', and with an encoder '<stat>_feature'} for stat in mcd/mean/median, N scores each.

    The encoder sees the N ground-truth crops once (not M times, unlike the official code) and the N*M
    completions in one batch.
    """
    spaces = {"image": completion_distances(truth, completions)}
    if encoder is not None:
        spaces["feature"] = completion_distances(encoder(truth), encoder(completions))
    return {f"{stat}_{space}": value
            for space, distances in spaces.items()
            for stat, value in reduce_distances(distances).items()}
