"""CutPaste network: a single-channel timm ResNet-18 encoder, an MLP projection head and a 3-way classifier."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

from adbench_dbt.errors import CheckpointError
from adbench_dbt.io import load_weights

# ImageNet statistics averaged over RGB: keeps optional ImageNet-pretrained weights in their expected range.
GRAY_MEAN, GRAY_STD = 0.449, 0.226


class CutPasteNet(nn.Module):
    """encoder (512-d, avg-pooled) -> head (Linear + BN + ReLU per layer) -> Linear to 3 logits."""

    def __init__(self, head_layers: Sequence[int], num_classes: int = 3) -> None:
        super().__init__()
        self.encoder = timm.create_model("resnet18", pretrained=False, num_classes=0, in_chans=1)
        layers: list[nn.Module] = []
        width = self.encoder.num_features
        for out in head_layers:
            layers += [nn.Linear(width, out), nn.BatchNorm1d(out), nn.ReLU(inplace=True)]
            width = out
        self.head = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.embedding_dims = {"backbone": self.encoder.num_features, "head": width}

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """windows N x 1 x P x P in [0, 1] -> N x 512 backbone features."""
        return self.encoder((windows - GRAY_MEAN) / GRAY_STD)

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (backbone features, head output, logits)."""
        features = self.features(windows)
        projected = self.head(features)
        return features, projected, self.classifier(projected)

    def load_pretrained_encoder(self, path: str | Path) -> None:
        """Initialise the encoder from a local ResNet-18 state dict (timm/torchvision keys; RGB conv1 is summed
        to one channel, the ImageNet `fc` is dropped). Never downloads anything."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"pretrained_path {path}: no such file (expected a ResNet-18 state dict)")
        state = load_weights(path)
        if not isinstance(state, dict):
            raise CheckpointError(f"pretrained_path {path}: expected a state dict, got {type(state).__name__}")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        if "conv1.weight" in state and state["conv1.weight"].shape[1] != 1:
            state["conv1.weight"] = adapt_input_conv(1, state["conv1.weight"])
        missing, unexpected = self.encoder.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"pretrained_path {path}: not a ResNet-18 state dict "
                             f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
