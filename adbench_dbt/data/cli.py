"""`adbench data ...`: prepare the BCS-DBT slice cache, generate the synthetic phantom."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from adbench_dbt.data.errors import DataError

data_app = typer.Typer(help="BCS-DBT data: prepare the slice cache, generate a synthetic phantom.",
                       no_args_is_help=True)


@data_app.command("prepare")
def prepare_command(
    root: Path = typer.Option(..., "--root", help="BCS-DBT download root (holds the CSV tables and volumes)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Slice cache dir [default: $ADBENCH_CACHE or "
                                                               "~/.cache/adbench_dbt]."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes decoding volumes in parallel."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Split protocol: picard or swiecicki."),
    split_config: Optional[Path] = typer.Option(None, "--split-config", help="Split definition YAML "
                                                                             "[default: datasets/bcs-dbt.yaml]."),
) -> None:
    """Decode, window, orient and cache every slice of every split once; print counts and the fingerprint."""
    from adbench_dbt.data.prepare import prepare

    options = {"protocol": protocol} if protocol else {}
    try:
        report = prepare(root, cache, workers, split_config, **options)
    except DataError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    if report["failed"]:
        raise typer.Exit(1)


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
