"""Stage 2 of ICT: the guided upsampler (`InpaintGenerator_5`) and its PatchGAN critic, official key names.

Generator input: the window with its holes set to 1 and the bicubic-upsampled palette prior, concatenated
(2 channels grey, 6 for ICT's RGB checkpoints); output (tanh + 1) / 2 over the whole window. The critic is a
spectral-norm PatchGAN whose first conv is registered twice (`conv1.0` and `features.0`), as in ICT's file.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm


class ResnetBlock(nn.Module):
    """3x3 dilation-2 conv, ReLU, 3x3 conv, added to the input (no normalisation)."""

    def __init__(self, dim: int, dilation: int = 2) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation), nn.Conv2d(dim, dim, 3, dilation=dilation), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class GuidedUpsampler(nn.Module):
    """7x7 conv -> two stride-2 convs -> 8 dilated residual blocks -> two transposed convs -> 7x7 conv out.

    Widths cnum, 2cnum, 4cnum (official: 64); smaller only for CPU demos."""

    def __init__(self, channels: int = 1, residual_blocks: int = 8, cnum: int = 64) -> None:
        super().__init__()
        self.channels = channels
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(2 * channels, cnum, 7), nn.ReLU(True),
            nn.Conv2d(cnum, 2 * cnum, 4, 2, 1), nn.ReLU(True),
            nn.Conv2d(2 * cnum, 4 * cnum, 4, 2, 1), nn.ReLU(True))
        self.middle = nn.Sequential(*(ResnetBlock(4 * cnum, 2) for _ in range(residual_blocks)))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4 * cnum, 2 * cnum, 4, 2, 1), nn.ReLU(True),
            nn.ConvTranspose2d(2 * cnum, cnum, 4, 2, 1), nn.ReLU(True),
            nn.ReflectionPad2d(3), nn.Conv2d(cnum, channels, 7))
        for module in self.modules():  # ICT's init_weights('normal', 0.02)
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor, holes: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """images, prior: B x C x P x P in [0, 1]; holes: B x 1 x P x P (1 = hole) -> B x C x P x P in [0, 1]."""
        x = torch.cat([images * (1 - holes) + holes, prior], dim=1)
        return (torch.tanh(self.decoder(self.middle(self.encoder(x)))) + 1) / 2


class PatchCritic(nn.Module):
    """PatchGAN cnum/2/4/8 cnum/1 (official cnum 64; strides 2, 2, 2, 1, 1), spectral norm, LeakyReLU 0.2;
    sigmoid patch scores."""

    def __init__(self, channels: int = 1, cnum: int = 64) -> None:
        super().__init__()

        def conv(cin: int, cout: int, stride: int, act: bool = True) -> nn.Sequential:
            layers: list[nn.Module] = [spectral_norm(nn.Conv2d(cin, cout, 4, stride, 1, bias=False))]
            return nn.Sequential(*layers, nn.LeakyReLU(0.2, True)) if act else nn.Sequential(*layers)

        self.conv1 = conv(channels, cnum, 2)
        self.features = nn.Sequential(self.conv1[0])  # ICT stores the first conv under both names
        self.conv2, self.conv3 = conv(cnum, 2 * cnum, 2), conv(2 * cnum, 4 * cnum, 2)
        self.conv4, self.conv5 = conv(4 * cnum, 8 * cnum, 1), conv(8 * cnum, 1, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x 1 x p x p patch probabilities (30 x 30 at 256 px)."""
        return torch.sigmoid(self.conv5(self.conv4(self.conv3(self.conv2(self.conv1(x))))))
