"""DeepFill-v1 two-stage inpainting generator (Yu et al. 2018) in the layout of the PICARD / daa233 PyTorch code.

Module and parameter names match the official `gen_*.pt` checkpoints exactly (84 tensors for cnum=32), so those
load with `strict=True`. Each `Conv2dBlock` that the official inference build gives a Dropout2d module has one here
too (`dropout`, no tensors); whether it is *live* is decided by `InpaintGenerator.set_dropout`, independently of
train/eval mode, because PICARD's pluralism is dropout switched on at inference only.

Speed (CPU, eager): activations and dropout work in place, ELU goes through the vectorised exp (`elu`), and no
layer copies its input. Convolutions, activations, dropout, upsampling and concatenation keep a channels_last layout,
so the generator put in channels_last (module and inputs, as the scoring modes do) convolves NHWC, oneDNN's native
layout (~15% faster on this CPU; the attention's output is NCHW and the next convolution takes it back).
`adbench bench --against-official-picard` times both layouts against the official code.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

from adbench_dbt import window_rng
from adbench_dbt.completion.contextual_attention import ContextualAttention

Activation = Literal["elu", "relu", "lrelu", "none"]

# Coarse layers whose dropout the released PICARD code switches on (`custom_drop_layers_coarse`).
RELEASED_LIVE_COARSE = ("conv2_downsample", "conv3", "conv4_downsample", "conv5", "conv6",
                        "conv7_atrous", "conv8_atrous", "conv9_atrous", "conv10_atrous")


def elu(x: torch.Tensor) -> torch.Tensor:
    """ELU(alpha=1) through the vectorised exp: PyTorch's ELU kernel calls expm1, which is scalar on AVX-512 builds
    (~6x slower than this; it was 25-40% of a generator forward). exp(x) - 1 differs from expm1 by <= 6e-8 absolute
    in fp32; bf16/fp16 inputs take the exponential in fp32. In place unless autograd needs the input."""
    exp_dtype = torch.promote_types(x.dtype, torch.float32)
    if torch.is_grad_enabled() and x.requires_grad:  # the same values; gradient 1 / exp(x) like ELU's (also at 0)
        positive = x > 0
        negative = torch.where(positive, torch.zeros((), dtype=x.dtype, device=x.device), x)
        return torch.where(positive, x, negative.to(exp_dtype).exp().sub(1).to(x.dtype))
    negative = x.clamp(max=0).to(exp_dtype).exp_().sub_(1).to(x.dtype)  # same dtype: a mixed add_ copies
    return x.clamp_(min=0).add_(negative)


class ELU(nn.ELU):
    """nn.ELU (alpha 1) computed by `elu`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return elu(x)


def _activation(name: Activation) -> nn.Module | None:
    if name == "elu":
        return ELU()
    if name == "relu":  # in place on the conv's fresh output, as in the official code
        return nn.ReLU(inplace=True)
    if name == "lrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if name == "none":
        return None
    raise ValueError(f"unknown activation {name!r}; expected elu, relu, lrelu or none")


class SpatialDropout(nn.Dropout2d):
    """Dropout2d (one channel mask per sample: a channel is zeroed with probability p, the others scaled by
    1 / (1 - p)) that applies only while `live`, whatever the module's mode.

    The masks are Dropout2d's in distribution, but drawn from `window_rng` (uniforms keyed per sample, `stream` =
    this layer's number) instead of torch's generator: a window's completions then do not depend on its batch."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        self.live = False
        self.stream = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.live or self.p == 0:
            return x
        keys = window_rng.keys_or_fresh(x.shape[0], x.device)
        keep = window_rng.uniform(keys, self.stream, (x.shape[1],)) >= self.p
        scale = keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x.mul_(scale[:, :, None, None])  # in place: no copy, the layout (channels_last too) kept

    def extra_repr(self) -> str:
        return f"p={self.p}, live={self.live}, stream={self.stream}"


class Conv2dBlock(nn.Module):
    """conv (zero padding inside the conv) -> activation -> optional spatial dropout; no normalisation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, activation: Activation = "elu", dropout: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation)
        self.activation = _activation(activation)
        self.dropout = SpatialDropout() if dropout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.activation is not None:
            x = self.activation(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return x


def _conv3(cin: int, cout: int, stride: int = 1, dilation: int = 1, activation: Activation = "elu",
           dropout: bool = True) -> Conv2dBlock:
    return Conv2dBlock(cin, cout, 3, stride, dilation, dilation, activation, dropout)


def _conv5(cin: int, cout: int, dropout: bool) -> Conv2dBlock:
    return Conv2dBlock(cin, cout, 5, 1, 2, 1, "elu", dropout)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _atrous_stack(module: nn.Module, channels: int) -> None:
    for index, rate in zip(range(7, 11), (2, 4, 8, 16)):
        setattr(module, f"conv{index}_atrous", _conv3(channels, channels, dilation=rate))


def _decoder(module: nn.Module, prefix: str, in_channels: int, cnum: int, output_dim: int, first: int) -> None:
    """The shared in -> 4c -> 4c -> up -> 2c -> 2c -> up -> c -> c/2 -> output tail of both stages."""
    names = [f"{prefix}{i}" for i in range(first, first + 7)]
    setattr(module, names[0], _conv3(in_channels, cnum * 4))
    setattr(module, names[1], _conv3(cnum * 4, cnum * 4))
    setattr(module, names[2], _conv3(cnum * 4, cnum * 2))
    setattr(module, names[3], _conv3(cnum * 2, cnum * 2))
    setattr(module, names[4], _conv3(cnum * 2, cnum))
    setattr(module, names[5], _conv3(cnum, cnum // 2))
    setattr(module, names[6], _conv3(cnum // 2, output_dim, activation="none", dropout=False))
    module.decoder_names = names


def _run_decoder(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    n = module.decoder_names
    x = getattr(module, n[1])(getattr(module, n[0])(x))
    x = getattr(module, n[3])(getattr(module, n[2])(_upsample(x)))
    x = getattr(module, n[5])(getattr(module, n[4])(_upsample(x)))
    return torch.clamp(getattr(module, n[6])(x), -1.0, 1.0)


def _with_guides(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """concat[x, ones, mask]: the constant channel lets convs tell zero padding from black pixels."""
    return torch.cat([x, torch.ones_like(mask), mask], dim=1)


class CoarseGenerator(nn.Module):
    """Stage 1: dilated encoder-decoder, conv1 ... conv17 (output at input resolution, clamped to [-1, 1])."""

    def __init__(self, input_dim: int = 1, cnum: int = 32) -> None:
        super().__init__()
        self.conv1 = _conv5(input_dim + 2, cnum, dropout=False)
        self.conv2_downsample = _conv3(cnum, cnum * 2, stride=2)
        self.conv3 = _conv3(cnum * 2, cnum * 2)
        self.conv4_downsample = _conv3(cnum * 2, cnum * 4, stride=2)
        self.conv5 = _conv3(cnum * 4, cnum * 4)
        self.conv6 = _conv3(cnum * 4, cnum * 4)
        _atrous_stack(self, cnum * 4)
        _decoder(self, "conv", cnum * 4, cnum, input_dim, first=11)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.conv1(_with_guides(x, mask))
        x = self.conv3(self.conv2_downsample(x))
        x = self.conv6(self.conv5(self.conv4_downsample(x)))
        x = self.conv10_atrous(self.conv9_atrous(self.conv8_atrous(self.conv7_atrous(x))))
        return _run_decoder(self, x)


class FineGenerator(nn.Module):
    """Stage 2: a dilated-conv branch and a contextual-attention branch, merged by the allconv decoder."""

    def __init__(self, input_dim: int = 1, cnum: int = 32) -> None:
        super().__init__()
        # dilated-conv ("hallucination") branch
        self.conv1 = _conv5(input_dim + 2, cnum, dropout=False)
        self.conv2_downsample = _conv3(cnum, cnum, stride=2)
        self.conv3 = _conv3(cnum, cnum * 2)
        self.conv4_downsample = _conv3(cnum * 2, cnum * 2, stride=2)
        self.conv5 = _conv3(cnum * 2, cnum * 4)
        self.conv6 = _conv3(cnum * 4, cnum * 4)
        _atrous_stack(self, cnum * 4)
        # attention branch
        self.pmconv1 = _conv5(input_dim + 2, cnum, dropout=True)
        self.pmconv2_downsample = _conv3(cnum, cnum, stride=2)
        self.pmconv3 = _conv3(cnum, cnum * 2)
        self.pmconv4_downsample = _conv3(cnum * 2, cnum * 4, stride=2)
        self.pmconv5 = _conv3(cnum * 4, cnum * 4)
        self.pmconv6 = _conv3(cnum * 4, cnum * 4, activation="relu")
        self.contextul_attention = ContextualAttention(ksize=3, stride=1, rate=2, fuse_k=3, softmax_scale=10.0)  # (sic)
        self.pmconv9 = _conv3(cnum * 4, cnum * 4)
        self.pmconv10 = _conv3(cnum * 4, cnum * 4)
        _decoder(self, "allconv", cnum * 8, cnum, input_dim, first=11)

    def forward(self, x_in: torch.Tensor, x_stage1: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xnow = _with_guides(x_stage1 * mask + x_in * (1.0 - mask), mask)
        x = self.conv3(self.conv2_downsample(self.conv1(xnow)))
        x = self.conv6(self.conv5(self.conv4_downsample(x)))
        hallucinated = self.conv10_atrous(self.conv9_atrous(self.conv8_atrous(self.conv7_atrous(x))))
        x = self.pmconv3(self.pmconv2_downsample(self.pmconv1(xnow)))
        x = self.pmconv6(self.pmconv5(self.pmconv4_downsample(x)))
        x = self.contextul_attention(x, x, mask)
        attended = self.pmconv10(self.pmconv9(x))
        return _run_decoder(self, torch.cat([hallucinated, attended], dim=1))


class InpaintGenerator(nn.Module):
    """Coarse + fine generator. Input: x in [-1, 1] with hole pixels 0, mask 1 = hole (N or 1 x 1 x H x W)."""

    def __init__(self, input_dim: int = 1, cnum: int = 32) -> None:
        super().__init__()
        if cnum < 2 or cnum % 2:
            raise ValueError(f"InpaintGenerator: cnum must be an even number >= 2, got {cnum}")
        self.coarse_generator = CoarseGenerator(input_dim, cnum)
        self.fine_generator = FineGenerator(input_dim, cnum)
        for stream, module in enumerate(m for m in self.modules() if isinstance(m, SpatialDropout)):
            module.stream = stream  # each layer its own uniforms

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_stage1, x_stage2); the official third output, a flow visualisation, is not computed."""
        side = 8  # two stride-2 convs, then contextual attention at rate 2
        if x.shape[-1] % side or x.shape[-2] % side:
            raise ValueError(f"InpaintGenerator: input side must be a multiple of {side}, got {tuple(x.shape[-2:])}")
        mask = mask.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])
        x_stage1 = self.coarse_generator(x, mask)
        return x_stage1, self.fine_generator(x, x_stage1, mask)

    # ---- inference-time spatial dropout -------------------------------------------------------------------
    def set_dropout(self, p: float, fine_stage: bool = False) -> None:
        """Dropout p for every dropout module; live: the released coarse set, plus all fine-stage ones if asked."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        for name, module in self.named_modules():
            if isinstance(module, SpatialDropout):
                stage, layer = name.split(".")[:2]
                module.p = p
                module.live = p > 0 and (layer in RELEASED_LIVE_COARSE if stage == "coarse_generator" else fine_stage)

    def live_dropout(self) -> list[str]:
        """Names of the dropout modules that currently apply."""
        return [n for n, m in self.named_modules() if isinstance(m, SpatialDropout) and m.live]

    @contextmanager
    def dropout_off(self) -> Iterator[None]:
        """No dropout inside the block (training), the previous setting restored after it."""
        modules = [m for m in self.modules() if isinstance(m, SpatialDropout)]
        before = [m.live for m in modules]
        for m in modules:
            m.live = False
        try:
            yield
        finally:
            for m, live in zip(modules, before):
                m.live = live
