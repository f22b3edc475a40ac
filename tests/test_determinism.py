"""A run is a function of its configuration and seed, for a method with randomness in both training and scoring.

PICARD (smoke profile, a few seconds on the tiny phantom) draws random training crops and holes, random WGAN-GP
interpolation weights during `fit`, and independent Dropout2d masks for each of its M completions while scoring.
Two runs with the same seed must give bitwise-equal heatmaps for every slice and variant, and equal metrics, even
when the process's global random state differs between them; another seed must give other heatmaps.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from adbench_dbt.runner import RunSpec, run

OVERRIDES = {"iterations": 8, "checkpoint_every": 4}  # enough steps that the trained weights depend on the seed


def _run(out: Path, cache_root: Path, checkpoint: Path | None = None, **overrides) -> Path:
    """One run into its own output folder; returns its run directory (the only one there)."""
    spec = RunSpec(method="picard", profile="smoke", dataset="phantom:tiny", device="cpu", out=str(out),
                   cache=str(cache_root), overlays=False, overrides={**OVERRIDES, **overrides},
                   checkpoint=None if checkpoint is None else str(checkpoint))
    run(spec)
    (run_dir,) = [p.parent for p in out.rglob("summary.json")]
    return run_dir


def _heatmaps(run_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    maps = {}
    for path in sorted((run_dir / "heatmaps").glob("*.npz")):
        with np.load(path) as npz:
            maps[path.stem] = {name: npz[name] for name in npz.files}
    return maps


def _slice_metrics(run_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text())["metrics"] for p in sorted((run_dir / "slices").glob("*.json"))}


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _disturb_global_random_state(seed: int) -> None:
    """What earlier work in the same process leaves behind: the runner must seed everything it uses itself."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    torch.rand(1000)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_root, tiny_dataset):
    root = tmp_path_factory.mktemp("determinism")
    first = _run(root / "first", cache_root)
    _disturb_global_random_state(12345)
    second = _run(root / "second", cache_root)
    _disturb_global_random_state(777)
    reloaded = _run(root / "reloaded", cache_root, checkpoint=first / "model")  # no fit: scoring alone
    other_seed = _run(root / "other-seed", cache_root, seed=1)
    return first, second, reloaded, other_seed


def _assert_same_results(a_dir: Path, b_dir: Path, test_ids: set[str]) -> None:
    a, b = _heatmaps(a_dir), _heatmaps(b_dir)
    assert set(a) == set(b) == test_ids
    for slice_id, variants in a.items():
        assert set(variants) == set(b[slice_id]) and len(variants) == 6
        for name, heat in variants.items():
            assert np.array_equal(heat, b[slice_id][name]), f"{slice_id} {name}: heatmaps differ between runs"
    assert _slice_metrics(a_dir) == _slice_metrics(b_dir)
    assert _summary(a_dir)["variants"] == _summary(b_dir)["variants"]


def test_same_seed_gives_bitwise_equal_heatmaps_and_equal_metrics(runs, tiny_dataset):
    """Two complete runs (each fits its own model) after different global random states."""
    first, second, _, _ = runs
    assert first != second and (first / "model").is_dir() and (second / "model").is_dir()  # two fits, no resume
    _assert_same_results(first, second, {sl.id for sl in tiny_dataset.split("test")})


def test_scoring_a_saved_model_again_gives_the_same_heatmaps(runs, tiny_dataset):
    """The first run's model, loaded and scored by a run that does not fit: the dropout masks of scoring are
    seeded by the runner, not left to whatever random state training or earlier work left behind."""
    first, _, reloaded, _ = runs
    assert not (reloaded / "model").exists()
    _assert_same_results(first, reloaded, {sl.id for sl in tiny_dataset.split("test")})


def test_another_seed_gives_other_heatmaps(runs):
    first, _, _, other = runs
    assert _summary(other)["seed"] == 1 and _summary(first)["seed"] == 0
    a, c = _heatmaps(first), _heatmaps(other)
    assert set(a) == set(c)
    for slice_id, variants in a.items():
        for name, heat in variants.items():
            assert not np.array_equal(heat, c[slice_id][name]), f"{slice_id} {name}: seed had no effect"
