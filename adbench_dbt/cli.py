"""The `adbench` command line.

`main()` is the entry point and applies the harness's one error policy (`adbench_dbt.errors`): an expected failure
prints one line `error: ...` naming the culprit and exits with its documented code; `--debug` (or ADBENCH_DEBUG=1)
adds the traceback. Commands raise; they never print errors themselves.
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, Optional, Sequence

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from adbench_dbt.config import parse_overrides
from adbench_dbt.errors import (EXIT_FILESYSTEM, EXIT_INTERNAL, EXIT_INTERRUPTED, AdbenchError, ConfigError,
                                describe_os_error)

app = typer.Typer(help="Benchmark unsupervised anomaly localization on digital breast tomosynthesis (BCS-DBT).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
_probe = Console()
console = _probe if _probe.is_terminal else Console(width=160)  # logs and pipes get a wide table
errors_console = Console(stderr=True, soft_wrap=True)  # rich looks up sys.stderr at each write
_state = {"debug": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", envvar="ADBENCH_DEBUG",
                                        help="show the full traceback of an error")) -> None:
    """Benchmark unsupervised anomaly localization on digital breast tomosynthesis (BCS-DBT)."""
    _state["debug"] = _state["debug"] or debug  # main() already saw a --debug given after the command


def _error_line(message: str) -> None:
    errors_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; every failure ends as one line and a documented exit code (see README, 'When something goes
    wrong')."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in args or os.environ.get("ADBENCH_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]  # accepted anywhere on the line, not only before the command
    code = 0
    try:
        result = app(args=args, standalone_mode=False, prog_name="adbench")
        code = result if isinstance(result, int) else 0
    except typer.Exit as done:
        code = done.exit_code
    except typer.TyperException as usage:  # bad option or argument: the parser's own message and code (2)
        usage.show()
        code = usage.exit_code
    except (KeyboardInterrupt, typer.Abort):
        _error_line("interrupted; run the same command again to resume where it stopped")
        code = EXIT_INTERRUPTED
    except AdbenchError as err:
        code = _report(err, str(err), err.exit_code)
    except OSError as err:  # an OS error on a path the user gave that no layer turned into a FileSystemError
        code = _report(err, describe_os_error(err), EXIT_FILESYSTEM)
    except Exception as err:  # a bug: still one line, with the way to the traceback
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        code = _report(err, f"internal error: {type(err).__name__}: {detail} (rerun with --debug for the "
                            "traceback and report it)", EXIT_INTERNAL)
    sys.exit(code)


def _report(err: BaseException, message: str, code: int) -> int:
    if _state["debug"]:
        traceback.print_exception(err)
    _error_line(message)
    return code


# The scoring execution flags of `run` and `bench` (adbench_dbt/execution.py), declared once.
PRECISION_OPTION = typer.Option(None, "--precision", help="scoring precision: fp32 | bf16 | fp16 (autocast; distances "
                                "and final reductions stay fp32)")
CHANNELS_LAST_OPTION = typer.Option(False, "--channels-last", help="NHWC networks and window batches")
COMPILE_OPTION = typer.Option(False, "--compile", help="torch.compile the scoring (eager fallback with a notice)")
CUDA_GRAPHS_OPTION = typer.Option(False, "--cuda-graphs", help="replay CUDA graphs of fixed-shape batches")
AUTO_BATCH_OPTION = typer.Option(False, "--auto-batch", help="grow the window batch to the largest that fits")


def execution_overrides(precision: str | None, channels_last: bool, compile_: bool, cuda_graphs: bool,
                        auto_batch: bool) -> dict[str, Any]:
    """The execution flags as config overrides (only those given: a profile's own settings stay otherwise)."""
    flags = {"precision": precision, "channels_last": channels_last or None, "compile": compile_ or None,
             "cuda_graphs": cuda_graphs or None, "auto_batch": auto_batch or None}
    return {k: v for k, v in flags.items() if v is not None}


def _mount_data_commands() -> None:
    from adbench_dbt.data.cli import data_app

    app.add_typer(data_app, name="data", help="Generate the phantom, prepare and cache BCS-DBT slices.")


_mount_data_commands()


@app.command()
def run(
    method: str = typer.Option(..., "--method", "-m", help="registered method name (see `adbench methods`)"),
    dataset: str = typer.Option("phantom", help="'phantom' (embedded demo), 'phantom:tiny|demo|full', or a BCS-DBT root"),
    profile: str = typer.Option("demo", help="named profile: paper | demo | smoke"),
    set_: list[str] = typer.Option([], "--set", help="override a config field: key=value (repeatable)"),
    protocol: Optional[str] = typer.Option(None, help="split protocol: picard | swiecicki (default: picard)"),
    split_option: list[str] = typer.Option([], "--split-option",
                                           help="override a split-definition field: key=value (repeatable)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    checkpoint: Optional[Path] = typer.Option(None, help="saved model dir, or a dir of official gen_*.pt/dis_*.pt"),
    out: Path = typer.Option(Path("runs"), help="runs directory (a run resumes when started again)"),
    split: Optional[str] = typer.Option(None, help="split to score (default: the dataset's test split)"),
    cache: Optional[Path] = typer.Option(None, help="cache dir (default $ADBENCH_CACHE or ~/.cache/adbench_dbt)"),
    breast_only: bool = typer.Option(False, help="AUROC/AP over breast pixels only (default: whole slice, PICARD)"),
    leaderboard: Optional[Path] = typer.Option(None, help="also merge the rows into this leaderboards dir"),
    overlays: bool = typer.Option(True, help="write a PNG overlay per slice"),
    precision: Optional[str] = PRECISION_OPTION,
    channels_last: bool = CHANNELS_LAST_OPTION,
    compile_: bool = COMPILE_OPTION,
    cuda_graphs: bool = CUDA_GRAPHS_OPTION,
    auto_batch: bool = AUTO_BATCH_OPTION,
) -> None:
    """Fit (or load) a method, score every test slice, write heatmaps, metrics, overlays and a summary."""
    from adbench_dbt import distributed
    from adbench_dbt.leaderboard import merge, print_table, rows_from_summary
    from adbench_dbt.runner import RunSpec, run as run_benchmark

    split_options = parse_overrides(split_option)
    if protocol is not None:
        split_options["protocol"] = protocol
    overrides = parse_overrides(set_) | execution_overrides(precision, channels_last, compile_, cuda_graphs, auto_batch)
    spec = RunSpec(method=method, dataset=dataset, profile=profile, overrides=overrides, split=split,
                   split_options=split_options, device=device, checkpoint=str(checkpoint) if checkpoint else None,
                   out=str(out), cache=str(cache) if cache else None, breast_only=breast_only, overlays=overlays)
    summary = run_benchmark(spec)
    if distributed.rank() != 0:
        return
    import pandas as pd

    table = pd.DataFrame(rows_from_summary(summary))
    if leaderboard is not None:
        merge(leaderboard, summary.dataset, [summary])
    print_table(table, f"{summary.dataset} · {summary.slices} slices · {summary.run_dir}", console)


@app.command()
def methods() -> None:
    """List the registered methods: name, paper, score variants, profiles, notes."""
    from adbench_dbt.registry import available_methods

    table = Table(title="registered methods")
    for column in ("name", "paper", "variants", "profiles", "notes"):
        table.add_column(column, overflow="fold")
    for name, cls in available_methods().items():
        table.add_row(name, cls.paper, ", ".join(cls.variants), ", ".join(cls.profiles()), cls.notes)
    console.print(table)


@app.command("leaderboard")
def leaderboard_cmd(
    runs: Path = typer.Option(Path("runs"), help="directory searched for run summaries"),
    out: Path = typer.Option(Path("leaderboards"), help="where <dataset>.csv and .md are written"),
    dataset: Optional[str] = typer.Option(None, help="only this dataset tag"),
) -> None:
    """Merge run summaries into leaderboards/<dataset>.csv and .md and print them."""
    from adbench_dbt.leaderboard import collect_summaries, merge, print_table

    found, rejected = collect_summaries(runs)
    for message in rejected:
        errors_console.print(f"[yellow]not used:[/] {escape(message)}", highlight=False)
    if dataset:
        found = {k: v for k, v in found.items() if k == dataset}
    if not found:
        raise ConfigError(f"--runs {runs}: no usable run summaries (summary.json)"
                          + (f" for dataset {dataset!r}" if dataset else ""))
    for tag, summaries in found.items():
        table = merge(out, tag, summaries)
        print_table(table, f"{tag} ({out / (tag + '.csv')})", console)


@app.command("detect")
def detect_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="finished run directories (runs/<dataset>/<run>)"),
    set_: list[str] = typer.Option([], "--set", help="detection rule field key=value (sigma, min_distance, box, "
                                                     "box_size, region_level, max_boxes, depth, breast_only)"),
    cache: Optional[Path] = typer.Option(None, help="slice cache the run used (default: the one in run.json)"),
) -> None:
    """From saved heatmaps, without scoring again: detections, AUPRO and hit rate per slice, RUN_DIR/detection/
    (predictions.csv, labels.csv, boxes.csv, metrics.json) and an up-to-date summary.json."""
    from pydantic import ValidationError

    from adbench_dbt.detection import DetectionConfig
    from adbench_dbt.redetect import redetect

    try:
        config = DetectionConfig(**parse_overrides(set_))
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"--set {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    for run_dir in run_dirs:
        summary = redetect(run_dir, cache=cache, config=config)
        for variant, m in summary.variants.items():
            d = m.detection
            figures = (f"sens@2FP(all) {d.sensitivity_at_2_fps_all:.3f}, mean sens 1-4FP(positive) "
                       f"{d.mean_sensitivity_positive:.3f}" if d else "no detection figures")
            aupro = f"{m.aupro:.3f}" if m.aupro is not None else "–"
            hits = f"{m.hit_rate:.2f}" if m.hit_rate is not None else "–"
            console.print(f"{escape(str(run_dir))} · {variant}: {figures}; AUPRO@0.3 {aupro}; hit rate {hits}",
                          highlight=False)
        console.print(f"wrote {escape(str(Path(run_dir) / 'detection'))}/ and summary.json", highlight=False)
    from adbench_dbt.evaluation import SCORED_ONLY_NOTE

    console.print(f"note: {SCORED_ONLY_NOTE}", highlight=False)


@app.command("evaluate")
def evaluate_cmd(
    predictions: Path = typer.Option(..., help="DBTex predictions CSV (StudyUID, View, X, Y, Z, Width, Height, "
                                               "Depth, Score)"),
    labels: Path = typer.Option(..., help="official labels table (the volumes evaluated)"),
    boxes: Path = typer.Option(..., help="official boxes table"),
) -> None:
    """Score any predictions CSV with the official BCS-DBT / DBTex rule (as `duke_dbt_data.evaluate`)."""
    import json

    from adbench_dbt.froc import evaluate, read_official_tables, read_predictions

    label_table, box_table = read_official_tables(labels, boxes)
    result, _ = evaluate(label_table, box_table, read_predictions(predictions))
    typer.echo(json.dumps(result, indent=2))


@app.command("compare")
def compare_cmd(
    run_a: Path = typer.Argument(..., help="run directory A"),
    run_b: Path = typer.Argument(..., help="run directory B"),
    variant_a: Optional[str] = typer.Option(None, help="score variant of A (default: its first)"),
    variant_b: Optional[str] = typer.Option(None, help="score variant of B (default: its first)"),
    seed: int = typer.Option(0, help="bootstrap seed"),
) -> None:
    """Paired bootstrap over slices (the same resampled slices for both) of A - B in mean pixel AUROC, AP, AUPRO."""
    from adbench_dbt.compare import compare, load_run

    a, b = load_run(run_a, variant_a), load_run(run_b, variant_b)
    table = Table(title=f"A = {a.label}  vs  B = {b.label}  (paired bootstrap over slices, 2000 resamples)")
    for column in ("metric", "A", "B", "A - B", "95% CI", "p (two-sided)", "slices"):
        table.add_column(column)
    for d in compare(a, b, seed=seed):
        table.add_row(d.metric, f"{d.a:.4f}", f"{d.b:.4f}", f"{d.difference:+.4f}", f"[{d.low:+.4f}, {d.high:+.4f}]",
                      f"{d.p_value:.4f}", str(d.slices))
    console.print(table)


@app.command("report")
def report_cmd(
    runs: Path = typer.Option(Path("runs"), help="directory searched for run summaries"),
    dataset: str = typer.Option("phantom-demo", help="dataset tag (phantom-demo, phantom-tiny, bcs-dbt)"),
    out: Optional[Path] = typer.Option(None, help="output directory (default: reports/<dataset>)"),
) -> None:
    """One self-contained static HTML page (+ PNG figures): leaderboard, ROC/PR, FROC, per-slice AUROC, speed,
    and a gallery of every test slice with each method's heatmap."""
    from adbench_dbt.report import build_report

    page = build_report(runs, dataset, out or Path("reports") / dataset)
    console.print(f"wrote {escape(str(page))}", highlight=False)


@app.command()
def fidelity(
    run_dir: Path = typer.Argument(..., help="a finished run that fitted its own model (its heatmaps are the reference)"),
    set_: list[str] = typer.Option([], "--set", help="the mode to check, e.g. precision=bf16 (repeatable)"),
    slices: int = typer.Option(30, min=1, help="evenly spaced test slices to re-score"),
    device: str = typer.Option("cpu", help="cpu | cuda"),
    out: Path = typer.Option(Path("docs/precision-fidelity.csv"), help="table to merge the rows into"),
) -> None:
    """Re-score a run's slices in another mode; per slice Spearman against its heatmaps and the AUROC difference."""
    from adbench_dbt.fidelity import fidelity as measure, merge_fidelity

    overrides = parse_overrides(set_)
    if not overrides:
        raise ConfigError("fidelity: give the mode to check with --set, e.g. --set precision=bf16")
    rows = measure(run_dir, overrides, slices, device)
    merge_fidelity(out, rows)
    import pandas as pd

    console.print(pd.DataFrame(rows)[["method", "variant", "mode", "spearman_min", "slices_below_bar",
                                      "auroc_difference", "reference_max_abs_diff", "passes"]].to_string(index=False))


@app.command()
def bench(
    method: str = typer.Option("engine", help="method to time, or 'engine' for the harness overhead alone"),
    profile: str = typer.Option("paper", help="method profile"),
    preset: str = typer.Option("full", help="phantom preset whose first test slice is timed"),
    set_: list[str] = typer.Option([], "--set", help="config override key=value (repeatable)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    repeats: int = typer.Option(3, min=1, help="timed repetitions (median reported)"),
    windows: Optional[int] = typer.Option(None, min=1, help="time this many windows (those with the most tissue) "
                                          "instead of the whole slice, for methods too slow to run a slice; "
                                          "s_per_slice is then extrapolated"),
    out: Optional[Path] = typer.Option(None, help="benchmark table to merge the row into (default "
                                       "leaderboards/bench.csv, with --train leaderboards/bench-train.csv)"),
    cache: Optional[Path] = typer.Option(None, help="cache dir"),
    train: bool = typer.Option(False, "--train", help="time training instead of scoring: the method's fit on the "
                               "preset's training slices, steps/s and samples/s (modes via --set train_precision=, "
                               "train_channels_last=, train_compile=, loader_workers=)"),
    warmup_steps: int = typer.Option(3, help="with --train: untimed training steps first"),
    steps: int = typer.Option(10, help="with --train: timed training steps"),
    suite: Optional[str] = typer.Option(None, help="run a named suite of cases instead of one method: gpu"),
    dry_run: bool = typer.Option(False, "--dry-run", help="with --suite: smoke profiles, 2 windows, eager, one "
                                 "repeat (checks the suite on any machine in seconds)"),
    precision: Optional[str] = PRECISION_OPTION,
    channels_last: bool = CHANNELS_LAST_OPTION,
    compile_: bool = COMPILE_OPTION,
    cuda_graphs: bool = CUDA_GRAPHS_OPTION,
    auto_batch: bool = AUTO_BATCH_OPTION,
    against_official_picard: Optional[Path] = typer.Option(
        None, help="checkout of the official PICARD code: time its generator against ours (same weights, input and "
        "dropout; --windows windows x M completions, fp32 and bf16 autocast) instead of a method"),
    fit: bool = typer.Option(False, "--fit", help="also time fit() on the preset's training slices (fit_s)"),
) -> None:
    """Time one method on one phantom slice (random weights): s/slice, ms/patch, windows/s (and, with --fit, the
    fit's seconds); or, with --train, its training throughput."""
    from adbench_dbt.bench import (SUITES, bench_row, build_for_bench, fit_for_bench, merge_bench, run_suite,
                                   time_slice, time_windows)
    from adbench_dbt.datasets_resolve import open_dataset
    from adbench_dbt.timing import resolve_device

    dev = resolve_device(device)
    if suite is not None:
        if suite not in SUITES:
            raise ConfigError(f"--suite {suite!r}: expected one of {sorted(SUITES)}")
        data = open_dataset(f"phantom:{preset}", cache=cache)
        rows = run_suite(SUITES[suite], dev, data.dataset, repeats, dry_run)
        table = merge_bench(out or Path("leaderboards/bench.csv"), rows)
        console.print(table.tail(len(rows))[["method", "profile", "s_per_slice", "tflops", "pct_of_peak",
                                              "rank_vs_fp32"]].to_string(index=False))
        return
    overrides = parse_overrides(set_) | execution_overrides(precision, channels_last, compile_, cuda_graphs, auto_batch)
    if against_official_picard is not None:
        from adbench_dbt.bench_generator import bench_against_official, load_official_networks

        networks = load_official_networks(against_official_picard)  # a bad DIR fails before any data is read
        test = open_dataset(f"phantom:{preset}", cache=cache).dataset.split("test")[0]
        rows = bench_against_official(against_official_picard, profile, overrides, test, windows or 1, repeats, dev,
                                      networks)
        table = merge_bench(out or Path("leaderboards/bench.csv"), rows)
        console.print(table.tail(len(rows)).T.to_string(header=False))
        return
    data = open_dataset(f"phantom:{preset}", cache=cache)
    if train:
        from adbench_dbt.bench_train import merge_train_bench, time_training, train_row

        timing = time_training(method, profile, overrides, dev, data.dataset.split("train"), warmup_steps, steps)
        measured = train_row(method, profile, overrides, timing)
        merge_train_bench(out or Path("leaderboards/bench-train.csv"), [measured])
        console.print("\n".join(f"{k:<18} {v}" for k, v in measured.items()), highlight=False)
        return
    slices = data.dataset.split("train")
    model, fit_s = (fit_for_bench(method, profile, overrides, dev, slices) if fit
                    else (build_for_bench(method, profile, overrides, dev, slices), None))
    test = data.dataset.split("test")[0]
    timing = time_slice(model, test, repeats)[0] if windows is None else time_windows(model, test, windows, repeats)
    row = {**bench_row(method, profile, overrides, model, timing), "fit_s": fit_s}
    table = merge_bench(out or Path("leaderboards/bench.csv"), [row])
    console.print(table.tail(1).T.to_string(header=False))


if __name__ == "__main__":
    main()
