"""Contextual attention (Yu et al. 2018), batched: the whole batch in a few bmm/fold calls, no per-sample loop.

The hole's features are rebuilt as softmax-weighted sums of background patches chosen by cosine similarity.
Semantics follow the PICARD / daa233 PyTorch code (not the TF original where they differ):
- patch norm sqrt(sum(w^2 + 1e-4)) (TF: max(||w||, 1e-4));
- the validity mask of background patches comes from the mask of **batch element 0** only and is applied to every
  sample. PICARD's test masks are identical across the batch; in training the per-sample hole shrink makes them
  differ slightly and, as in the official code, sample 0's mask decides for all.
The official flow (offset) visualisation is not computed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adbench_dbt.execution import fp32_numerics


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TF 'SAME' zero padding (the odd pixel goes bottom/right) for a square kernel at dilation 1."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def extract_patches(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """N x C x H x W -> N x L x (C*kernel*kernel) patches ('same' padding, raster order of patch centres).

    Built from strided views (Tensor.unfold), not F.unfold: the CPU im2col kernel is ~20-50x slower here.
    """
    n, c = x.shape[:2]
    views = same_pad(x, kernel, stride).unfold(2, kernel, stride).unfold(3, kernel, stride)  # N C oh ow k k
    return views.permute(0, 2, 3, 1, 4, 5).reshape(n, -1, c * kernel * kernel)


def fuse_scores(scores: torch.Tensor, bg_hw: tuple[int, int], fg_hw: tuple[int, int], fuse_k: int) -> torch.Tensor:
    """Add scores of diagonally neighbouring (background, foreground) pairs along both spatial axes.

    scores: N x L_bg x L_fg. Viewed as an L_bg x L_fg image, a k x k identity kernel sums (l+d, p+d) neighbours,
    which couples horizontally adjacent positions; swapping the row/column order of both grids and repeating
    couples vertically adjacent ones.
    """
    n = scores.shape[0]
    (hb, wb), (hf, wf) = bg_hw, fg_hw
    kernel = torch.eye(fuse_k, dtype=scores.dtype, device=scores.device)[None, None]
    pad = fuse_k // 2
    y = F.conv2d(scores.reshape(n, 1, hb * wb, hf * wf), kernel, padding=pad)
    y = y.reshape(n, hb, wb, hf, wf).permute(0, 2, 1, 4, 3).reshape(n, 1, wb * hb, wf * hf)
    y = F.conv2d(y, kernel, padding=pad)
    return y.reshape(n, wb, hb, wf, hf).permute(0, 2, 1, 4, 3).reshape(n, hb * wb, hf * wf)


class ContextualAttention(nn.Module):
    """Parameter-free; forward(f, b, mask) -> features of f's shape rebuilt from b's patches."""

    def __init__(self, ksize: int = 3, stride: int = 1, rate: int = 2, fuse_k: int = 3, softmax_scale: float = 10.0,
                 fuse: bool = True) -> None:
        super().__init__()
        self.ksize, self.stride, self.rate = ksize, stride, rate
        self.fuse_k, self.softmax_scale, self.fuse = fuse_k, softmax_scale, fuse

    @fp32_numerics
    def forward(self, f: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Patch similarities and their softmax run in fp32 under any autocast: in bf16 they move PICARD's demo
        heatmaps to a per-slice Spearman of 0.998 against fp32, in fp32 0.9989 (docs/precision-fidelity.md).

        f, b: N x C x H x W (foreground to fill, background to copy from); mask: N x 1 x 4H x 4W, 1 = hole."""
        n, c, height, width = f.shape
        raw_kernel = 2 * self.rate
        # full-resolution background patches used to paste the result: N x L x C x k x k
        raw = extract_patches(b, raw_kernel, self.rate * self.stride).reshape(n, -1, c, raw_kernel, raw_kernel)

        f_small = F.interpolate(f, scale_factor=1.0 / self.rate, mode="nearest")
        b_small = F.interpolate(b, scale_factor=1.0 / self.rate, mode="nearest")
        fg_hw, bg_hw = tuple(f_small.shape[-2:]), tuple(b_small.shape[-2:])
        filters = extract_patches(b_small, self.ksize, self.stride)  # N x L x C*k*k
        filters = filters / torch.sqrt((filters.pow(2) + 1e-4).sum(dim=2, keepdim=True))
        queries = extract_patches(f_small, self.ksize, 1)  # N x L_fg x C*k*k
        scores = torch.bmm(filters, queries.transpose(1, 2))  # N x L_bg x L_fg cosine similarities
        if self.fuse:
            scores = fuse_scores(scores, bg_hw, fg_hw, self.fuse_k)

        valid = self._valid_patches(mask, bg_hw, f).to(scores.dtype)  # L_bg, from batch element 0
        scores = scores * valid[None, :, None]
        attention = F.softmax(scores * self.softmax_scale, dim=1) * valid[None, :, None]

        # paste: transposed conv of the attention map with the raw patches == fold of patch-weighted columns
        columns = torch.bmm(raw.flatten(2).transpose(1, 2), attention)  # N x C*k*k x L_fg
        out = F.fold(columns, (height, width), raw_kernel, padding=1, stride=self.rate)  # official: padding 1, / 4
        return out / 4.0

    def _valid_patches(self, mask: torch.Tensor | None, bg_hw: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """L_bg bool: background patches whose ksize x ksize neighbourhood lies fully outside the hole."""
        if mask is None:
            return torch.ones(bg_hw[0] * bg_hw[1], dtype=torch.bool, device=like.device)
        small = F.interpolate(mask[:1].to(like.dtype), scale_factor=1.0 / (4 * self.rate), mode="nearest")
        if tuple(small.shape[-2:]) != bg_hw:
            raise ValueError(f"contextual attention: mask of shape {tuple(mask.shape[-2:])} does not match "
                             f"features of shape {tuple(like.shape[-2:])} (expected 4x the feature size)")
        return extract_patches(small, self.ksize, self.stride)[0].sum(dim=1) == 0
