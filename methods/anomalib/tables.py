"""The anomalib README's measured tables, printed from the committed result files (never typed):
`python -m adbench_dbt.methods.anomalib.tables`.

Scoring cost per window and slice from `leaderboards/bench.csv`; training cost per step from
`leaderboards/bench-train.csv`, with the paper profile's whole fit extrapolated as its steps x the measured time per
step (labelled so); reduced-precision fidelity of the demo runs from `docs/precision-fidelity.csv`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from adbench_dbt.registry import get_method

from .models import MODELS

ROOT = Path(__file__).resolve().parents[2]
NAMES = [spec.name for spec in MODELS]


def _rows(path: Path) -> pd.DataFrame:
    table = pd.read_csv(ROOT / path)
    return table[table.method.isin(NAMES)]


def scoring() -> list[str]:
    lines = ["| method | profile | ms / window | s / slice | GFLOP / window | TFLOP/s | % of peak | fit s | device |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in _rows(Path("leaderboards/bench.csv")).itertuples():
        fit = "" if pd.isna(r.fit_s) else f"{r.fit_s:.1f}"
        extrapolated = " (extrapolated)" if r.extrapolated is True or str(r.extrapolated) == "True" else ""
        lines.append(f"| {r.method} | {r.profile} | {r.ms_per_patch:.0f} | {r.s_per_slice:.1f}{extrapolated} | "
                     f"{r.flop_per_window / 1e9:.1f} | {r.tflops:.2f} | {r.pct_of_peak:.0f} | {fit} | {r.device} |")
    return lines


def training() -> list[str]:
    lines = ["| method | profile | ms / step | windows / step | windows / s | paper steps | paper fit, extrapolated |",
             "|---|---|---|---|---|---|---|"]
    for r in _rows(Path("leaderboards/bench-train.csv")).itertuples():
        steps = get_method(r.method).profiles()["paper"]["steps"]
        hours = steps * r.ms_per_step / 1000 / 3600
        lines.append(f"| {r.method} | {r.profile} | {r.ms_per_step:.0f} | {r.samples_per_step:.0f} | "
                     f"{r.samples_per_s:.2f} | {steps} | {hours:.1f} h |")
    return lines


def fidelity() -> list[str]:
    lines = ["| method | mode | slices | Spearman min | median | slices below 0.999 | AUROC fp32 -> mode | passes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in _rows(Path("docs/precision-fidelity.csv")).itertuples():
        lines.append(f"| {r.method} | {r.mode} | {r.slices} | {r.spearman_min:.4f} | {r.spearman_median:.4f} | "
                     f"{r.slices_below_bar} | {r.auroc_run:.4f} -> {r.auroc_mode:.4f} | {r.passes} |")
    return lines


def main() -> None:
    for title, lines in (("scoring (leaderboards/bench.csv)", scoring()),
                         ("training (leaderboards/bench-train.csv)", training()),
                         ("reduced precision (docs/precision-fidelity.csv)", fidelity())):
        print(f"{title}:\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
