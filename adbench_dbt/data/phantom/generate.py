"""`generate_phantom` writes a whole phantom dataset atomically; `ensure_phantom` caches one per (preset, seed)."""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from adbench_dbt.data.phantom.plan import plan_volumes
from adbench_dbt.data.phantom.presets import get_preset
from adbench_dbt.data.phantom.writer import write_job, write_tables
from adbench_dbt.io import atomic_directory, write_json

GENERATOR_VERSION = 4  # bump whenever the pixels or tables a (preset, seed) produces change
SUMMARY_NAME = "phantom.json"  # written last: its presence marks a complete dataset


@dataclass(frozen=True)
class PhantomSummary:
    root: str
    preset: str
    seed: int
    generator_version: int
    volumes: dict[str, dict[str, int]]  # split -> label group -> volumes
    boxes: dict[str, dict[str, int]]  # split -> box class -> boxes
    seconds: float


def generate_phantom(out: str | Path, preset: str = "demo", seed: int = 0, workers: int = 1) -> PhantomSummary:
    """Render every volume of `preset` and write the dataset tree at `out` (built beside it, renamed at the end)."""
    started = time.perf_counter()
    spec = get_preset(preset)
    jobs = plan_volumes(spec, seed)
    out = Path(out)
    with atomic_directory(out) as tmp:
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                boxes = list(pool.map(write_job, [tmp] * len(jobs), jobs))
        else:
            boxes = [write_job(tmp, job) for job in jobs]
        write_tables(tmp, jobs, boxes)
        volumes: dict[str, dict[str, int]] = {}
        box_counts: dict[str, dict[str, int]] = {}
        for job, rows in zip(jobs, boxes):
            volumes.setdefault(job.split, {}).setdefault(job.group, 0)
            volumes[job.split][job.group] += 1
            for row in rows:
                box_counts.setdefault(job.split, {}).setdefault(row["Class"], 0)
                box_counts[job.split][row["Class"]] += 1
        summary = PhantomSummary(root=str(out), preset=preset, seed=seed, generator_version=GENERATOR_VERSION,
                                 volumes=volumes, boxes=box_counts,
                                 seconds=round(time.perf_counter() - started, 3))
        write_json(tmp / SUMMARY_NAME, {k: v for k, v in asdict(summary).items() if k not in ("root", "seconds")})
    return summary


def default_cache() -> Path:
    return Path(os.environ.get("ADBENCH_CACHE") or Path.home() / ".cache" / "adbench_dbt")


def ensure_phantom(preset: str = "demo", seed: int = 0, root: str | Path | None = None) -> Path:
    """Dataset root of the (preset, seed) phantom under `root` (default: $ADBENCH_CACHE or ~/.cache/adbench_dbt).

    Generated on first use into the subfolder phantom-{preset}-seed{seed}-v{GENERATOR_VERSION}, reused afterwards;
    an incomplete or mismatching folder (no summary, other version) is generated again.
    """
    get_preset(preset)
    path = Path(root) if root is not None else default_cache()
    path = path / f"phantom-{preset}-seed{seed}-v{GENERATOR_VERSION}"
    expected = {"preset": preset, "seed": seed, "generator_version": GENERATOR_VERSION}
    try:
        found = json.loads((path / SUMMARY_NAME).read_text())
        if all(found.get(key) == value for key, value in expected.items()):
            return path
    except (OSError, ValueError):
        pass
    generate_phantom(path, preset=preset, seed=seed, workers=min(os.cpu_count() or 1, 4))
    return path
