"""The report's figures (matplotlib, Agg backend, PNG): pooled-pixel ROC and PR, FROC, per-slice AUROC, speed vs
AUROC, and the gallery thumbnails (slice with boxes | each method's heatmap overlay on one colour scale per row)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from adbench_dbt.evaluation import load_curves  # noqa: E402
from adbench_dbt.io import atomic_path  # noqa: E402
from adbench_dbt.report.rows import Row, label_mask  # noqa: E402

POOLED_PIXELS = 2_000_000  # pooled curves use an evenly strided subsample of at most this many pixels per row
THUMB_ROWS = 240
DPI = 110


def style(k: int) -> dict:
    """Colour and dash of row k: 20 colours, then the dash changes, so eleven or more rows stay distinct."""
    return {"color": matplotlib.colormaps["tab20"](k % 20), "ls": ("-", "--", ":", "-.")[(k // 20) % 4]}


def _save(fig: plt.Figure, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _pooled(row: Row) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels of every slice of the row, pooled, strided to at most POOLED_PIXELS."""
    total = sum(r.shape[0] * r.shape[1] for r in row.records)
    step = max(1, int(np.ceil(total / POOLED_PIXELS)))
    scores = [row.heatmap(r.id).ravel()[::step] for r in row.records]
    labels = [label_mask(r).ravel()[::step] for r in row.records]
    return np.concatenate(scores), np.concatenate(labels)


def _thin(x: np.ndarray, y: np.ndarray, points: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """At most `points` evenly chosen points of a curve (a figure 500 px wide cannot show more), ends kept."""
    if len(x) <= points:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))
    return x[keep], y[keep]


def roc_pr(rows: Sequence[Row], out: Path) -> tuple[str, str]:
    roc_fig, roc_ax = plt.subplots(figsize=(5.2, 4.4))
    pr_fig, pr_ax = plt.subplots(figsize=(5.2, 4.4))
    for k, row in enumerate(rows):
        scores, labels = _pooled(row)
        if labels.all() or not labels.any():
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        precision, recall, _ = precision_recall_curve(labels, scores)
        roc_ax.plot(*_thin(fpr, tpr), lw=1.3, label=row.name, **style(k))
        pr_ax.step(*_thin(recall, precision), where="post", lw=1.3, label=row.name, **style(k))
    roc_ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    roc_ax.set(xlabel="false positive rate (pixels)", ylabel="true positive rate", title="ROC, pooled pixels")
    pr_ax.set(xlabel="recall (pixels)", ylabel="precision", title="Precision-recall, pooled pixels")
    for ax, where in ((roc_ax, "lower right"), (pr_ax, "upper right")):
        ax.legend(fontsize=6, loc=where)  # "best" searches every curve point: seconds per figure
        ax.grid(alpha=0.3)
    return _save(roc_fig, out / "roc.png"), _save(pr_fig, out / "pr.png")


def froc(rows: Sequence[Row], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for k, row in enumerate(rows):
        curves = load_curves(row.run_dir).get(row.variant)
        if curves:
            ax.plot(curves["positive"].fps, curves["positive"].sensitivity, lw=1.3, marker=".", ms=4,
                    label=row.name, **style(k))
    ax.set(xlabel="false marks per volume (volumes with boxes)", ylabel="sensitivity (boxes)", xlim=(0, 4),
           ylim=(0, 1.02), title="FROC (official DBTex rule)")
    ax.legend(fontsize=6, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, out / "froc.png")


def slice_auroc(rows: Sequence[Row], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(max(5.2, 0.55 * len(rows) + 2), 4.4))
    values = [row.per_slice("auroc") for row in rows]
    values = [v[np.isfinite(v)] for v in values]
    ax.boxplot(values, showfliers=False)
    rng = np.random.default_rng(0)
    for i, v in enumerate(values, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=6, alpha=0.6, color="tab:blue")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(1, len(rows) + 1), [r.name for r in rows], rotation=40, ha="right", fontsize=6)
    ax.set(ylabel="pixel AUROC per slice", title="Per-slice pixel AUROC")
    return _save(fig, out / "slice_auroc.png")


def speed(rows: Sequence[Row], out: Path) -> tuple[str, list[str]]:
    """Scatter of ms/patch (log) vs mean AUROC; the names of rows without windows (no ms/patch) are returned."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    left_out = []
    for k, row in enumerate(rows):
        ms, auroc = row.summary.timing.ms_per_patch, row.figures.auroc
        if ms is None or auroc is None:
            left_out.append(row.name)
            continue
        ax.scatter(ms, auroc, s=22, color=style(k)["color"])
        ax.annotate(row.name, (ms, auroc), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide on a short range
    ax.set(xlabel="ms per patch (log)", ylabel="mean pixel AUROC", title="Speed vs AUROC")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out / "speed.png"), left_out


def colour_scale(row: Row) -> tuple[float, float]:
    """One scale per row for the whole gallery: 1st and 99.9th percentiles of its pooled heatmaps."""
    scores, _ = _pooled(row)
    lo, hi = np.percentile(scores, [1.0, 99.9])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _thumbnail(rgb: np.ndarray, boxes: Sequence[Sequence[int]], path: Path) -> str:
    height = rgb.shape[0]
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    for x, y, w, h in boxes:
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=(0, 255, 0), width=max(1, height // 200))
    if height > THUMB_ROWS:
        image = image.resize((image.width * THUMB_ROWS // height, THUMB_ROWS), Image.Resampling.BILINEAR)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return f"{path.parent.name}/{path.name}"


def gallery_images(image: np.ndarray, slice_id: str, boxes: Sequence[Sequence[int]], rows: Sequence[Row],
                   scales: Sequence[tuple[float, float]], out: Path) -> list[str]:
    """[slice with boxes, overlay of row 0, overlay of row 1, ...] as relative paths."""
    gray = np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    paths = [_thumbnail(gray, boxes, out / f"{slice_id}.png")]
    cmap = matplotlib.colormaps["inferno"]
    for k, (row, (lo, hi)) in enumerate(zip(rows, scales)):
        heat = np.clip((row.heatmap(slice_id) - lo) / (hi - lo), 0, 1)
        colour = (cmap(heat)[..., :3] * 255).astype(np.float32)
        blend = (0.35 * gray + 0.65 * colour).astype(np.uint8)
        paths.append(_thumbnail(blend, boxes, out / f"{slice_id}_{k}.png"))
    return paths
