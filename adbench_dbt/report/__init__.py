"""`adbench report`: one self-contained static HTML page (inline CSS and a few lines of inline JavaScript, images
beside it, nothing fetched from a network; it opens from a file:// URL) with the leaderboard, paired comparisons
against the best row, ROC / PR (pooled pixels), FROC, per-slice AUROC, speed vs AUROC and a sortable gallery."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from adbench_dbt.compare import compare, load_run
from adbench_dbt.io import write_text
from adbench_dbt.leaderboard import mark_best, rows_from_summary
from adbench_dbt.redetect import open_run_dataset
from adbench_dbt.report import figures
from adbench_dbt.report.page import render_page
from adbench_dbt.report.rows import Row, select_rows


def build_report(runs: str | Path, dataset: str, out: str | Path) -> Path:
    """Write `out/index.html` with `out/figures/*.png` and `out/gallery/*.png`; returns the page's path."""
    out = Path(out)
    rows, fingerprint = select_rows(Path(runs), dataset)
    fig_dir, gallery_dir = out / "figures", out / "gallery"
    roc, pr = figures.roc_pr(rows, fig_dir)
    plots = {"ROC (pooled pixels)": f"figures/{roc}", "Precision-recall (pooled pixels)": f"figures/{pr}",
             "FROC": f"figures/{figures.froc(rows, fig_dir)}",
             "Per-slice pixel AUROC": f"figures/{figures.slice_auroc(rows, fig_dir)}"}
    speed_png, no_speed = figures.speed(rows, fig_dir)
    plots["Speed vs AUROC"] = f"figures/{speed_png}"
    board = _leaderboard(rows)
    comparisons = _comparisons(rows)
    gallery = _gallery(rows, gallery_dir)
    page = render_page(dataset=dataset, fingerprint=fingerprint, rows=rows, board=board, comparisons=comparisons,
                       plots=plots, no_speed=no_speed, gallery=gallery)
    write_text(out / "index.html", page)
    return out / "index.html"


def _leaderboard(rows: list[Row]) -> pd.DataFrame:
    seen, records = set(), []
    for row in rows:
        if id(row.summary) not in seen:
            seen.add(id(row.summary))
            records += rows_from_summary(row.summary)
    table = pd.DataFrame(records).sort_values("auroc", ascending=False, kind="stable")
    table["vs_best"] = mark_best(table)
    return table


def _comparisons(rows: list[Row]) -> list[dict]:
    """Each row against the best row (first): paired bootstrap of the differences in AUROC, AP and AUPRO."""
    if len(rows) < 2:
        return []
    best = load_run(rows[0].run_dir, rows[0].variant)
    out = []
    for row in rows[1:]:
        diffs = compare(load_run(row.run_dir, row.variant), best)
        out.append({"name": row.name, "diffs": diffs})
    return out


def _gallery(rows: list[Row], gallery_dir: Path) -> list[dict]:
    dataset = open_run_dataset(json.loads((rows[0].run_dir / "run.json").read_text()), cache=None)
    slices = {sl.id: sl for sl in dataset.split(rows[0].summary.split)}
    scales = [figures.colour_scale(row) for row in rows]
    items = []
    for record in rows[0].records:
        image = slices[record.id].image
        paths = figures.gallery_images(image, record.id, record.boxes, rows, scales, gallery_dir)
        aurocs = [row.per_slice("auroc")[i] for row in rows for i, r in enumerate(row.records) if r.id == record.id]
        items.append({"id": record.id, "images": paths, "aurocs": aurocs, "boxes": len(record.boxes)})
    return items
