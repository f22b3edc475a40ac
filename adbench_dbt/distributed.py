"""torchrun support: test slices are sharded across ranks, rank 0 merges; trainers may wrap models in DDP."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env(device: torch.device) -> bool:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1). Returns True if distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def wrap_ddp(module: torch.nn.Module) -> torch.nn.Module:
    """DistributedDataParallel around `module` when a process group exists; the module itself otherwise."""
    if not is_distributed():
        return module
    device_ids = [module_device(module).index] if module_device(module).type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def unwrap_ddp(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (itself otherwise): for checkpoints and no-grad calls."""
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device
