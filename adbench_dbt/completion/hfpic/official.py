"""Loading the official ICT checkpoints (RGB) by key, with one clear error per kind of mismatch.

Layout of a released ICT model directory: stage 1 = one transformer file (`*.pth` = {'model': state, 'epoch', ...}
from training, or a bare state dict `*.pt`), stage 2 = `InpaintingModel_gen.pth` = {'iteration', 'generator'}
(optionally `InpaintingModel_dis.pth` = {'discriminator'}). A `module.` prefix (multi-GPU training) is dropped.
Official weights are RGB: use `channels: 3` and ICT's `palette_file`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from adbench_dbt.errors import CheckpointError
from adbench_dbt.io import load_weights

if TYPE_CHECKING:
    from adbench_dbt.completion.hfpic.backbone import HfpicBackbone

GEN_FILE, DIS_FILE = "InpaintingModel_gen.pth", "InpaintingModel_dis.pth"
STAGE1_KEYS, STAGE2_KEYS = ("tok_emb.weight", "pos_emb"), ("encoder.1.weight", "decoder.5.weight")


def find_ict_files(directory: Path) -> tuple[Path, Path]:
    """(stage-1 transformer file, stage-2 generator file) under `directory`: exactly one of each."""
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: ICT checkpoint directory does not exist")
    generators = sorted(directory.rglob(GEN_FILE))
    stage1 = sorted(p for p in [*directory.rglob("*.pth"), *directory.rglob("*.pt")]
                    if not p.name.startswith("InpaintingModel_"))
    if len(generators) != 1 or len(stage1) != 1:
        raise CheckpointError(f"{directory}: expected one ICT transformer file (*.pth / *.pt) and one {GEN_FILE}, "
                              f"found {[p.name for p in stage1]} and {[p.name for p in generators]}")
    return stage1[0], generators[0]


CONTAINERS = ("model", "generator", "discriminator")  # ICT's wrappers: stage 1, stage-2 generator, critic


def _state(path: Path) -> dict[str, Any]:
    """The state dict inside an ICT file (bare, or under one of ICT's container keys), without `module.`."""
    obj = load_weights(path, map_location="cpu")
    if isinstance(obj, dict):
        obj = next((obj[k] for k in CONTAINERS if isinstance(obj.get(k), dict)), obj)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict, bare or under one of {list(CONTAINERS)}")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _check_stage(path: Path, state: dict[str, Any], expected: tuple[str, ...], other: tuple[str, ...],
                 stage: str, other_stage: str) -> None:
    if all(k in state for k in expected):
        return
    if all(k in state for k in other):
        raise CheckpointError(f"{path}: an ICT {other_stage} checkpoint, expected the {stage} "
                              f"(keys {', '.join(expected)})")
    missing = ", ".join(k for k in expected if k not in state)
    raise CheckpointError(f"{path}: not an ICT {stage} checkpoint (missing {missing})")


def _load_strict(module: nn.Module, state: dict[str, Any], path: Path, what: str) -> None:
    ours = module.state_dict()
    for key, value in state.items():
        if key in ours and tuple(ours[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{path}: {key} has shape {tuple(value.shape)}, the config's {what} expects "
                                  f"{tuple(ours[key].shape)}")
    missing, unexpected = sorted(ours.keys() - state.keys()), sorted(state.keys() - ours.keys())
    if missing or unexpected:
        raise CheckpointError(f"{path}: does not match the config's {what} (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}; n_layer/n_embd?)")
    module.load_state_dict(state, strict=True)


def load_transformer_state(module: nn.Module, path: Path) -> None:
    """Stage-1 weights by key; ICT's unused causal `blocks.*.attn.mask` buffers are checked and dropped."""
    state = _state(path)
    _check_stage(path, state, STAGE1_KEYS, STAGE2_KEYS, "stage-1 transformer", "stage-2 upsampler")
    t = module.block_size
    for key in [k for k in state if k.endswith(".attn.mask")]:
        if tuple(state[key].shape) != (1, 1, t, t):
            raise CheckpointError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected (1, 1, {t}, {t})")
        del state[key]
    _load_strict(module, state, path, "transformer")


def load_upsampler_state(module: nn.Module, path: Path, channels: int) -> None:
    """Stage-2 generator weights by key; a grey/RGB channel mismatch names the setting to change."""
    state = _state(path)
    _check_stage(path, state, STAGE2_KEYS, STAGE1_KEYS, "stage-2 upsampler", "stage-1 transformer")
    found = state["encoder.1.weight"].shape[1] // 2
    if found != channels:
        raise CheckpointError(f"{path}: a {found}-channel upsampler ({2 * found} input channels), the config "
                              f"builds {channels} channel(s): set channels={found}")
    _load_strict(module, state, path, "upsampler")


def load_official_ict(backbone: "HfpicBackbone", directory: Path) -> None:
    """Both stages (and the critic when `InpaintingModel_dis.pth` is there) from an ICT model directory."""
    if backbone.config.palette_file is None:
        raise CheckpointError(f"{directory}: official ICT weights index ICT's RGB palette; set palette_file to "
                              "its kmeans_centers.npy (512 x 3 in [-1, 1])")
    stage1, stage2 = find_ict_files(directory)
    load_transformer_state(backbone.transformer, stage1)
    load_upsampler_state(backbone.upsampler, stage2, backbone.config.channels)
    if (stage2.parent / DIS_FILE).is_file():
        _load_strict(backbone.patch_critic, _state(stage2.parent / DIS_FILE),
                     stage2.parent / DIS_FILE, "PatchGAN critic")
