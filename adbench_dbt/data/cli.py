"""`adbench data ...`: prepare the BCS-DBT slice cache, generate the synthetic phantom."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from adbench_dbt.errors import EXIT_PARTIAL

data_app = typer.Typer(help="BCS-DBT data: prepare the slice cache, generate a synthetic phantom.",
                       no_args_is_help=True)


@data_app.command("prepare")
def prepare_command(
    root: Path = typer.Option(..., "--root", help="BCS-DBT download root (holds the CSV tables and volumes)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Slice cache dir [default: $ADBENCH_CACHE or "
                                                               "~/.cache/adbench_dbt]."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Processes decoding volumes in parallel "
                                                                         "[default: CPUs, at most 4]."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Split protocol: picard or swiecicki."),
    split_option: list[str] = typer.Option([], "--split-option", help="Split definition field key=value "
                                                                      "(repeatable; YAML values), e.g. seed=1."),
    split_config: Optional[Path] = typer.Option(None, "--split-config", help="Split definition YAML "
                                                                             "[default: datasets/bcs-dbt.yaml]."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first skipped volume, box or label row."),
) -> None:
    """Decode, window, orient and cache every slice of every available split once; print counts, skips and the
    fingerprint. Exits 1 when some volumes failed to decode (listed in the report)."""
    from adbench_dbt.config import parse_overrides
    from adbench_dbt.data.prepare import prepare

    options = parse_overrides(split_option)
    if protocol:
        options["protocol"] = protocol
    report = prepare(root, cache, workers, split_config, strict=strict, **options)
    if report["failed"]:
        raise typer.Exit(EXIT_PARTIAL)


@data_app.command("phantom")
def phantom_command(
    preset: str = typer.Option("tiny", "--preset", help="tiny | demo | full"),
    out: Path = typer.Option(..., "--out", help="Directory to write the phantom download into."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the phantom."),
    workers: int = typer.Option(min(os.cpu_count() or 1, 4), "--workers", min=1,
                                help="Processes rendering volumes in parallel (output does not depend on it)."),
) -> None:
    """Write a synthetic phantom in the BCS-DBT layout (tables + JPEG 2000 volumes) under --out."""
    from adbench_dbt.data.phantom import generate_phantom

    if preset not in ("tiny", "demo", "full"):
        raise typer.BadParameter(f"unknown preset {preset!r}: expected tiny, demo or full", param_hint="--preset")
    summary = generate_phantom(out, preset=preset, seed=seed, workers=workers)
    typer.echo(f"phantom ({preset}) written to {out} in {summary.seconds:.1f} s")
