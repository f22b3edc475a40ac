"""Filling the hole tokens of B token images at once: `raster` (ICT's reference) and `parallel` (MaskGIT-style).

Both take B x T tokens and a B x T hole mask and return new tokens; visible tokens are never changed. All B images
(windows x M completions) go through every forward together. Image b's draws are uniforms keyed by its `window_rng`
key (stream = the raster position or the parallel step), so they do not depend on the batch. The raster loop over
hole positions is inherent (one forward per hole token, as ICT's `sample_mask`), the parallel one runs T_steps
forwards in total.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch

from adbench_dbt import window_rng


class TokenModel(Protocol):
    def __call__(self, idx: torch.Tensor, holes: torch.Tensor) -> torch.Tensor: ...  # B x T x K logits

    def logits_at(self, idx: torch.Tensor, holes: torch.Tensor, position: int) -> torch.Tensor: ...  # B x K


def top_k_sample(logits: torch.Tensor, uniforms: torch.Tensor, k: int,
                 temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one index per row of ... x K logits among its k largest (softmax at `temperature`), by inverting the
    top-k distribution's CDF at `uniforms` (shape ..., in [0, 1)).

    Returns (indices, probability of each sampled index under the top-k distribution)."""
    values, indices = torch.topk(logits.float() / temperature, min(k, logits.shape[-1]), dim=-1)
    probs = torch.softmax(values, dim=-1)
    below = (probs.cumsum(dim=-1) <= uniforms[..., None]).sum(dim=-1, keepdim=True)
    choice = below.clamp(max=probs.shape[-1] - 1)  # a CDF that rounds to just under 1 never picks past the last
    return indices.gather(-1, choice)[..., 0], probs.gather(-1, choice)[..., 0]


def sample_raster(model: TokenModel, tokens: torch.Tensor, holes: torch.Tensor, top_k: int = 40,
                  temperature: float = 1.0) -> tuple[torch.Tensor, int]:
    """ICT's order: visit every position that is a hole in some image, in raster order; one full forward each,
    sample there by top-k, write it where it was a hole, and mark it visible. Returns (tokens, forwards)."""
    tokens, holes = tokens.clone(), holes.clone()
    keys = window_rng.keys_or_fresh(tokens.shape[0], tokens.device)
    positions = torch.nonzero(holes.any(dim=0)).flatten().tolist()
    for position in positions:
        sampled, _ = top_k_sample(model.logits_at(tokens, holes, position), window_rng.uniform(keys, position, ()),
                                  top_k, temperature)
        here = holes[:, position]
        tokens[:, position] = torch.where(here, sampled, tokens[:, position])
        holes[:, position] = False
    return tokens, len(positions)


def masked_after(step: int, steps: int, total: torch.Tensor) -> torch.Tensor:
    """MaskGIT's cosine schedule: holes still masked after `step` (0-based) of `steps`, per image (none after the
    last)."""
    remaining = torch.floor(total.double() * math.cos(math.pi / 2 * (step + 1) / steps)).long()
    return remaining.clamp(min=0) if step + 1 < steps else torch.zeros_like(total)


def sample_parallel(model: TokenModel, tokens: torch.Tensor, holes: torch.Tensor, steps: int = 8, top_k: int = 40,
                    temperature: float = 1.0) -> tuple[torch.Tensor, int]:
    """MaskGIT decoding: at each of `steps` forwards, sample every remaining hole (top-k), keep the most confident
    samples and leave the cosine schedule's number of least confident holes masked. Returns (tokens, forwards)."""
    tokens, holes = tokens.clone(), holes.clone()
    keys = window_rng.keys_or_fresh(tokens.shape[0], tokens.device)
    total = holes.sum(dim=1)
    for step in range(steps):
        left = holes.sum(dim=1)
        if not bool(left.any()):
            break
        sampled, confidence = top_k_sample(model(tokens, holes), window_rng.uniform(keys, step, (tokens.shape[1],)),
                                           top_k, temperature)
        # the schedule, but every step fills at least one hole and leaves at least one for each later step
        most = (left - 1).clamp(min=0)
        keep_masked = torch.minimum(torch.maximum(masked_after(step, steps, total),
                                                  torch.full_like(left, steps - step - 1)), most)
        # rank the holes by confidence (visible positions rank last); the keep_masked least confident stay holes
        score = torch.where(holes, confidence, torch.full_like(confidence, math.inf))
        rank = torch.argsort(torch.argsort(score, dim=1), dim=1)
        fill = holes & (rank >= keep_masked[:, None])
        tokens = torch.where(fill, sampled, tokens)
        holes = holes & ~fill
    return tokens, step + 1
