"""The anomalib README's measured tables, printed from the committed result files (never typed):
`python -m adbench_dbt.methods.anomalib.tables`.

Scoring cost per window and slice from `leaderboards/bench.csv`; training cost per step from
`leaderboards/bench-train.csv`, with the paper profile's whole fit extrapolated as its steps x the measured time per
step (labelled so); reduced-precision fidelity of the demo runs from `docs/precision-fidelity.csv`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from adbench_dbt.fidelity import SPEARMAN_BAR
from adbench_dbt.markdown import table_lines
from adbench_dbt.registry import get_method

from .models import MODELS

ROOT = Path(__file__).resolve().parents[2]
NAMES = [spec.name for spec in MODELS]


def _rows(path: Path) -> pd.DataFrame:
    table = pd.read_csv(ROOT / path)
    return table[table.method.isin(NAMES)]


def scoring() -> list[str]:
    def cells(r: Any) -> list[str]:
        extrapolated = " (extrapolated)" if str(r.extrapolated) == "True" else ""
        return [r.method, r.profile, f"{r.ms_per_patch:.0f}", f"{r.s_per_slice:.1f}{extrapolated}",
                f"{r.flop_per_window / 1e9:.1f}", f"{r.tflops:.2f}", f"{r.pct_of_peak:.0f}",
                "" if pd.isna(r.fit_s) else f"{r.fit_s:.1f}", r.device]

    return table_lines(["method", "profile", "ms / window", "s / slice", "GFLOP / window", "TFLOP/s", "% of peak",
                        "fit s", "device"], map(cells, _rows(Path("leaderboards/bench.csv")).itertuples()))


def training() -> list[str]:
    def cells(r: Any) -> list[str]:
        steps = get_method(r.method).profiles()["paper"]["steps"]
        hours = steps * r.ms_per_step / 1000 / 3600
        return [r.method, r.profile, f"{r.ms_per_step:.0f}", f"{r.samples_per_step:.0f}", f"{r.samples_per_s:.2f}",
                str(steps), f"{hours:.1f} h"]

    return table_lines(["method", "profile", "ms / step", "windows / step", "windows / s", "paper steps",
                        "paper fit, extrapolated"],
                       map(cells, _rows(Path("leaderboards/bench-train.csv")).itertuples()))


def fidelity() -> list[str]:
    def cells(r: Any) -> list[str]:
        return [r.method, r.mode, str(r.slices), f"{r.spearman_min:.4f}", f"{r.spearman_median:.4f}",
                str(r.slices_below_bar), f"{r.auroc_run:.4f} -> {r.auroc_mode:.4f}", str(r.passes)]

    return table_lines(["method", "mode", "slices", "Spearman min", "median", f"slices below {SPEARMAN_BAR:g}",
                        "AUROC fp32 -> mode", "passes"],
                       map(cells, _rows(Path("docs/precision-fidelity.csv")).itertuples()))


def main() -> None:
    for title, lines in (("scoring (leaderboards/bench.csv)", scoring()),
                         ("training (leaderboards/bench-train.csv)", training()),
                         ("reduced precision (docs/precision-fidelity.csv)", fidelity())):
        print(f"{title}:\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
