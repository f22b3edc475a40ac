"""`prepare`: decode every slice of every available split once into the slice cache, and say what happened.

It is `BCSDBT(...).fill(all available splits)` plus a report: the same code path a library user takes when
`BCSDBT.split` decodes a split on first use. Frames already cached are not decoded again, so re-running after an
interruption or on a complete cache costs only the manifest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from adbench_dbt.data.dataset import BCSDBT
from adbench_dbt.io import write_json

REPORT_NAME = "prepare-report.json"


def prepare(root: str | Path, cache: str | Path | None = None, workers: int | None = None,
            split_config: str | Path | None = None, *, strict: bool = False, console: Console | None = None,
            **options: Any) -> dict[str, Any]:
    """Fill the cache for every available split; returns (and writes to <cache>/prepare-report.json) what it did.

    `options` are split-definition fields (`protocol`, `seed`, ...); `strict` turns every skip into a DataError.
    """
    console = console or Console(stderr=True)
    dataset = BCSDBT(root, cache, split_config, workers=workers, strict=strict, console=console, **options)
    fill = dataset.fill(dataset.split_names)
    report = {
        "fingerprint": dataset.fingerprint,
        "cache": str(dataset.cache.directory),
        "reader_version": dataset.manifest["reader_version"],
        "counts": {name: len(entries) for name, entries in dataset.manifest["splits"].items()},
        "unavailable": dataset.unavailable,
        "test_split": dataset.test_split,
        "slices": fill.slices,
        "already_cached": fill.already_cached,
        "decoded": fill.decoded,
        "seconds": round(fill.seconds, 3),
        "slices_per_second": round(fill.decoded / fill.seconds, 3) if fill.decoded else None,
        "skipped": dataset.skipped,
        "notices": dataset.notices,
        "failed": fill.failed,
    }
    write_json(dataset.cache.directory / REPORT_NAME, report)
    _print_summary(console, report)
    return report


def _print_summary(console: Console, report: dict[str, Any]) -> None:
    table = Table(title="BCS-DBT slices per split")
    table.add_column("split")
    table.add_column("slices", justify="right")
    table.add_column("status")
    for name, count in report["counts"].items():
        table.add_row(name, str(count), "the test set" if name == report["test_split"] else "available")
    for name, reason in report["unavailable"].items():
        table.add_row(name, "-", f"absent: {reason}")
    console.print(table)
    problems = ([("skipped", r) for r in report["skipped"]] + [("failed", {"split": "", **r}) for r in report["failed"]]
                + [("notice", r) for r in report["notices"]])
    if problems:
        listing = Table(title="Skipped, failed and collapsed records")
        for column in ("what", "split", "volume", "file", "reason"):
            listing.add_column(column, overflow="fold")
        for what, record in problems:
            listing.add_row(what, record["split"], record["volume"], record["file"], record["reason"])
        console.print(listing)
    console.print(f"decoded {report['decoded']} slice(s), {report['already_cached']} already cached, "
                  f"{len(report['skipped'])} skipped, {len(report['failed'])} volume(s) failed to decode, "
                  f"{len(report['notices'])} duplicate row(s) collapsed")
    console.print(f"fingerprint {report['fingerprint']}")
    console.print(f"report: {Path(report['cache']) / REPORT_NAME}")
