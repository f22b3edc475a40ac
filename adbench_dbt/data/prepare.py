"""`prepare`: decode every slice of every split once into the slice cache, in parallel over volumes.

Work is grouped per volume so a file is opened once for all its frames; frames already cached are not decoded
again, so re-running after an interruption or on a complete cache costs only the manifest.
"""
from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from adbench_dbt.data.cache import SliceCache, standardize_frame
from adbench_dbt.data.dataset import BCSDBT
from adbench_dbt.data.dicom import read_frames
from adbench_dbt.data.errors import DataError
from adbench_dbt.io import write_json

REPORT_NAME = "prepare-report.json"


def prepare(root: str | Path, cache: str | Path | None = None, workers: int = 1,
            split_config: str | Path | None = None, *, console: Console | None = None,
            **options: Any) -> dict[str, Any]:
    """Fill the cache for every split; returns (and writes to <cache>/prepare-report.json) what it did."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    dataset = BCSDBT(root, cache, split_config, **options)
    volumes = dataset.manifest["volumes"]
    unique = {(e["volume"], e["frame"]) for entries in dataset.manifest["splits"].values() for e in entries}
    todo: dict[str, set[int]] = defaultdict(set)
    for name, frame in unique:
        if not dataset.cache.has(name, volumes[name], frame):
            todo[name].add(frame)
    jobs = [(name, volumes[name], sorted(frames)) for name, frames in sorted(todo.items())]
    decoded, failed = _run(jobs, dataset.root, dataset.cache, workers, console)

    seconds = time.perf_counter() - started
    report = {
        "fingerprint": dataset.fingerprint,
        "cache": str(dataset.cache.directory),
        "reader_version": dataset.manifest["reader_version"],
        "counts": {name: len(entries) for name, entries in dataset.manifest["splits"].items()},
        "test_split": dataset.test_split,
        "slices": len(unique),
        "already_cached": len(unique) - sum(len(frames) for _, _, frames in jobs),
        "decoded": decoded,
        "seconds": round(seconds, 3),
        "slices_per_second": round(decoded / seconds, 3) if decoded else None,
        "skipped": dataset.skipped,
        "failed": failed,
    }
    write_json(dataset.cache.directory / REPORT_NAME, report)
    write_json(dataset.cache.directory / "manifests" / f"{dataset.fingerprint}.json", dataset.manifest)
    _print_summary(console, report)
    return report


def prepare_volume(root: Path, cache_dir: Path, name: str, record: dict[str, Any], frames: list[int]) -> int:
    """Decode `frames` of one volume and cache them standardized; returns how many slices were written."""
    cache = SliceCache(cache_dir)
    raw = read_frames(root / record["source"], frames)
    center, width = record["window"]
    for frame, raw_frame in zip(frames, raw):
        image, mask = standardize_frame(raw_frame, record["view"], center, width)
        cache.write(name, record, frame, image, mask)
    return len(frames)


def _run(jobs: list[tuple[str, dict[str, Any], list[int]]], root: Path, cache: SliceCache, workers: int,
         console: Console) -> tuple[int, list[dict[str, str]]]:
    decoded, failed = 0, []
    columns = (TextColumn("[bold]decoding slices"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("decode", total=sum(len(frames) for _, _, frames in jobs))

        def collect(name: str, record: dict[str, Any], frames: list[int], outcome: Future | None) -> None:
            nonlocal decoded
            try:
                decoded += outcome.result() if outcome is not None else prepare_volume(
                    root, cache.directory, name, record, frames)
            except DataError as exc:
                failed.append({"volume": name, "file": record["source"], "reason": str(exc)})
            progress.advance(task, len(frames))

        if workers <= 1 or len(jobs) <= 1:
            for name, record, frames in jobs:
                collect(name, record, frames, None)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(prepare_volume, root, cache.directory, *job): job for job in jobs}
                for future in as_completed(futures):
                    collect(*futures[future], future)
    return decoded, failed


def _print_summary(console: Console, report: dict[str, Any]) -> None:
    table = Table(title="BCS-DBT slices per split")
    table.add_column("split")
    table.add_column("slices", justify="right")
    for name, count in report["counts"].items():
        table.add_row(name + (" (test set)" if name == report["test_split"] else ""), str(count))
    console.print(table)
    console.print(f"decoded {report['decoded']} slice(s), {report['already_cached']} already cached, "
                  f"{len(report['skipped'])} volume(s) skipped, {len(report['failed'])} failed to decode")
    console.print(f"fingerprint {report['fingerprint']}")
    console.print(f"report: {Path(report['cache']) / REPORT_NAME}")
