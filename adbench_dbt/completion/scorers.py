"""Scores over completions, written once for every backbone: PICARD's MCD (and its ablations) and DMSE's MSE x
discriminator. A scorer sees only a `Completions` (and, for feature space or DMSE, a critic): the same completions
give the same scores whichever backbone made them.

Completion distances: how far the true hole content lies from M completions (PICARD's MCD and its ablations).

MCD(x) = min_k ||E(c) - E(c_k)||_2 with E = identity (image space) or the local critic's conv features
(feature space); the mean and (lower) median over k are the ablations of PICARD Table 3. Distances are Frobenius
norms, not averaged over pixels, as in the official code.
"""
from __future__ import annotations

from typing import Callable

import torch

from adbench_dbt.completion.backbone import Completions
from adbench_dbt.execution import fp32_numerics

Encoder = Callable[[torch.Tensor], torch.Tensor]
# full truth windows, full completed windows (both K x 1 x P x P) -> K critic disagreements
Discriminator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
STATISTICS = ("mcd", "mean", "median")


@fp32_numerics
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


def mcd_scores(completions: Completions, encoder: Encoder | None = None) -> dict[str, torch.Tensor]:
    """PICARD's six scores (Tables 2-3) over the hole of any backbone's completions; image space only without an
    encoder (e.g. HFPIC without a PICARD critic)."""
    return completion_scores(completions.truth_hole(), completions.samples_hole(), encoder)


@fp32_numerics
def hole_mse(completions: Completions) -> torch.Tensor:
    """N x M mean squared error inside the hole (Telea's score; DMSE's `mse` with M = 1)."""
    n, m = completions.samples.shape[:2]
    diff = completions.samples_hole() - completions.truth_hole().repeat_interleave(m, dim=0)
    return diff.pow(2).flatten(1).mean(dim=1).reshape(n, m)


def dmse_scores(completions: Completions, discriminator: Discriminator) -> dict[str, torch.Tensor]:
    """Swiecicki et al.'s scores of a deterministic completion (M = 1): `mse` in the hole, `discr` from the critics,
    and their product `dmse`."""
    if completions.count != 1:
        raise ValueError(f"DMSE scores one deterministic completion per window, got {completions.count}")
    mse = hole_mse(completions)[:, 0]
    discr = discriminator(completions.truth, completions.samples[:, 0]).float()
    return {"mse": mse, "discr": discr, "dmse": mse * discr}
