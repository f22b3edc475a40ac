"""Atomic writes (a crash never leaves a half-written file or directory behind) and the one safe checkpoint reader.

OS errors while writing (permission denied, disk full) become a `FileSystemError` that names the target file, and
torch files are only ever read with `weights_only=True`; a refusal becomes a `CheckpointError` naming the file.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from adbench_dbt.errors import CheckpointError, FileSystemError, RunError, describe_os_error


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same directory; rename it over `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as err:
        raise FileSystemError(f"cannot write {path}: {describe_os_error(err, path.parent)}") from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except FileSystemError:
        raise
    except OSError as err:  # e.g. 'No space left on device', or numpy's '12288 requested and 12160 written'
        raise FileSystemError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name and move it into place (replacing an old one) on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise FileSystemError(f"cannot write {path}: {describe_os_error(err, path.parent)}") from err
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except FileSystemError:
        raise
    except OSError as err:
        raise FileSystemError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def load_weights(path: str | Path, map_location: Any = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`; anything it refuses or cannot read is a CheckpointError naming `path`.

    A pickle that would run code is refused by torch's restricted unpickler before anything executes; the message
    never suggests turning `weights_only` off.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported (global|operand)[^.\n]*", str(err))
        what = found.group(0).replace("GLOBAL ", "") if found else "an object that is not a tensor or a container"
        raise CheckpointError(f"{path}: refused to load: it contains objects that only a full unpickle would "
                              f"build, which can run arbitrary code ({what}); expected a "
                              "state dict of tensors saved with torch.save(model.state_dict())") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read checkpoint ({describe_os_error(err, path)})") from None
    except (RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({first[:160]})") from None


def load_state_file(path: str | Path, load_state_dict: Callable[[dict[str, Any]], Any], map_location: Any,
                    what: str) -> None:
    """`load_state_dict(load_weights(path))`; a refused, unreadable, non-dict or mismatched file is a CheckpointError
    naming the file and `what` it should fit."""
    state = load_weights(path, map_location)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    try:
        load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: does not fit {what} ({first[:200]})") from None


def read_run_json(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON object a run wrote (run.json, summary.json); missing or unreadable is a RunError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: not found; {path.parent} is not a finished run ({what})") from None
    except (OSError, ValueError) as err:
        raise RunError(f"{path}: unreadable {what} ({err})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: unreadable {what} (not a JSON object)")
    return data


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
