"""The typed run summary and the leaderboard built from it: newer rows win, columns tell the truth, old or foreign
summaries are refused with a message naming the file."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from adbench_dbt.errors import RunError
from adbench_dbt.leaderboard import collect_summaries, merge
from adbench_dbt.detection import DetectionConfig
from adbench_dbt.summary import DetectionFigures, RunSummary, Timing, VariantSummary


def summary(auroc: float, date: str, *, batch: int | None = 64, precision: str = "fp32", method: str = "picard",
            run_dir: str = "runs/x") -> RunSummary:
    variant = VariantSummary(auroc=auroc, auroc_ci=(auroc - 0.01, auroc + 0.01), ap=0.1, ap_ci=(0.09, 0.11),
                             auroc_breast=0.6, auroc_breast_ci=(0.55, 0.65), inout_ratio=1.2, inout_ratio_std=0.1,
                             aupro=0.3, aupro_ci=(0.2, 0.4), hit_rate=0.4, hit_rate_ci=(0.1, 0.7), slices_scored=5,
                             detection=DetectionFigures(
                                 sensitivity_at_2_fps_all=0.5, sensitivity_at_1_fps_positive=0.25,
                                 sensitivity_at_2_fps_positive=0.5, sensitivity_at_3_fps_positive=0.75,
                                 sensitivity_at_4_fps_positive=1.0, mean_sensitivity_positive=0.625, volumes=5,
                                 positive_volumes=5, boxes=5))
    return RunSummary(method=method, profile="demo", overrides={}, dataset="phantom-tiny", fingerprint="f" * 64,
                      split="test", split_options={}, seed=0, device="cpu", precision=precision, batch_size=batch,
                      checkpoint=None, checkpoint_sha256=None, breast_only=False, harness_revision="abc",
                      slices=5, variants={"mcd": variant}, detection=DetectionConfig(),
                      timing=Timing(score_seconds=1.0, s_per_slice=0.2, windows=100, ms_per_patch=10.0,
                                    windows_per_s=100.0, fit_seconds=None),
                      date=date, run_dir=run_dir)


def test_summary_round_trips_through_its_file(tmp_path):
    original = summary(0.7, "2026-11-01")
    original.write(tmp_path / "summary.json")
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["schema"] == "adbench-dbt/run-summary" and on_disk["schema_version"] == 3
    assert RunSummary.read(tmp_path / "summary.json") == original


@pytest.mark.parametrize("content, message", [
    ({"method": "picard", "variants": {}}, "not an adbench-dbt run summary"),
    ({"schema": "adbench-dbt/run-summary", "schema_version": 1}, "format 1.*rerun the run"),
    ({"schema": "adbench-dbt/run-summary", "schema_version": 2}, "format 2.*adbench detect"),
    ({"schema": "adbench-dbt/run-summary", "schema_version": 3, "method": "picard"}, "invalid run summary"),
])
def test_old_or_foreign_summaries_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(content))
    with pytest.raises(RunError, match=message) as err:
        RunSummary.read(path)
    assert str(path) in str(err.value)


def test_newer_row_replaces_the_older_one_in_merge_order(tmp_path):
    merge(tmp_path, "phantom-tiny", [summary(0.6, "2026-11-01")])
    table = merge(tmp_path, "phantom-tiny", [summary(0.8, "2026-11-02")])
    assert len(table) == 1 and table["auroc"].item() == pytest.approx(0.8) and table["date"].item() == "2026-11-02"
    table = merge(tmp_path, "phantom-tiny", [summary(0.5, "2026-11-03"), summary(0.9, "2026-11-04")])
    assert len(table) == 1 and table["auroc"].item() == pytest.approx(0.9)
    disk = pd.read_csv(tmp_path / "phantom-tiny.csv")
    assert len(disk) == 1 and disk["auroc"].item() == pytest.approx(0.9)


def test_collect_orders_by_modification_time_so_the_newest_run_wins(tmp_path):
    """Paths sort one way, mtimes the other: the row must come from the run finished last."""
    newer, older = tmp_path / "a" / "summary.json", tmp_path / "b" / "summary.json"
    for path, auroc, mtime in ((newer, 0.9, 2_000_000_000), (older, 0.1, 1_000_000_000)):
        path.parent.mkdir()
        summary(auroc, "2026-11-01").write(path)
        os.utime(path, (mtime, mtime))
    found, rejected = collect_summaries(tmp_path)
    assert rejected == []
    table = merge(tmp_path / "lb", "phantom-tiny", found["phantom-tiny"])
    assert table["auroc"].item() == pytest.approx(0.9)


def test_collect_reports_unusable_summaries_by_name(tmp_path):
    good = tmp_path / "good" / "summary.json"
    good.parent.mkdir()
    summary(0.7, "2026-11-01").write(good)
    old = tmp_path / "old" / "summary.json"
    old.parent.mkdir()
    old.write_text(json.dumps({"method": "picard", "dataset": "phantom-tiny"}))
    found, rejected = collect_summaries(tmp_path)
    assert len(found["phantom-tiny"]) == 1
    assert len(rejected) == 1 and str(old) in rejected[0]


def test_batch_is_an_integer_and_precision_is_what_ran(tmp_path):
    merge(tmp_path, "phantom-tiny", [summary(0.7, "2026-11-01", batch=None, method="telea")])
    table = merge(tmp_path, "phantom-tiny", [summary(0.8, "2026-11-01", batch=128, precision="bf16")])
    csv = (tmp_path / "phantom-tiny.csv").read_text()
    assert ",128," in csv and "128.0" not in csv
    rows = {r["method"]: r for r in table.to_dict("records")}
    assert rows["picard"]["precision"] == "bf16" and rows["picard"]["batch_size"] == 128
    assert pd.isna(rows["telea"]["batch_size"])
    md = (tmp_path / "phantom-tiny.md").read_text()
    assert "| 128 |" in md and "128.0" not in md


def test_run_records_precision_and_integer_batch(tmp_path, cache_root, tiny_dataset):
    from adbench_dbt.runner import RunSpec, run

    result = run(RunSpec(method="telea", profile="smoke", dataset="phantom:tiny", device="cpu",
                         out=str(tmp_path / "runs"), cache=str(cache_root), overlays=False))
    assert result.precision == "fp32" and isinstance(result.batch_size, int) and result.batch_size > 0
    assert RunSummary.read(Path(result.run_dir) / "summary.json") == result


def test_new_columns_reach_the_csv_and_markdown(tmp_path):
    table = merge(tmp_path, "phantom-tiny", [summary(0.7, "2026-11-01")])
    row = table.iloc[0]
    assert row["aupro"] == pytest.approx(0.3) and row["hit_rate_high"] == pytest.approx(0.7)
    assert row["sens_2fp_all"] == pytest.approx(0.5) and row["mean_sens_positive"] == pytest.approx(0.625)
    assert row["vs_best"] == "best"
    md = (tmp_path / "phantom-tiny.md").read_text()
    assert "AUPRO@0.3 [95% CI]" in md and "0.300 [0.200, 0.400]" in md and "| 0.62 |" in md


def test_rows_keep_their_old_columns_when_merged_with_an_older_csv(tmp_path):
    """A leaderboard written before these columns existed merges without losing or renaming any old column."""
    old = pd.DataFrame([{"method": "telea", "variant": "mse", "profile": "demo", "auroc": 0.6,
                         "fingerprint": "f" * 64, "slices": 5}])
    old.to_csv(tmp_path / "phantom-tiny.csv", index=False)
    table = merge(tmp_path, "phantom-tiny", [summary(0.7, "2026-11-01")])
    assert set(table["method"]) == {"telea", "picard"}
    assert table.set_index("method").loc["telea", "aupro"] != table.set_index("method").loc["telea", "aupro"]  # NaN


def test_path_overrides_are_labelled_by_their_last_two_parts():
    from adbench_dbt.leaderboard import profile_label

    assert profile_label("demo", {"critic_checkpoint": "/home/me/runs/picard-demo-1/model", "stride": 16}) == \
        "demo critic_checkpoint=picard-demo-1/model stride=16"
