"""The opt-in volume-level protocol: N evenly spaced slices of every normal test volume are scored too, so false
marks per volume are counted on normal volumes; recorded in the fingerprint only when on."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from adbench_dbt.data import BCSDBT
from adbench_dbt.data.split import evenly_spaced_frames
from adbench_dbt.runner import RunSpec, run

from data_helpers import Volume, default_volumes, write_download

NORMAL = Volume("test", "DBT-P00023", "DBT-S00023", "lcc")


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    return write_download(tmp_path_factory.mktemp("bcs") / "root", volumes=default_volumes() + [NORMAL])


def test_evenly_spaced_frames():
    assert evenly_spaced_frames(8, 3) == [1, 4, 6]
    assert evenly_spaced_frames(60, 1) == [30]
    assert evenly_spaced_frames(3, 5) == [0, 1, 2]


def test_option_adds_normal_slices_and_changes_the_fingerprint_only_when_on(download, tmp_path):
    plain = BCSDBT(download, cache=tmp_path / "cache")
    spaced = BCSDBT(download, cache=tmp_path / "cache", normal_test_slices=3)
    assert "normal_test_slices" not in plain.manifest["options"]  # existing fingerprints are unchanged
    assert spaced.manifest["options"]["normal_test_slices"] == 3 and spaced.fingerprint != plain.fingerprint
    added = [e for e in spaced.entries("test") if e["volume"] == NORMAL.key]
    assert [(e["frame"], e["boxes"]) for e in added] == [(1, []), (4, []), (6, [])]
    assert len(spaced.entries("test")) == len(plain.entries("test")) + 3


def test_run_counts_false_marks_on_normal_volumes(download, tmp_path):
    summary = run(RunSpec(method="random", profile="smoke", dataset=str(download), device="cpu",
                          out=str(tmp_path / "runs"), cache=str(tmp_path / "cache"), overlays=False,
                          split_options={"normal_test_slices": 2}))
    detection = Path(summary.run_dir) / "detection"
    labels = pd.read_csv(detection / "labels.csv")
    assert NORMAL.key.split("_")[1] in set(labels["StudyUID"]) and labels["Normal"].sum() == 1
    predictions = pd.read_csv(detection / "predictions.csv")
    assert (predictions["StudyUID"] == NORMAL.study).sum() == 2 * summary.detection.max_boxes
    figures = summary.variants["uniform"].detection
    assert figures.volumes == len(labels) and figures.positive_volumes == len(labels) - 1
    assert json.loads((Path(summary.run_dir) / "run.json").read_text())["split_options"] == {"normal_test_slices": 2}
    assert summary.variants["uniform"].slices_scored == summary.slices - 2  # normal slices: no AUROC
