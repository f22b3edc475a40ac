"""Phantom study (issue 14 §5): is the embedded benchmark informative, and why do pixel-space completion errors
sit at or below chance inside the breast?

Three parts, each writing its own files (every number in docs/phantom-study.md comes from here):

  grid   breast AUROC of PICARD and DMSE (demo profile) against training iterations and generator width (`cnum`,
         critics left at the demo width). Runs go through the harness (`adbench_dbt.runner`, cached and resumable
         under --out, the same run directories as `adbench run --out runs/demo`); the non-demo points score every
         STEP-th test slice (a fixed subset) to fit a 2-core CPU; the demo point is read on the same subset (and
         on the full test split from its summary). -> docs/phantom-study.csv
  quality how good each study model's completions are: hole L1 on fixed normal and lesion windows against
         filling the hole with the mean of the known ring (added to docs/phantom-study.csv).
  data   what the pixels say: breast AUROC of trivial cues (intensity, local standard deviation, distance to the
         skin) and how the demo PICARD `mcd_image` heatmap relates to them. -> docs/phantom-study-data.csv
  report docs/phantom-study.md (tables from the two CSVs) and docs/phantom-study.png (plot + completions).
  tables prints the markdown tables that README.md and methods/*/README.md copy from
         leaderboards/phantom-demo.csv (not part of `all`).

Usage: python docs/phantom_study.py [grid|quality|data|report|all|tables] [--out runs/demo] [--only picard|dmse]
The plot needs matplotlib (`pip install matplotlib`; not a dependency of the harness).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from adbench_dbt.markdown import table_lines

DOCS = Path(__file__).resolve().parent
STEP = 3  # non-demo grid points score test slices 0, 3, 6, ... (51 of 151)
DEMO = {"iterations": 800, "cnum": 8}
# (method, iterations, cnum): cheap points first, the long ones last (the grid resumes where it stopped).
GRID = [("picard", 800, 8), ("dmse", 800, 8), ("picard", 200, 8), ("dmse", 200, 8), ("picard", 1600, 8),
        ("dmse", 1600, 8), ("picard", 800, 16), ("dmse", 800, 16), ("picard", 800, 4), ("dmse", 800, 4),
        ("picard", 3200, 8), ("dmse", 3200, 8)]
# PICARD's inference dropout on the demo model (no retraining: the demo run's saved model is the checkpoint).
DROPOUT = (0.0, 0.1, 0.25)
VARIANTS = {"picard": ("mcd_image", "mcd_feature"), "dmse": ("mse", "discr", "dmse")}
STUDY_CSV, DATA_CSV = DOCS / "phantom-study.csv", DOCS / "phantom-study-data.csv"


def _spec(method: str, iterations: int, cnum: int, out: str, dropout: float | None = None):
    from adbench_dbt.runner import RunSpec

    if dropout is None:
        return RunSpec(method=method, profile="demo", overrides={"iterations": iterations, "cnum": cnum}, out=out,
                       overlays=False)
    return RunSpec(method=method, profile="demo", overrides={"dropout": dropout}, out=out, overlays=False,
                   checkpoint=str(_demo_run_dir(out, method) / "model"))


def grid(out: str, only: str | None, point: str | None = None) -> None:
    from adbench_dbt.metrics import bootstrap_mean
    from adbench_dbt.runner import _fit, _score_slices, preflight
    from adbench_dbt.summary import read_slice_record

    rows = pd.read_csv(STUDY_CSV).to_dict("records") if STUDY_CSV.exists() else []
    done = {(r["method"], r["iterations"], r["cnum"], r["dropout"] if r.get("dropout_sweep") == True else None)  # noqa: E712
            for r in rows}
    points = [(m, i, c, None) for m, i, c in GRID]
    points[4:4] = [("picard", DEMO["iterations"], DEMO["cnum"], p) for p in DROPOUT]  # scoring only: early
    # the demo points last: their runs are the leaderboard runs (`adbench run`), which may still be scoring
    points = points[2:] + points[:2]
    if point:  # one grid point, method:iterations:cnum (a second process can take it)
        m, i, c = point.split(":")
        points = [(m, int(i), int(c), None)]
    for method, iterations, cnum, dropout in points:
        if (only and method != only) or (method, iterations, cnum, dropout) in done:
            continue
        started = time.perf_counter()
        spec = _spec(method, iterations, cnum, out, dropout)
        plan = preflight(spec)
        model = plan.model if plan.model is not None else _fit(plan)
        subset = plan.test[::STEP]
        _score_slices(model, subset, plan.run_dir, spec)
        records = [read_slice_record(plan.run_dir / "slices" / f"{sl.id}.json") for sl in subset]
        fit_path = plan.run_dir / "fit.json"  # a dropout point loads the demo model: no fit of its own
        fit = json.loads((fit_path if fit_path.exists() else _demo_run_dir(out, method) / "fit.json")
                         .read_text())["seconds"]
        full = plan.run_dir / "summary.json"
        full = json.loads(full.read_text()) if full.exists() else None
        for variant in VARIANTS[method]:
            values = np.array([np.nan if r.metrics[variant].auroc_breast is None else r.metrics[variant].auroc_breast
                               for r in records])
            stats = bootstrap_mean(values, seed=0)
            inout = np.nanmean([np.nan if r.metrics[variant].inout_ratio is None else r.metrics[variant].inout_ratio
                                for r in records])
            row = {"method": method, "variant": variant, "iterations": iterations, "cnum": cnum,
                   "dropout": getattr(plan.config, "dropout", None), "dropout_sweep": dropout is not None,
                   "demo": iterations == DEMO["iterations"] and cnum == DEMO["cnum"] and dropout is None,
                   "fit_s": round(fit, 1),
                   "slices": int(stats.n), "auroc_breast": round(stats.mean, 4), "low": round(stats.low, 4),
                   "high": round(stats.high, 4), "inout": round(float(inout), 3),
                   "auroc_breast_all_slices": (round(full["variants"][variant]["auroc_breast"], 4)
                                               if full else None),
                   "run": plan.run_dir.name}
            rows.append(row)
        _merge_rows(rows)
        print(f"{method} it={iterations} cnum={cnum} dropout={dropout}: {time.perf_counter() - started:.0f} s",
              flush=True)


def _quality_windows(test, window: int, hole: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed windows of the grid's test subset: normal tissue (fully in the breast, hole clear of every box) and
    lesion windows (centred on each box)."""
    rng = np.random.default_rng(seed)
    normal, lesion = [], []
    half = window // 2
    for sl in test[::STEP]:
        image, breast = sl.load()
        labels = sl.label_mask
        rows, cols = image.shape
        for x, y, w, h in sl.boxes:
            cy, cx = int(np.clip(y + h // 2, half, rows - half)), int(np.clip(x + w // 2, half, cols - half))
            if breast[cy - half: cy + half, cx - half: cx + half].mean() > 0.95:
                lesion.append(image[cy - half: cy + half, cx - half: cx + half])
        for _ in range(50):
            cy, cx = int(rng.integers(half, rows - half)), int(rng.integers(half, cols - half))
            inner = slice(cy - hole // 2 - 4, cy + hole // 2 + 4), slice(cx - hole // 2 - 4, cx + hole // 2 + 4)
            if breast[cy - half: cy + half, cx - half: cx + half].all() and not labels[inner].any():
                normal.append(image[cy - half: cy + half, cx - half: cx + half])
                if len(normal) % 4 == 0:
                    break
    return np.stack(normal).astype(np.float32), np.stack(lesion).astype(np.float32)


def quality(out: str) -> None:
    """Hole L1 (in [-1, 1] units, min over the M completions) of every study model on fixed normal and lesion
    windows, against filling the hole with the mean of the window's known ring; added to docs/phantom-study.csv."""
    import torch

    from adbench_dbt.registry import get_method

    study = pd.read_csv(STUDY_CSV)
    _, test = _test_slices()
    sets = None
    for run in study.run.unique():
        record = json.loads((Path(out) / "phantom-demo" / run / "run.json").read_text())
        cls = get_method(record["method"])
        config = cls.Config(**record["config"])
        model_dir = Path(record["checkpoint"]) if record["checkpoint"] else Path(out) / "phantom-demo" / run / "model"
        model = cls.load(model_dir, device="cpu", config=config)
        if sets is None:
            sets = _quality_windows(test, config.window, config.hole)
            ring = 1 - model.backbone.hole_mask[0, 0]
        values = {}
        for name, windows in zip(("normal", "lesion"), sets):
            batch = torch.from_numpy(windows[:, None])
            torch.manual_seed(0)
            m = getattr(config, "completions", 1)
            with torch.no_grad():
                truth, masked = model.backbone.masked_input(batch)
                _, completed = model.backbone.generator(masked.repeat_interleave(m, 0), model.backbone.hole_mask)
            box = model.backbone.hole_box
            hole_truth = truth[box].reshape(len(windows), 1, -1)
            hole_done = completed[box].reshape(len(windows), m, -1)
            values[f"hole_l1_{name}"] = round(float((hole_done - hole_truth).abs().mean(2).min(1).values.mean()), 4)
            fill = (truth[:, 0] * ring).sum((1, 2)) / ring.sum()
            values[f"ring_l1_{name}"] = round(float((hole_truth[:, 0] - fill[:, None]).abs().mean()), 4)
            values[f"windows_{name}"] = len(windows)
        for key, value in values.items():
            study.loc[study.run == run, key] = value
        print(run, values, flush=True)
    study.to_csv(STUDY_CSV, index=False)


def _merge_rows(rows: list[dict]) -> None:
    """Rows merged into the CSV as it is now on disk (a second grid process, --only, may have added its own)."""
    key = ["method", "variant", "iterations", "cnum", "dropout"]
    table = pd.DataFrame(rows)
    if STUDY_CSV.exists():
        table = pd.concat([pd.read_csv(STUDY_CSV), table])
    for column, default in (("dropout_sweep", False),):
        table[column] = table[column].fillna(default) if column in table else default
    if "dropout" not in table:
        table["dropout"] = np.nan
    table.loc[(table.method == "picard") & table.dropout.isna(), "dropout"] = 0.5  # the demo profile's value
    table = table.drop_duplicates(key, keep="last")
    order = {point: index for index, point in enumerate(GRID)}
    table["_order"] = [order.get((m, i, c), len(GRID)) + (0 if not sweep else 1) for m, i, c, sweep in
                       zip(table.method, table.iterations, table.cnum, table.dropout_sweep)]
    table = table.sort_values(["_order", "dropout", "variant"], ascending=[True, False, True],
                              kind="stable").drop(columns="_order")
    tmp = STUDY_CSV.with_suffix(".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(STUDY_CSV)


def _markdown(table: pd.DataFrame) -> str:
    cells = ([("" if pd.isna(v) else v) for v in row] for row in table.itertuples(index=False))
    return "\n".join(table_lines(table.columns, cells))


def _test_slices():
    from adbench_dbt.datasets_resolve import open_dataset

    data = open_dataset("phantom")
    return data, data.dataset.split(data.dataset.test_split)


def _demo_run_dir(out: str, method: str) -> Path:
    from adbench_dbt.runner import preflight

    return preflight(_spec(method, DEMO["iterations"], DEMO["cnum"], out)).run_dir


def _local_std(image: np.ndarray, size: int) -> np.ndarray:
    mean = cv2.blur(image, (size, size))
    return np.sqrt(np.maximum(cv2.blur(image * image, (size, size)) - mean * mean, 0))


def data(out: str) -> None:
    """Breast AUROC of trivial cues, and the rank correlation of the demo PICARD image heatmap with them."""
    from scipy.stats import spearmanr

    from adbench_dbt.metrics import bootstrap_mean, pixel_auroc

    _, test = _test_slices()
    heat_dir = _demo_run_dir(out, "picard") / "heatmaps"
    cues: dict[str, list[float]] = {}
    corr: dict[str, list[float]] = {}
    for sl in test:
        image, breast = sl.load()
        labels = sl.label_mask
        if labels[breast].all() or not labels[breast].any():
            continue
        distance = cv2.distanceTransform(breast.astype(np.uint8), cv2.DIST_L2, 5)
        features = {"intensity": image, "local std (15 px)": _local_std(image, 15),
                    "local std (31 px)": _local_std(image, 31), "distance to skin": distance}
        path = heat_dir / f"{sl.id}.npz"
        heat = np.load(path)["mcd_image"] if path.exists() else None
        for name, value in features.items():
            cues.setdefault(name, []).append(pixel_auroc(value[breast], labels[breast]))
            if heat is not None:
                corr.setdefault(name, []).append(spearmanr(heat[breast][::7], value[breast][::7])[0])
        if heat is not None:
            # the heatmap inside the box against a ring of one box width around it (local contrast of the score)
            x, y, w, h = sl.boxes[0]
            ring = np.zeros_like(breast)
            ring[max(y - h, 0): y + 2 * h, max(x - w, 0): x + 2 * w] = True
            ring &= breast & ~labels
            inside = labels & breast
            if ring.any():
                scores = np.concatenate([heat[inside], heat[ring]])
                cues.setdefault("mcd_image: box vs ring around it", []).append(
                    pixel_auroc(scores, np.r_[np.ones(inside.sum(), bool), np.zeros(ring.sum(), bool)]))
    # The same test volumes rendered again with and without their lesions (identical anatomy, tests/test_phantom.py):
    # how much of each cue is the lesion itself, and how much only where lesions are placed.
    import dataclasses

    from adbench_dbt.data.phantom import get_preset
    from adbench_dbt.data.phantom.plan import plan_volumes
    from adbench_dbt.data.phantom.volume import render_volume

    for job in plan_volumes(get_preset("demo"), seed=0):
        if job.split != "test" or job.group != "Cancer":
            continue
        with_lesion = render_volume(job.spec, list(job.entropy))
        without = render_volume(dataclasses.replace(job.spec, lesions=()), list(job.entropy))
        for lesion in with_lesion.lesions:
            x, y, w, h = lesion.box
            for tag, frames in (("rendered with lesion", with_lesion.frames), ("same slice without lesion",
                                                                               without.frames)):
                image = frames[lesion.focus_frame]
                breast = image > 0.02
                labels = np.zeros(image.shape, bool)
                labels[y: y + h, x: x + w] = True
                for name, value in (("intensity", image), ("local std (15 px)", _local_std(image, 15))):
                    cues.setdefault(f"{name}, {tag}", []).append(pixel_auroc(value[breast], labels[breast]))
    rows = []
    for name, values in cues.items():
        stats = bootstrap_mean(np.array(values), seed=0)
        rows.append({"cue": name, "breast_auroc": round(stats.mean, 4), "low": round(stats.low, 4),
                     "high": round(stats.high, 4), "slices": int(stats.n),
                     "spearman_with_mcd_image": round(float(np.nanmean(corr[name])), 3) if name in corr else None})
    pd.DataFrame(rows).to_csv(DATA_CSV, index=False)
    print(pd.DataFrame(rows).to_string(index=False))


def _completions_panel(out: str, ax_rows) -> None:
    """Demo PICARD: a lesion window and a normal-tissue window, their truth and two completions each."""
    import torch

    from adbench_dbt.registry import get_method

    data_, test = _test_slices()
    run_dir = _demo_run_dir(out, "picard")
    cls = get_method("picard")
    model = cls.load(run_dir / "model", device="cpu")
    config = model.config
    P = config.window
    sl = next(s for s in test if min(s.boxes[0][2:]) >= config.hole and max(s.boxes[0][2:]) <= P)
    image, breast = sl.load()
    x, y, w, h = sl.boxes[0]
    cy, cx = y + h // 2, x + w // 2
    windows = [image[cy - P // 2: cy + P // 2, cx - P // 2: cx + P // 2]]
    rng = np.random.default_rng(0)
    interior = cv2.erode(breast.astype(np.uint8), np.ones((P + 1, P + 1), np.uint8)).astype(bool)
    interior[max(y - P, 0): y + h + P, max(x - P, 0): x + w + P] = False
    ys, xs = np.nonzero(interior)
    k = rng.integers(len(ys))
    windows.append(image[ys[k] - P // 2: ys[k] + P // 2, xs[k] - P // 2: xs[k] + P // 2])
    batch = torch.from_numpy(np.stack(windows)[:, None].astype(np.float32))
    rows = ((0, config.dropout, "lesion window"), (1, config.dropout, "normal tissue"), (1, 0.0, "normal tissue"))
    for axes, (index, p, title) in zip(ax_rows, rows):
        model.backbone.generator.set_dropout(p, config.fine_dropout)  # the demo's live inference dropout, then none
        torch.manual_seed(0)
        with torch.no_grad():
            truth, masked = model.backbone.masked_input(batch[index: index + 1])
            _, completed = model.backbone.generator(masked.repeat_interleave(config.completions, 0),
                                                    model.backbone.hole_mask)
        completed = completed * model.backbone.hole_mask + masked  # what is scored: the hole; the ring is the input
        panels = [truth[0, 0], masked[0, 0]] + [completed[m, 0] for m in range(config.completions)]
        names = ["truth", "input"] + [f"completion {m + 1}, dropout {p:g}" for m in range(config.completions)]
        for ax, panel, name in zip(axes, panels, names):
            ax.imshow(((panel.numpy() + 1) / 2).clip(0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{title}: {name}" if name == "truth" else name, fontsize=7)
            ax.axis("off")


def report(out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study = pd.read_csv(STUDY_CSV)
    lines = ["# Phantom study: breast AUROC against training and width", "",
             "Generated by `python docs/phantom_study.py` (never edited by hand). Demo profiles of PICARD and DMSE "
             "on the `demo` phantom (2-core CPU); `iterations` and generator `cnum` overridden (critics at the "
             f"demo width 8). Breast AUROC = mean over slices of the pixel AUROC over breast pixels, bootstrap 95% CI; "
             f"non-demo points score every {STEP}rd test slice (a fixed subset, `slices`), the demo point is shown "
             "on the same subset and on the full test split (`auroc_breast_all_slices`). `dropout_sweep` rows score "
             "the demo PICARD model with another inference dropout (no retraining). `hole_l1_*`: mean L1 in [-1, 1] "
             "units between the true hole and the best of the M completions on fixed windows of the same slices "
             "(`windows_*`: normal tissue clear of boxes / centred on a box); `ring_l1_*`: the same for filling the "
             "hole with the mean of the window's known ring (a constant baseline).", "",
             _markdown(study.drop(columns=["run"])), ""]
    have = {(m, i, c) for m, i, c in zip(study.method, study.iterations, study.cnum)}
    missing = [f"{m} {i} it / cnum {c}" for m, i, c in GRID if (m, i, c) not in have]
    if missing:
        lines += ["Grid points not run (they did not fit the time available on the shared 2-core CPU): "
                  + ", ".join(missing) + ".", ""]
    if DATA_CSV.exists():
        cues = pd.read_csv(DATA_CSV)
        lines += ["## Trivial cues on the test slices", "",
                  "Breast AUROC of a cue used directly as the heatmap, and the Spearman correlation (over breast "
                  "pixels) of the demo PICARD `mcd_image` heatmap with that cue. Rows `..., rendered with lesion` / "
                  "`..., same slice without lesion`: the focus frame of every cancer test box rendered by the "
                  "generator with and without its lesions (identical anatomy; breast = pixels above 0.02, boxes in "
                  "the canonical frame; one row per box): the second shows what lesion placement alone gives.", "",
                  _markdown(cues), ""]
    lines += ["![study](phantom-study.png)", ""]
    (DOCS / "phantom-study.md").write_text("\n".join(lines))

    fig = plt.figure(figsize=(12, 10))
    series = [("picard", "mcd_image"), ("picard", "mcd_feature"), ("dmse", "mse"), ("dmse", "discr")]
    sweep = study.dropout_sweep.astype(str) == "True"
    for index, (axis, fixed) in enumerate((("iterations", "cnum"), ("cnum", "iterations"), ("dropout", None))):
        ax = fig.add_subplot(2, 3, index + 1)
        for method, variant in series:
            if fixed is None:  # PICARD's inference dropout on the demo model
                part = study[(study.method == method) & (study.variant == variant) & (study.demo.astype(str) == "True")
                             | (sweep & (study.method == method) & (study.variant == variant))]
            else:
                part = study[(study.method == method) & (study.variant == variant) & (study[fixed] == DEMO[fixed])
                             & ~sweep]
            part = part.sort_values(axis)
            if fixed is None and not len(part) > 1:
                continue
            if len(part):
                ax.errorbar(part[axis], part.auroc_breast, yerr=[part.auroc_breast - part.low,
                                                                 part.high - part.auroc_breast],
                            marker="o", capsize=3, label=f"{method} {variant}")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        if fixed is not None:
            ax.set_xscale("log", base=2)
        ax.set_xlabel({"iterations": "iterations (cnum 8)", "cnum": "generator cnum (800 iterations)",
                       "dropout": "PICARD inference dropout (demo model)"}[axis])
        ax.set_ylabel("breast AUROC")
        ax.legend(fontsize=7)
    try:
        import matplotlib.gridspec as gridspec

        spec = gridspec.GridSpecFromSubplotSpec(3, 4, subplot_spec=gridspec.GridSpec(2, 1, figure=fig)[1])
        axes = [[fig.add_subplot(spec[r, c]) for c in range(4)] for r in range(3)]
        _completions_panel(out, axes)
    except Exception as err:  # the plot still shows the grid
        print(f"completions panel skipped: {err}")
    fig.tight_layout()
    fig.savefig(DOCS / "phantom-study.png", dpi=110)
    print((DOCS / "phantom-study.md").read_text())


def tables(methods: str | None = None) -> None:
    """The committed phantom-demo leaderboard as the markdown tables the READMEs quote (`--methods a,b`: only
    those methods' rows)."""
    board = pd.read_csv(DOCS.parent / "leaderboards" / "phantom-demo.csv")
    if methods:
        board = board[board.method.isin(methods.split(","))]
    board = board.sort_values("auroc_breast", ascending=False)
    fmt = lambda v, lo, hi: f"{v:.3f} [{lo:.3f}, {hi:.3f}]"  # noqa: E731
    fingerprints, slice_counts = list(board.fingerprint.str[:12].unique()), [int(n) for n in board.slices.unique()]
    print(f"fingerprint {fingerprints}, slices {slice_counts}\n")
    print("\n".join(table_lines(
        ["method", "profile", "variant", "breast AUROC [95% CI]", "in/out", "pixel AUROC [95% CI]", "pixel AP",
         "s/slice", "fit s"],
        ([r.method, r.profile, r.variant, fmt(r.auroc_breast, r.auroc_breast_low, r.auroc_breast_high),
          f"{r.inout_ratio:.2f}", fmt(r.auroc, r.auroc_low, r.auroc_high), f"{r.ap:.4f}", f"{r.s_per_slice:.2f}",
          f"{r.fit_s:.0f}"] for r in board.itertuples()))))
    half = np.maximum(board.auroc - board.auroc_low, board.auroc_high - board.auroc)
    print(f"\nlargest pixel AUROC CI half-width {half.max():.3f} ({board.method[half.idxmax()]} "
          f"{board.variant[half.idxmax()]}); breast AUROC "
          f"{np.maximum(board.auroc_breast - board.auroc_breast_low, board.auroc_breast_high - board.auroc_breast).max():.3f}")
    for method in board.method.unique():
        part = board[board.method == method]
        several = part.profile.nunique() > 1  # e.g. hfpic: sampling and critic as overrides
        headers = ["profile"] * several + ["variant", "pixel AUROC [95% CI]", "pixel AP", "breast AUROC [95% CI]",
                                           "in/out", "ms/patch"]
        rows = [[r.profile] * several + [r.variant, fmt(r.auroc, r.auroc_low, r.auroc_high), f"{r.ap:.4f}",
                                         fmt(r.auroc_breast, r.auroc_breast_low, r.auroc_breast_high),
                                         f"{r.inout_ratio:.2f}",
                                         "–" if pd.isna(r.ms_per_patch) else f"{r.ms_per_patch:.2f}"]
                for r in part.sort_values("auroc", ascending=False).itertuples()]
        print(f"\n{method}:\n")
        print("\n".join(table_lines(headers, rows)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", default="all", choices=("grid", "quality", "data", "report", "all", "tables"))
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--only", choices=("picard", "dmse"))
    parser.add_argument("--point", help="run one grid point only: method:iterations:cnum")
    parser.add_argument("--methods", help="tables: only these methods (comma-separated)")
    args = parser.parse_args()
    if args.part == "tables":
        return tables(args.methods)
    if args.part in ("grid", "all"):
        grid(args.out, args.only, args.point)
    if args.part in ("quality", "all"):
        quality(args.out)
    if args.part in ("data", "all"):
        data(args.out)
    if args.part in ("report", "all"):
        report(args.out)


if __name__ == "__main__":
    main()
