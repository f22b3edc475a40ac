"""Coreset selection time: anomalib 2.7's `KCenterGreedy` against `greedy_coreset`, on the same inputs, same device.

`python -m adbench_dbt.methods.anomalib.coreset_bench [--sizes 32768 65536] [--ratio 0.1] [--dim 384]` writes
`leaderboards/bench-coreset.{csv,md}` (rows of other sizes/devices already there are kept). The features are
synthetic ReLU activations (N(0.3, 1) clipped at 0, seeded): the cost of both implementations depends only on
N, D and the coreset size, not on the values. anomalib runs once per size with seeded global random state; its
projection matrix and start point are then reproduced from the same seeds and given to `greedy_coreset`, which
runs before and after it (the slower of its two runs is reported, so a busy machine does not flatter it).
Rows record the identical prefix of the two selection orders, the share of anomalib's points also selected, and
each coreset's coverage radius (largest distance of a feature to its nearest coreset point, in feature space).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from adbench_dbt.bench import merge_table
from adbench_dbt.methods.anomalib.coreset import PROJECTION_EPS, coreset_size, greedy_coreset
from adbench_dbt.provenance import harness_revision, package_version
from adbench_dbt.timing import device_name, resolve_device, synchronize

OUT = Path(__file__).resolve().parents[2] / "leaderboards" / "bench-coreset.csv"
KEY = ["implementation", "n_features", "dim", "ratio", "device"]
COLUMNS = KEY[:1] + ["n_features", "dim", "ratio", "coreset_size", "seconds", "speedup", "identical_prefix",
                     "same_points", "coverage_radius", "device", "load_1min", "anomalib_version",
                     "harness_revision", "date"]


def synthetic_features(n: int, dim: int, seed: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, dim, generator=generator) + 0.3).to(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    synchronize(device)
    begin = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - begin


def coverage_radius(features: torch.Tensor, selected: torch.Tensor, chunk: int = 4096) -> float:
    """Largest distance of any feature to its nearest selected feature (what k-center greedy minimises)."""
    centres = features[selected]
    return max(float(torch.cdist(features[i:i + chunk], centres).amin(1).max())
               for i in range(0, features.shape[0], chunk))


def anomalib_selection(features: torch.Tensor, ratio: float, seed: int) -> torch.Tensor:
    """anomalib's own selection with its random state seeded (its progress bar silenced)."""
    from anomalib.models.components.sampling.k_center_greedy import KCenterGreedy

    torch.manual_seed(seed)
    np.random.seed(seed)
    with contextlib.redirect_stderr(io.StringIO()):
        return torch.tensor(KCenterGreedy(embedding=features, sampling_ratio=ratio).select_coreset_idxs())


def anomalib_draws(features: torch.Tensor, seed: int) -> tuple[torch.Tensor, int]:
    """The projection matrix and start point anomalib draws after the same seeding, in the same order."""
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

    torch.manual_seed(seed)
    np.random.seed(seed)
    matrix = SparseRandomProjection(eps=PROJECTION_EPS).fit(features).sparse_random_matrix
    return matrix, int(torch.randint(high=features.shape[0], size=(1,), device=features.device))


def bench_size(n: int, dim: int, ratio: float, device: torch.device, seed: int,
               presample: int | None) -> list[dict[str, Any]]:
    features = synthetic_features(n, dim, seed, device)
    size = coreset_size(n, ratio)
    matrix, start = anomalib_draws(features, seed)
    ours = lambda: greedy_coreset(features, size, start=start, projection=matrix)  # noqa: E731
    _, first = timed(ours, device)
    reference, anomalib_s = timed(lambda: anomalib_selection(features, ratio, seed), device)
    selected, second = timed(ours, device)
    ours_s = max(first, second)
    selected, reference = selected.cpu(), reference.cpu()
    differ = (selected != reference).nonzero()
    common = {"n_features": n, "dim": dim, "ratio": ratio, "coreset_size": size, "device": device_name(device),
              "anomalib_version": package_version("anomalib"), "harness_revision": harness_revision(),
              "date": dt.date.today().isoformat()}
    rows = [{"implementation": "anomalib KCenterGreedy", "seconds": anomalib_s, "speedup": 1.0,
             "identical_prefix": size, "same_points": 1.0,
             "coverage_radius": coverage_radius(features, reference.to(device)), **common},
            {"implementation": "greedy_coreset", "seconds": ours_s, "speedup": anomalib_s / ours_s,
             "identical_prefix": int(differ[0]) if len(differ) else size,
             "same_points": len(set(selected.tolist()) & set(reference.tolist())) / size,
             "coverage_radius": coverage_radius(features, selected.to(device)), **common}]
    if presample is not None and presample < n:
        subset, sub_s = timed(lambda: greedy_coreset(features, size, seed=seed, presample=presample), device)
        rows.append({"implementation": f"greedy_coreset presample={presample}", "seconds": sub_s,
                     "speedup": anomalib_s / sub_s, "identical_prefix": None,
                     "same_points": len(set(subset.tolist()) & set(reference.tolist())) / size,
                     "coverage_radius": coverage_radius(features, subset), **common})
    load = os.getloadavg()[0]
    return [{**row, "load_1min": load} for row in rows]


INTRO = ["# Coreset selection time", "",
         "Generated by `python -m adbench_dbt.methods.anomalib.coreset_bench`: anomalib's k-center greedy and "
         "`greedy_coreset` on the same synthetic features, same projection and start point; greedy_coreset's "
         "`seconds` is the slower of its runs before and after anomalib's. `speedup` = anomalib's seconds / these "
         "seconds; `identical_prefix` = selection steps equal to anomalib's before the first near-tie; "
         "`same_points` = share of anomalib's points also selected; `coverage_radius` = largest "
         "feature-to-coreset distance (lower is better); `load_1min` = machine load when measured."]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Merge `rows` into the committed table (same implementation/size/device replaced), csv + md."""
    return merge_table(path, rows, COLUMNS, KEY, INTRO)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32768, 65536], help="numbers of patch features")
    parser.add_argument("--dim", type=int, default=384, help="feature width (resnet18 layer2 + layer3: 384)")
    parser.add_argument("--ratio", type=float, default=0.1, help="coreset sampling ratio (PatchCore: 0.1)")
    parser.add_argument("--presample", type=int, default=None,
                        help="also time greedy_coreset on a random subset of this many features")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    warnings.filterwarnings("ignore", category=FutureWarning)  # anomalib's import-time deprecation notices
    for n in args.sizes:
        rows = bench_size(n, args.dim, args.ratio, device, args.seed, args.presample)
        write_rows(args.out, rows)
        for row in rows:
            print(f"{row['implementation']:>36}  N={n}  {row['seconds']:8.2f} s  x{row['speedup']:.1f}  "
                  f"prefix {row['identical_prefix']}  same {row['same_points']:.3f}  "
                  f"radius {row['coverage_radius']:.4f}  load {row['load_1min']:.1f}", flush=True)


if __name__ == "__main__":
    main()
