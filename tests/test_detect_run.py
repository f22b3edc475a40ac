"""`adbench detect RUN_DIR` on finished runs: the official files, boxes back in official coordinates, a format-2 run
upgraded from its heatmaps without scoring again, and one-line errors for runs it cannot work from."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adbench_dbt import runner
from adbench_dbt.cli import main
from adbench_dbt.data.layout import BOXES_COLUMNS, LABELS_COLUMNS
from adbench_dbt.detection import Detection, DetectionConfig
from adbench_dbt.errors import EXIT_RUN, EXIT_USAGE
from adbench_dbt.evaluation import official_tables, predictions_table
from adbench_dbt.froc import PREDICTION_COLUMNS, evaluate, read_official_tables, read_predictions
from adbench_dbt.leaderboard import collect_summaries
from adbench_dbt.runner import RunSpec, run
from adbench_dbt.summary import RunSummary, read_slice_record


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache_root):
    out = tmp_path_factory.mktemp("runs")
    return run(RunSpec(method="telea", profile="smoke", dataset="phantom:tiny", device="cpu", out=str(out),
                       cache=str(cache_root), overlays=False))


def copy_run(summary: RunSummary, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(summary.run_dir, target)
    return target


def test_run_writes_the_official_files(finished):
    detection = Path(finished.run_dir) / "detection"
    labels, boxes = read_official_tables(detection / "labels.csv", detection / "boxes.csv")
    predictions = read_predictions(detection / "predictions.csv")
    assert list(pd.read_csv(detection / "labels.csv").columns) == list(LABELS_COLUMNS)
    assert list(pd.read_csv(detection / "boxes.csv").columns) == list(BOXES_COLUMNS)
    assert list(predictions.columns) == list(PREDICTION_COLUMNS)
    assert len(predictions) == finished.slices * DetectionConfig().max_boxes
    metrics = json.loads((detection / "metrics.json").read_text())
    assert metrics["note"].startswith("only scored slices can produce marks")
    recomputed, _ = evaluate(labels, boxes, predictions)  # the files alone reproduce the figures
    assert recomputed == pytest.approx({k: metrics[k] for k in recomputed})
    assert finished.variants["mse"].detection.sensitivity_at_2_fps_all == pytest.approx(metrics[
        "sensitivity_at_2_fps_all"])


def test_boxes_go_back_to_official_coordinates(finished, tiny_dataset):
    """A detection drawn exactly on each scored box (slice coordinates, right views mirrored) is written as exactly
    that table row: right views are mirrored back."""
    records = [read_slice_record(p) for p in sorted((Path(finished.run_dir) / "slices").glob("*.json"))]
    perfect = [r.model_copy(update={"detections": {"mse": [Detection(x=x, y=y, width=w, height=h, score=1.0)
                                                           for x, y, w, h in r.boxes]}}) for r in records]
    assert any("_r" in r.id for r in records) and any("_l" in r.id for r in records)
    predictions = predictions_table(tiny_dataset, "test", perfect, "mse", DetectionConfig())
    _, boxes = official_tables(tiny_dataset, "test", records)
    written = predictions[["StudyUID", "View", "X", "Y", "Width", "Height"]].astype({"X": int, "Y": int,
                                                                                     "Width": int, "Height": int})
    table = boxes[["StudyUID", "View", "X", "Y", "Width", "Height"]]
    assert sorted(map(tuple, written.to_numpy())) == sorted(map(tuple, table.to_numpy()))


def test_detect_upgrades_a_format_2_run_without_scoring_again(finished, tmp_path, monkeypatch, capsys):
    run_dir = copy_run(finished, tmp_path)
    old = json.loads((run_dir / "summary.json").read_text())
    for key in ("aupro", "aupro_ci", "hit_rate", "hit_rate_ci", "detection"):
        for variant in old["variants"].values():
            variant.pop(key)
    old.pop("detection")
    old["schema_version"] = 2
    old["date"] = "2026-01-01"
    (run_dir / "summary.json").write_text(json.dumps(old))
    for path in (run_dir / "slices").glob("*.json"):  # records as the format-2 harness wrote them
        data = json.loads(path.read_text())
        data.pop("detections")
        for metrics in data["metrics"].values():
            metrics.pop("aupro"), metrics.pop("hit")
        path.write_text(json.dumps(data))
    shutil.rmtree(run_dir / "detection")
    found, rejected = collect_summaries(tmp_path)
    assert not found and "adbench detect" in rejected[0]

    monkeypatch.setattr(runner, "_score_one", lambda *a: pytest.fail("detect must not score"))
    with pytest.raises(SystemExit) as done:
        main(["detect", str(run_dir)])
    assert done.value.code == 0, capsys.readouterr().err
    upgraded = RunSummary.read(run_dir / "summary.json")
    assert upgraded.date == "2026-01-01"
    assert upgraded.variants == finished.variants  # the same figures as a run scored with this harness
    assert (run_dir / "detection" / "predictions.csv").is_file()


def test_detect_with_another_rule(finished, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["detect", str(run_dir), "--set", "max_boxes=2", "--set", "box=region"])
    assert done.value.code == 0
    assert len(pd.read_csv(run_dir / "detection" / "predictions.csv")) == 2 * finished.slices
    assert RunSummary.read(run_dir / "summary.json").detection.box == "region"
    with pytest.raises(SystemExit) as done:
        main(["detect", str(run_dir), "--set", "max_boxes=0"])
    assert done.value.code == EXIT_USAGE and "max_boxes" in capsys.readouterr().err


def test_run_without_heatmaps_is_a_one_line_error(finished, tmp_path, capsys):
    run_dir = copy_run(finished, tmp_path)
    shutil.rmtree(run_dir / "heatmaps")
    with pytest.raises(SystemExit) as done:
        main(["detect", str(run_dir)])
    err = capsys.readouterr().err.strip()
    assert done.value.code == EXIT_RUN and "no heatmaps/" in err and str(run_dir) in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(SystemExit) as done:
        main(["detect", str(tmp_path / "nothing")])
    assert done.value.code == EXIT_RUN and "run.json" in capsys.readouterr().err


def test_heatmap_metrics_are_recorded_per_slice(finished):
    record = read_slice_record(next((Path(finished.run_dir) / "slices").glob("*.json")))
    metrics = record.metrics["mse"]
    assert 0 <= metrics.aupro <= 1 and isinstance(metrics.hit, bool)
    assert len(record.detections["mse"]) == DetectionConfig().max_boxes
    assert np.all(np.diff([d.score for d in record.detections["mse"]]) <= 0)
