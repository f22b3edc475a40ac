"""Paired comparisons: the same resampled slices for both runs, the p-value, refusing different splits, and the
leaderboard's 'not distinguishable from the best row' mark."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adbench_dbt.cli import main
from adbench_dbt.compare import compare, load_run, paired_bootstrap
from adbench_dbt.errors import EXIT_RUN, RunError
from adbench_dbt.leaderboard import mark_best
from adbench_dbt.summary import SliceMetrics, SliceRecord


def test_pairing_removes_between_slice_noise():
    """B = A - 0.01 on every slice, with slices spread widely: paired, the difference is certain; resampling the two
    runs independently (unpaired) would find nothing."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0.3, 0.9, 30)
    d = paired_bootstrap(a, a - 0.01, "auroc")
    assert d.difference == pytest.approx(0.01) and d.low == pytest.approx(0.01) and d.p_value < 0.01
    same = paired_bootstrap(a, a.copy(), "auroc")
    assert same.difference == 0 and same.p_value == 1.0


def test_p_value_is_two_sided_and_never_zero():
    rng = np.random.default_rng(1)
    a, noise = rng.uniform(0.4, 0.6, 40), rng.normal(0, 0.05, 40)
    up, down = paired_bootstrap(a + noise, a, "x"), paired_bootstrap(a, a + noise, "x")
    assert up.p_value == pytest.approx(down.p_value, abs=0.01) and up.difference == pytest.approx(-down.difference)
    assert paired_bootstrap(a + 1, a, "x").p_value == pytest.approx(2 / 2001)


def fake_run(path: Path, fingerprint: str, aurocs: list[float], variant: str = "v") -> Path:
    (path / "slices").mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"fingerprint": fingerprint, "method": path.name, "profile": "demo"}))
    for i, value in enumerate(aurocs):
        record = SliceRecord(id=f"s{i}", shape=(4, 4), boxes=[(0, 0, 1, 1)], seconds=0.1, windows=1,
                             metrics={variant: SliceMetrics(auroc=value, ap=value / 2, auroc_breast=value,
                                                            inout_ratio=1.0, aupro=value / 3, hit=True)})
        (path / "slices" / f"s{i}.json").write_text(record.model_dump_json())
    return path


def test_different_splits_are_refused_with_a_clear_message(tmp_path, capsys):
    a = fake_run(tmp_path / "a", "1" * 64, [0.6, 0.7])
    b = fake_run(tmp_path / "b", "2" * 64, [0.6, 0.7])
    with pytest.raises(RunError, match="different splits"):
        compare(load_run(a), load_run(b))
    with pytest.raises(SystemExit) as done:
        main(["compare", str(a), str(b)])
    err = capsys.readouterr().err
    assert done.value.code == EXIT_RUN and "different splits" in err and len(err.strip().splitlines()) == 1


def test_compare_command_prints_the_three_metrics(tmp_path, capsys):
    rng = np.random.default_rng(2)
    values = rng.uniform(0.5, 0.9, 20)
    a = fake_run(tmp_path / "a", "1" * 64, list(values))
    b = fake_run(tmp_path / "b", "1" * 64, list(values - 0.05))
    with pytest.raises(SystemExit) as done:
        main(["compare", str(a), str(b)])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert all(m in out for m in ("auroc", "ap", "aupro")) and "+0.0500" in out


def test_leaderboard_marks_rows_not_distinguishable_from_the_best(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(3)
    base = rng.uniform(0.5, 0.9, 25)
    best = fake_run(tmp_path / "best", "1" * 64, list(base))
    close = fake_run(tmp_path / "close", "1" * 64, list(base + rng.normal(0, 0.02, 25) - 0.001))
    far = fake_run(tmp_path / "far", "1" * 64, list(base - 0.1))
    gone = tmp_path / "gone"
    table = pd.DataFrame([
        {"variant": "v", "fingerprint": "1" * 64, "auroc": float(np.mean(base)), "run_dir": str(best)},
        {"variant": "v", "fingerprint": "1" * 64, "auroc": float(np.mean(base)) - 0.001, "run_dir": str(close)},
        {"variant": "v", "fingerprint": "1" * 64, "auroc": float(np.mean(base)) - 0.1, "run_dir": str(far)},
        {"variant": "v", "fingerprint": "1" * 64, "auroc": 0.1, "run_dir": str(gone), "vs_best": "tied"},
    ])
    assert mark_best(table) == ["best", "tied", "below", "tied"]  # a vanished run keeps its old mark
