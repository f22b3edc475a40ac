"""Leaderboards: rows come only from run summaries, merged into `leaderboards/<dataset>.csv` and `.md`.

One row per (method, variant, profile, split fingerprint); a newer run of the same key replaces the older row.
Results are comparable only between rows with the same fingerprint (the same slices, the same boxes). Within a
fingerprint, `vs_best` says whether a row's mean pixel AUROC is distinguishable from the best row's by a paired
bootstrap over slices (95%, `adbench_dbt.compare`): `best`, `tied` (not distinguishable), `below`, or empty when a
run directory is no longer there to read the per-slice values from.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from rich.console import Console
from rich.table import Table

from adbench_dbt.compare import distinguishable, load_run
from adbench_dbt.errors import RunError
from adbench_dbt.io import atomic_path, write_text
from adbench_dbt.markdown import table_lines
from adbench_dbt.summary import RunSummary

KEY = ["method", "variant", "profile", "fingerprint"]
COLUMNS = KEY[:3] + ["auroc", "auroc_low", "auroc_high", "ap", "ap_low", "ap_high", "auroc_breast",
                     "auroc_breast_low", "auroc_breast_high", "inout_ratio", "inout_std",
                     "aupro", "aupro_low", "aupro_high", "hit_rate", "hit_rate_low", "hit_rate_high",
                     "sens_2fp_all", "mean_sens_positive", "vs_best",
                     "ms_per_patch", "s_per_slice", "fit_s", "slices", "device", "precision", "batch_size",
                     "fingerprint", "split", "harness_revision", "date", "run_dir"]


INTEGER_COLUMNS = ("slices", "batch_size")


def profile_label(profile: str, overrides: dict[str, Any]) -> str:
    """The profile plus any --set overrides ('demo stride=16'): an overridden run never replaces the profile's row."""
    return " ".join([profile, *(f"{k}={_short(v)}" for k, v in sorted((overrides or {}).items()))])


def _short(value: Any) -> Any:
    """A path-valued override by its last two components: rows stay readable and name no machine's folders
    (the run's identity holds the file's contents anyway)."""
    if isinstance(value, str) and "/" in value:
        return "/".join(Path(value).parts[-2:])
    return value


def rows_from_summary(summary: RunSummary) -> list[dict[str, Any]]:
    timing = summary.timing
    rows = []
    for variant, m in summary.variants.items():
        rows.append({
            "method": summary.method, "variant": variant, "profile": profile_label(summary.profile, summary.overrides),
            "auroc": m.auroc, "auroc_low": m.auroc_ci[0], "auroc_high": m.auroc_ci[1],
            "ap": m.ap, "ap_low": m.ap_ci[0], "ap_high": m.ap_ci[1],
            "auroc_breast": m.auroc_breast, "auroc_breast_low": m.auroc_breast_ci[0],
            "auroc_breast_high": m.auroc_breast_ci[1],
            "inout_ratio": m.inout_ratio, "inout_std": m.inout_ratio_std,
            "aupro": m.aupro, "aupro_low": m.aupro_ci[0], "aupro_high": m.aupro_ci[1],
            "hit_rate": m.hit_rate, "hit_rate_low": m.hit_rate_ci[0], "hit_rate_high": m.hit_rate_ci[1],
            "sens_2fp_all": m.detection.sensitivity_at_2_fps_all if m.detection else None,
            "mean_sens_positive": m.detection.mean_sensitivity_positive if m.detection else None,
            "vs_best": None,
            "ms_per_patch": timing.ms_per_patch, "s_per_slice": timing.s_per_slice,
            "fit_s": timing.fit_seconds, "slices": m.slices_scored, "device": summary.device,
            "precision": summary.precision, "batch_size": summary.batch_size,
            "fingerprint": summary.fingerprint, "split": summary.split,
            "harness_revision": summary.harness_revision, "date": summary.date, "run_dir": summary.run_dir,
        })
    return rows


def collect_summaries(runs: Path) -> tuple[dict[str, list[RunSummary]], list[str]]:
    """({dataset tag: [summary, ...]} for every readable summary.json below `runs`, oldest first;
    one message per summary that could not be used: old format, foreign file)."""
    found: dict[str, list[RunSummary]] = {}
    rejected: list[str] = []
    for path in sorted(Path(runs).glob("**/summary.json"), key=lambda p: p.stat().st_mtime):
        try:
            summary = RunSummary.read(path)
        except RunError as err:
            rejected.append(str(err))
            continue
        found.setdefault(summary.dataset, []).append(summary)
    return found, rejected


def merge(out_dir: Path, dataset: str, summaries: Iterable[RunSummary]) -> pd.DataFrame:
    """Merge rows into leaderboards/<dataset>.csv (+ .md); rows of the same key are replaced by newer ones."""
    csv_path = Path(out_dir) / f"{dataset}.csv"
    old = pd.read_csv(csv_path, dtype={"fingerprint": str}) if csv_path.exists() else pd.DataFrame(columns=COLUMNS)
    new = pd.DataFrame([row for s in summaries for row in rows_from_summary(s)], columns=COLUMNS)
    frames = [df for df in (old, new) if not df.empty]
    table = pd.concat(frames, ignore_index=True) if frames else new
    table = table.drop_duplicates(subset=KEY, keep="last")
    for column in INTEGER_COLUMNS:  # window counts are integers, also when some rows have none
        table[column] = pd.to_numeric(table[column]).round().astype("Int64")
    table = table.sort_values(["fingerprint", "auroc"], ascending=[True, False], kind="stable")[COLUMNS]
    table["vs_best"] = mark_best(table)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    write_text(csv_path.with_suffix(".md"), to_markdown(table, dataset))
    return table


def mark_best(table: pd.DataFrame) -> list[str | None]:
    """Per row: 'best' (highest AUROC of its fingerprint), 'tied' / 'below' (paired bootstrap against the best
    row), None when either run directory is gone (the old value is kept then)."""
    marks: list[str | None] = []
    runs: dict[tuple[str, str], Any] = {}

    def run_of(row: dict[str, Any]) -> Any:
        key = (str(row.get("run_dir")), str(row["variant"]))
        if key not in runs:
            try:
                runs[key] = load_run(key[0], key[1]) if isinstance(row.get("run_dir"), str) else None
            except RunError:
                runs[key] = None
        return runs[key]

    rows = table.to_dict("records")
    best_of: dict[str, dict[str, Any]] = {}
    for row in rows:  # sorted by AUROC within each fingerprint: the first row is the best
        if row["fingerprint"] not in best_of and not _missing(row["auroc"]):
            best_of[row["fingerprint"]] = row
    for row in rows:
        best = best_of.get(row["fingerprint"])
        if best is None or _missing(row["auroc"]):
            marks.append(None)
        elif row is best:
            marks.append("best")
        else:
            a, b = run_of(row), run_of(best)
            old = row.get("vs_best")
            marks.append(("below" if distinguishable(a, b) else "tied") if a and b else
                         (None if _missing(old) else old))
    return marks


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _display_rows(table: pd.DataFrame) -> list[list[str]]:
    rows = []
    for r in table.to_dict("records"):
        rows.append([r["method"], r["variant"], r["profile"],
                     f"{_fmt(r['auroc'])} [{_fmt(r['auroc_low'])}, {_fmt(r['auroc_high'])}]",
                     f"{_fmt(r['ap'], 4)}",
                     f"{_fmt(r['auroc_breast'])} [{_fmt(r['auroc_breast_low'])}, {_fmt(r['auroc_breast_high'])}]",
                     _fmt(r["inout_ratio"], 2),
                     f"{_fmt(r['aupro'])} [{_fmt(r['aupro_low'])}, {_fmt(r['aupro_high'])}]",
                     f"{_fmt(r['hit_rate'], 2)} [{_fmt(r['hit_rate_low'], 2)}, {_fmt(r['hit_rate_high'], 2)}]",
                     _fmt(r["sens_2fp_all"], 2), _fmt(r["mean_sens_positive"], 2),
                     {"best": "best", "tied": "≈ best"}.get(str(r["vs_best"]), ""),
                     _fmt(r["ms_per_patch"], 3),
                     _fmt(r["s_per_slice"], 2), _fmt(r["slices"]), str(r["device"]), str(r["precision"]),
                     _fmt(r["batch_size"]), str(r["fingerprint"])[:12], str(r["harness_revision"]), str(r["date"])])
    return rows


HEADERS = ["method", "variant", "profile", "pixel AUROC [95% CI]", "pixel AP", "breast AUROC [95% CI]", "in/out",
           "AUPRO@0.3 [95% CI]", "hit rate [95% CI]", "sens@2FP", "mean sens 1-4FP", "vs best", "ms/patch", "s/slice",
           "slices", "device", "precision", "batch", "split fingerprint", "revision", "date"]


def to_markdown(table: pd.DataFrame, dataset: str) -> str:
    lines = [f"# Leaderboard: {dataset}", "",
             "Generated by `adbench leaderboard` from run summaries; never edited by hand. Pixel AUROC / AP are "
             "means over test slices (whole slice scored, PICARD's protocol); breast AUROC = the same over breast "
             "pixels only (finding lesions, not the breast against black background); in/out = mean heatmap inside "
             "boxes / outside, over breast pixels (Swiecicki 2021); AUPRO@0.3 = MVTec AD per-region overlap up to "
             "FPR 0.3 (boxes as regions); hit rate = slices whose heatmap maximum in the breast lies in a box; "
             "sens@2FP = official DBTex sensitivity at 2 false marks per volume (all volumes), mean sens 1-4FP = "
             "its mean at 1-4 FPs per volume over volumes with boxes (only scored slices carry marks); "
             "vs best: `≈ best` = pixel AUROC not distinguishable from the best row of its fingerprint "
             "(paired bootstrap over slices, 95%). Compare rows only within the same split fingerprint.", ""]
    return "\n".join(lines + table_lines(HEADERS, _display_rows(table))) + "\n"


TERMINAL_COLUMNS = ["method", "variant", "profile", "pixel AUROC [95% CI]", "pixel AP", "breast AUROC [95% CI]",
                    "in/out", "AUPRO@0.3 [95% CI]", "sens@2FP", "vs best", "ms/patch",
                    "s/slice", "slices"]


def print_table(table: pd.DataFrame, title: str, console: Console | None = None) -> None:
    """The leading columns only (a terminal is narrow); the CSV and markdown carry device, revision and date."""
    rich_table = Table(title=title, show_lines=False)
    keep = [HEADERS.index(c) for c in TERMINAL_COLUMNS]
    for header in TERMINAL_COLUMNS:
        rich_table.add_column(header, no_wrap=True)
    for row in _display_rows(table):
        rich_table.add_row(*(row[i] for i in keep))
    (console or Console(width=160)).print(rich_table)
