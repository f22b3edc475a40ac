"""Batched contextual attention == a literal per-sample implementation of the official algorithm."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adbench_dbt.completion.contextual_attention import ContextualAttention, same_pad


def _patches(x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """1 x C x H x W -> L x C x k x k (TF 'same' padding, raster order)."""
    c = x.shape[1]
    cols = F.unfold(same_pad(x, k, stride), k, stride=stride)  # 1 x C*k*k x L
    return cols[0].T.reshape(-1, c, k, k)


def reference_attention(f, b, mask, ksize=3, rate=2, fuse_k=3, scale=10.0):
    """Serial over the batch, with conv2d / conv_transpose2d as in the official code."""
    n, c, height, width = f.shape
    f_small = F.interpolate(f, scale_factor=1 / rate, mode="nearest")
    b_small = F.interpolate(b, scale_factor=1 / rate, mode="nearest")
    hf, wf = f_small.shape[-2:]
    hb, wb = b_small.shape[-2:]
    m = F.interpolate(mask, scale_factor=1 / (4 * rate), mode="nearest")
    valid = (_patches(m[:1], ksize, 1).mean(dim=(1, 2, 3)) == 0).float().view(1, -1, 1, 1)  # element 0 only
    eye = torch.eye(fuse_k).view(1, 1, fuse_k, fuse_k)
    outputs = []
    for i in range(n):
        w = _patches(b_small[i:i + 1], ksize, 1)
        w = w / torch.sqrt((w ** 2 + 1e-4).sum(dim=(1, 2, 3), keepdim=True))
        y = F.conv2d(same_pad(f_small[i:i + 1], ksize, 1), w)  # 1 x L x hf x wf
        y = y.view(1, 1, hb * wb, hf * wf)
        y = F.conv2d(same_pad(y, fuse_k, 1), eye)
        y = y.view(1, hb, wb, hf, wf).permute(0, 2, 1, 4, 3).reshape(1, 1, hb * wb, hf * wf)
        y = F.conv2d(same_pad(y, fuse_k, 1), eye)
        y = y.view(1, wb, hb, wf, hf).permute(0, 2, 1, 4, 3).reshape(1, hb * wb, hf, wf)
        y = F.softmax(y * valid * scale, dim=1) * valid
        raw = _patches(b[i:i + 1], 2 * rate, rate)
        outputs.append(F.conv_transpose2d(y, raw, stride=rate, padding=1) / 4.0)
    return torch.cat(outputs)


def _inputs(n, c, size, seed, same=True):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, c, size, size, generator=g)
    b = f if same else torch.randn(n, c, size, size, generator=g)
    mask = torch.zeros(n, 1, 4 * size, 4 * size)
    mask[..., size: 3 * size, size: 3 * size] = 1
    return f, b, mask


@pytest.mark.parametrize("n,c,size,same", [(3, 8, 16, True), (2, 5, 8, False), (4, 16, 32, True)])
def test_batched_equals_per_sample_reference(n, c, size, same):
    f, b, mask = _inputs(n, c, size, seed=size, same=same)
    expected = reference_attention(f, b, mask)
    got = ContextualAttention()(f, b, mask)
    assert got.shape == f.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_only_mask_of_first_sample_decides_validity():
    f, b, mask = _inputs(2, 4, 16, seed=1)
    other = mask.clone()
    other[1] = 0  # sample 1 has no hole; official semantics: sample 0's mask still applies to it
    layer = ContextualAttention()
    torch.testing.assert_close(layer(f, b, other), layer(f, b, mask))
    other[0] = 0
    assert not torch.allclose(layer(f, b, other), layer(f, b, mask))


def test_hole_features_come_only_from_valid_background():
    f, b, mask = _inputs(1, 4, 16, seed=2)
    out = ContextualAttention()(f, b, mask)
    b_changed = b.clone()
    b_changed[..., 6:10, 6:10] += 100.0  # deep inside the hole: covered by no valid source patch
    out_changed = ContextualAttention()(f, b_changed, mask)
    assert out.abs().max() < 10
    assert out_changed.abs().max() < 10  # the +100 features are never pasted


def test_mismatched_mask_is_an_error():
    f, b, _ = _inputs(1, 4, 16, seed=3)
    with pytest.raises(ValueError, match="mask"):
        ContextualAttention()(f, b, torch.zeros(1, 1, 32, 32))
