"""Slice cache: standardized slices (uint16 .npy, value * 65535) and breast masks, memory-mapped on read.

Decoding a JPEG 2000 frame costs a fraction of a second and every method reads every slice many times, so slices
are decoded once by `prepare`. Entries live under a key derived from the reader version and the identity of the
source file (relative path, size, SOP Instance UID, window, shape): a replaced file or a changed pixel pipeline
lands in a new directory, so a stale entry is never read. `fill_cache` is the one way slices get in: `adbench data
prepare` and a `BCSDBT` that finds a split not cached both go through it.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn

from adbench_dbt.data.dicom import VolumeHeader, apply_window, read_frames, read_header
from adbench_dbt.data.errors import DataError
from adbench_dbt.data.masks import breast_mask
from adbench_dbt.data.orientation import fix_laterality, left_align
from adbench_dbt.io import save_npy, write_json

READER_VERSION = "1"  # bump whenever windowing, orientation, masking or the storage format changes
SCALE = 65535.0


def default_cache_dir() -> Path:
    """$ADBENCH_CACHE, else ~/.cache/adbench_dbt."""
    return Path(os.environ.get("ADBENCH_CACHE") or Path.home() / ".cache" / "adbench_dbt")


def standardize_frame(raw: np.ndarray, view: str, center: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw stored frame -> (uint16 windowed, laterality-fixed, left-aligned image, its breast mask)."""
    image = fix_laterality(apply_window(raw, center, width), view)
    image, _ = left_align(image, (), view)
    stored = np.rint(image * SCALE).astype(np.uint16)
    # The mask is computed from the stored values so it matches exactly what readers load.
    return stored, breast_mask(stored.astype(np.float32) / np.float32(SCALE))


def load_slice(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(float32 image in [0, 1], bool breast mask) of one cached slice."""
    image, mask = _open(image_path, mask_path)
    return image.astype(np.float32) / np.float32(SCALE), np.asarray(mask)


def load_region(image_path: Path, mask_path: Path, top: int, left: int, height: int,
                width: int) -> tuple[np.ndarray, np.ndarray]:
    """Only the rectangle, read from the memory map (training crops never convert a whole slice)."""
    image, mask = _open(image_path, mask_path)
    window = (slice(top, top + height), slice(left, left + width))
    return image[window].astype(np.float32) / np.float32(SCALE), np.array(mask[window])


def _open(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        return np.load(image_path, mmap_mode="r"), np.load(mask_path, mmap_mode="r")
    except FileNotFoundError as exc:
        raise DataError(f"{exc.filename}: cached slice missing; run `adbench data prepare`") from exc
    except ValueError as exc:
        raise DataError(f"{image_path}: unreadable cache entry ({exc}); delete it and re-run prepare") from exc


class SliceCache:
    """Where each standardized slice of a manifest volume lives on disk."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    @property
    def slices_dir(self) -> Path:
        return self.directory / "slices"

    def is_empty(self) -> bool:
        return not self.slices_dir.is_dir() or next(self.slices_dir.iterdir(), None) is None

    def volume_dir(self, name: str, record: dict[str, Any]) -> Path:
        return self.slices_dir / name / entry_key(record)

    def paths(self, name: str, record: dict[str, Any], frame: int) -> tuple[Path, Path]:
        base = self.volume_dir(name, record)
        return base / f"f{frame:03d}.image.npy", base / f"f{frame:03d}.mask.npy"

    def has(self, name: str, record: dict[str, Any], frame: int) -> bool:
        return all(path.is_file() for path in self.paths(name, record, frame))

    def write(self, name: str, record: dict[str, Any], frame: int, image: np.ndarray, mask: np.ndarray) -> None:
        """Mask first, image last, each atomically: an entry counts as present only once both are complete."""
        image_path, mask_path = self.paths(name, record, frame)
        save_npy(mask_path, np.ascontiguousarray(mask, dtype=bool))
        save_npy(image_path, np.ascontiguousarray(image, dtype=np.uint16))

    def loaders(self, name: str, record: dict[str, Any], frame: int) -> tuple[Callable, Callable]:
        """(loader, region_loader) for a `Slice`; picklable, so DataLoader workers can carry them."""
        image_path, mask_path = self.paths(name, record, frame)
        return partial(load_slice, image_path, mask_path), partial(load_region, image_path, mask_path)


DecodeJob = tuple[str, dict[str, Any], list[int]]  # (volume id, manifest volume record, frames to decode)


def default_workers() -> int:
    """Decoding processes when the caller does not say: up to 4 (JPEG 2000 decoding is CPU-bound)."""
    return min(4, os.cpu_count() or 1)


def decode_volume(root: Path, cache_dir: Path, name: str, record: dict[str, Any], frames: list[int]) -> int:
    """Decode `frames` of one volume and cache them standardized; returns how many slices were written."""
    cache = SliceCache(cache_dir)
    raw = read_frames(root / record["source"], frames)
    center, width = record["window"]
    for frame, raw_frame in zip(frames, raw):
        image, mask = standardize_frame(raw_frame, record["view"], center, width)
        cache.write(name, record, frame, image, mask)
    return len(frames)


def fill_cache(jobs: list[DecodeJob], root: Path, cache: SliceCache, workers: int,
               console: Console) -> tuple[int, list[dict[str, str]]]:
    """Decode every job (one file opened once for all its frames), in parallel over volumes, with a progress bar.

    Returns (slices written, failures); a volume that fails to decode is a failure record, not an exception, so one
    bad file never costs the rest of the run.
    """
    decoded, failed = 0, []
    columns = (TextColumn("[bold]decoding slices"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("decode", total=sum(len(frames) for _, _, frames in jobs))

        def collect(name: str, record: dict[str, Any], frames: list[int], outcome: Future | None) -> None:
            nonlocal decoded
            try:
                decoded += outcome.result() if outcome is not None else decode_volume(
                    root, cache.directory, name, record, frames)
            except DataError as exc:  # decoder messages may span lines: the record stays one line
                failed.append({"volume": name, "file": record["source"], "reason": " ".join(str(exc).split())})
            progress.advance(task, len(frames))

        if workers <= 1 or len(jobs) <= 1:
            for name, record, frames in jobs:
                collect(name, record, frames, None)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(decode_volume, root, cache.directory, *job): job for job in jobs}
                for future in as_completed(futures):
                    collect(*futures[future], future)
    return decoded, sorted(failed, key=lambda f: f["volume"])


def entry_key(record: dict[str, Any]) -> str:
    """Identity of the decoded pixels of one volume: reader version + everything that names the source file."""
    identity = {"reader_version": READER_VERSION,
                **{k: record[k] for k in ("source", "file_size", "sop_instance_uid", "window", "shape", "n_frames")}}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class HeaderCache:
    """DICOM headers by file (path, size, mtime): re-reading 20k headers on every start would take minutes."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / "headers.json"
        self._entries: dict[str, Any] = {}
        self._dirty = False
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("reader_version") == READER_VERSION:
                    self._entries = data["headers"]
            except (ValueError, KeyError, TypeError):
                self._entries = {}  # a corrupt header cache is only a lost speed-up: rebuild it

    def read(self, path: Path) -> VolumeHeader:
        stat = path.stat() if path.is_file() else None
        key = str(path.resolve())
        if stat is not None:
            entry = self._entries.get(key)
            if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
                return VolumeHeader(**entry["header"])
        header = read_header(path)
        self._entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "header": asdict(header)}
        self._dirty = True
        return header

    def save(self) -> None:
        if self._dirty:
            write_json(self.path, {"reader_version": READER_VERSION, "headers": self._entries})
            self._dirty = False
