"""Read and write inpainter checkpoints in the official PICARD / daa233 layout.

`gen_%08d.pt` = generator state dict; `dis_%08d.pt` = {'localD': ..., 'globalD': ...}. The project's trainer
writes the same layout (plus `optimizer.pt`), so official weights and our own training runs load the same way.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adbench_dbt.completion.critics import LocalCritic
from adbench_dbt.errors import CheckpointError
from adbench_dbt.io import atomic_path, load_weights

_GEN = re.compile(r"^gen_(\d+)\.pt$")


def checkpoint_iterations(directory: str | Path) -> list[int]:
    """Iterations with a `gen_*.pt` in `directory`, ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory does not exist")
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _GEN.match(p.name)))


def find_checkpoint(directory: str | Path, iteration: int | None = None) -> tuple[Path, Path]:
    """(gen_*.pt, dis_*.pt) of `iteration`, or of the latest iteration with both files."""
    directory = Path(directory)
    available = checkpoint_iterations(directory)
    complete = [i for i in available if (directory / f"dis_{i:08d}.pt").exists()]
    if iteration is None:
        if not complete:
            raise CheckpointError(f"{directory}: no gen_XXXXXXXX.pt with a matching dis_XXXXXXXX.pt "
                                    f"(found generator iterations {available})")
        iteration = complete[-1]
    elif iteration not in complete:
        raise CheckpointError(f"{directory}: no complete checkpoint for iteration {iteration}; "
                                f"available: {complete}")
    return directory / f"gen_{iteration:08d}.pt", directory / f"dis_{iteration:08d}.pt"


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Drop the 'module.' prefix a DataParallel/DDP-wrapped save would add."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def _load_into(module: nn.Module, state: Any, source: str) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: expected a state dict, got {type(state).__name__}")
    try:
        module.load_state_dict(_strip_prefix(state), strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{source}: does not match the network built from the config "
                              f"(window/hole/cnum/FOV?): {first[:200]}") from None


def load_official(directory: str | Path, generator: nn.Module, local_critic: nn.Module, global_critic: nn.Module,
                  iteration: int | None = None, map_location: str | torch.device = "cpu") -> int:
    """Load gen/dis of `iteration` (default latest) strictly into the given nets; returns the iteration."""
    gen_path, dis_path = find_checkpoint(directory, iteration)
    _load_into(generator, load_weights(gen_path, map_location), str(gen_path))
    critics = load_weights(dis_path, map_location)
    if not isinstance(critics, dict) or set(critics) != {"localD", "globalD"}:
        keys = sorted(critics) if isinstance(critics, dict) else type(critics).__name__
        raise CheckpointError(f"{dis_path}: expected a dict with keys 'localD' and 'globalD', got {keys}")
    _load_into(local_critic, critics["localD"], f"{dis_path}['localD']")
    _load_into(global_critic, critics["globalD"], f"{dis_path}['globalD']")
    return int(_GEN.match(gen_path.name).group(1))


def save_official(directory: str | Path, iteration: int, generator: nn.Module, local_critic: nn.Module,
                  global_critic: nn.Module) -> tuple[Path, Path]:
    """Write gen_%08d.pt and dis_%08d.pt atomically (each file appears complete or not at all)."""
    directory = Path(directory)
    gen_path, dis_path = directory / f"gen_{iteration:08d}.pt", directory / f"dis_{iteration:08d}.pt"
    with atomic_path(gen_path) as tmp:
        torch.save(generator.state_dict(), tmp)
    with atomic_path(dis_path) as tmp:
        torch.save({"localD": local_critic.state_dict(), "globalD": global_critic.state_dict()}, tmp)
    return gen_path, dis_path


def load_picard_local_critic(path: str | Path, hole: int, map_location: str | torch.device = "cpu") -> nn.Module:
    """PICARD's trained local critic (its feature encoder E for MCD_feature) for another backbone, e.g. HFPIC.

    `path`: a PICARD model saved by this project (directory with config.json + state.pt), an official PICARD
    checkpoint directory (latest dis_*.pt) or one dis_*.pt file. The critic must have been trained on `hole` px
    holes; its width is read from the weights.
    """
    path = Path(path)
    expected = "a PICARD model directory (config.json + state.pt), an official PICARD checkpoint directory or a " \
               "dis_XXXXXXXX.pt file"
    if not path.exists():
        raise CheckpointError(f"{path}: critic checkpoint not found (expected {expected})")
    if path.is_dir() and (path / "config.json").is_file():
        source, key = path / "state.pt", "local_critic"
    else:
        source, key = (find_checkpoint(path)[1] if path.is_dir() else path), "localD"
    state = load_weights(source, map_location)
    if not isinstance(state, dict) or not isinstance(state.get(key), dict):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{source}: no PICARD local critic (expected key {key!r}, found {found})")
    critic_state = _strip_prefix(state[key])
    first = critic_state.get("dis_conv_module.conv1.conv.weight")
    if first is None or first.dim() != 4 or first.shape[1] != 1:
        raise CheckpointError(f"{source}['{key}']: not a 1-channel PICARD local critic "
                              "(dis_conv_module.conv1.conv.weight missing or of another shape)")
    critic = LocalCritic(1, int(first.shape[0]), hole)
    _load_into(critic, critic_state, f"{source}['{key}'] (critic for {hole} px holes)")
    return critic.to(map_location).eval()
