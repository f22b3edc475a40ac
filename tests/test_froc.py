"""The official BCS-DBT / DBTex scoring rule on hand-made tables whose answers are worked out by hand below, a
randomised check against a literal per-threshold transcription of the rule, and bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adbench_dbt.data.errors import DataError
from adbench_dbt.froc import evaluate, match, read_official_tables, read_predictions

LABELS = pd.DataFrame({"PatientID": ["P1", "P1", "P2"], "StudyUID": ["S1", "S1", "S2"], "View": ["lcc", "rcc", "lcc"],
                       "Normal": [0, 0, 1], "Actionable": [0, 0, 0], "Benign": [0, 0, 0], "Cancer": [1, 1, 0]})
# box 0: centre (125, 125), slice 10; box 1: centre (325, 125), slice 10 (both: radius 100, since the half diagonal
# is 35 px); box 2: centre (700, 650), slice 20, radius 250 (half diagonal of 400 x 300). Slice tolerance 40/4 = 10.
BOXES = pd.DataFrame({"PatientID": ["P1"] * 3, "StudyUID": ["S1"] * 3, "View": ["lcc", "lcc", "rcc"],
                      "Subject": [0, 1, 0], "Slice": [10, 10, 20], "X": [100, 300, 500], "Y": [100, 100, 500],
                      "Width": [50, 50, 400], "Height": [50, 50, 300], "Class": ["cancer"] * 3, "AD": [0] * 3,
                      "VolumeSlices": [40.0] * 3})


def pred(study: str, view: str, cx: float, cy: float, z: float, score: float) -> dict:
    """A 20 x 20 box centred on (cx, cy), Depth 2 centred on z."""
    return {"StudyUID": study, "View": view, "X": cx - 10, "Y": cy - 10, "Z": z - 1, "Width": 20, "Height": 20,
            "Depth": 2, "Score": score}


PREDICTIONS = pd.DataFrame([
    pred("S1", "lcc", 225, 125, 10, 0.90),  # p0: exactly 100 px from box 0 and from box 1 -> tie -> box 0 (first)
    pred("S1", "lcc", 125, 125, 10, 0.80),  # p1: box 0 again: a box hit twice counts once
    pred("S1", "lcc", 600, 600, 10, 0.95),  # p2: far from every box: FP
    pred("S1", "rcc", 940, 650, 25, 0.50),  # p3: 240 px <= 250 and 5 slices <= 10 from box 2: TP
    pred("S2", "lcc", 125, 125, 10, 0.70),  # p4: a normal volume: FP (counts only over all volumes)
    pred("S1", "rcc", 700, 650, 31, 0.30),  # p5: centre of box 2 but 11 slices away: FP
    pred("S1", "lcc", 900, 900, 10, 0.60),  # p6: FP
    pred("S1", "rcc", 100, 100, 20, 0.55),  # p7: FP
])


def test_tie_goes_to_the_box_listed_first_and_a_box_can_be_hit_twice():
    is_tp, box = match(PREDICTIONS, BOXES)
    assert is_tp.tolist() == [True, True, False, True, False, False, False, False]
    assert box.tolist() == [0, 0, -1, 2, -1, -1, -1, -1]
    swapped = BOXES.iloc[[1, 0, 2]].reset_index(drop=True)  # the other lcc box first: p0 goes to it
    assert match(PREDICTIONS, swapped)[1].tolist()[:2] == [0, 1]


def test_official_figures_worked_out_by_hand():
    """Thresholds: 1.95 (max + 1), TP scores 0.9, 0.8, 0.5, and -0.7 (min - 1); 3 boxes.
    All 3 volumes: FPs at or above each threshold 0, 1 (p2), 1, 4 (p2 p4 p6 p7), 5 -> FPs/volume 0, 1/3, 1/3, 4/3, 5/3;
    boxes hit 0, 1, 1 (box 0 twice), 2, 2 -> never beyond 2 FPs/volume, so sensitivity at 2 = the last point, 2/3.
    The 2 volumes with boxes (p4 left out): FPs/volume 0, 1/2, 1/2, 3/2, 2, sensitivity 0, 1/3, 1/3, 2/3, 2/3:
    at 1 FP linear between (1/2, 1/3) and (3/2, 2/3) = 1/2; at 2, 3, 4: 2/3; mean (1/2 + 3 * 2/3) / 4 = 0.625."""
    result, curves = evaluate(LABELS, BOXES, PREDICTIONS)
    assert result == pytest.approx({"sensitivity_at_2_fps_all": 2 / 3, "sensitivity_at_1_fps_positive": 0.5,
                                    "sensitivity_at_2_fps_positive": 2 / 3, "sensitivity_at_3_fps_positive": 2 / 3,
                                    "sensitivity_at_4_fps_positive": 2 / 3, "mean_sensitivity_positive": 0.625})
    assert curves["positive"].fps.tolist() == pytest.approx([0, 0.5, 0.5, 1.5, 2.0])
    assert curves["all"].sensitivity.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 2 / 3])


def test_the_curve_stops_after_the_first_point_beyond_the_largest_rate():
    """One volume, one box, 5 FPs at 0.9 and the TP at 0.1: points (0, 0) at 1.9, then (5, 1) at 0.1 (the TP and
    every FP) -> the official loop stops there; at 2 FPs: linear from (0, 0) to (5, 1) = 0.4."""
    labels = LABELS.iloc[[0]]
    boxes = BOXES.iloc[[0]]
    preds = pd.DataFrame([pred("S1", "lcc", 900, 900, 10, 0.9)] * 5 + [pred("S1", "lcc", 125, 125, 10, 0.1)])
    result, _ = evaluate(labels, boxes, preds)
    assert result["sensitivity_at_2_fps_all"] == pytest.approx(0.4)
    assert result["sensitivity_at_1_fps_positive"] == pytest.approx(0.2)


def literal_rule(labels: pd.DataFrame, boxes: pd.DataFrame, preds: pd.DataFrame) -> dict[str, float]:
    """The rule transcribed literally: a loop over predictions, boxes and thresholds (slow, obviously right)."""
    boxes = boxes.reset_index(drop=True)
    tp, gt = [], []
    for p in preds.itertuples():
        best, best_d = -1, np.inf
        for i, b in boxes.iterrows():
            if (b.StudyUID, b.View) != (p.StudyUID, p.View):
                continue
            tol = boxes[(boxes.StudyUID == p.StudyUID) & (boxes.View == p.View)].VolumeSlices.iloc[0] / 4
            d2 = np.hypot(p.X + p.Width / 2 - (b.X + b.Width / 2), p.Y + p.Height / 2 - (b.Y + b.Height / 2))
            dz = p.Z + p.Depth / 2 - b.Slice
            if d2 <= max(np.hypot(b.Width, b.Height) / 2, 100) and abs(dz) <= tol:
                d3 = np.sqrt(d2 ** 2 + dz ** 2)
                if d3 < best_d:
                    best, best_d = i, d3
        tp.append(best >= 0)
        gt.append(best)
    preds = preds.assign(TP=tp, GT=gt)
    thresholds = [preds.Score.max() + 1] + list(preds.Score[preds.TP]) + [preds.Score.min() - 1]

    def curve(pr: pd.DataFrame, n_volumes: int, rates: tuple[float, ...]) -> list[float]:
        fps, sens = [], []
        for t in sorted(thresholds, reverse=True):
            above = pr[pr.Score >= t]
            sens.append(above[above.TP].GT.nunique() / len(boxes))
            fps.append((~above.TP).sum() / n_volumes)
            if fps[-1] > max(rates):
                break
        return [float(np.interp(r, fps, sens)) for r in rates]

    positive = set(zip(boxes.StudyUID, boxes.View))
    in_pos = [k in positive for k in zip(preds.StudyUID, preds.View)]
    n_pos = sum(k in positive for k in zip(labels.StudyUID, labels.View))
    pos = curve(preds[in_pos], n_pos, (1.0, 2.0, 3.0, 4.0))
    return {"sensitivity_at_2_fps_all": curve(preds, len(labels), (2.0,))[0],
            **{f"sensitivity_at_{r}_fps_positive": s for r, s in zip((1, 2, 3, 4), pos)},
            "mean_sensitivity_positive": float(np.mean(pos))}


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_evaluation_equals_the_literal_rule(seed):
    rng = np.random.default_rng(seed)
    labels = pd.DataFrame({"StudyUID": [f"S{i}" for i in range(6)], "View": ["lcc"] * 6})
    boxes = pd.DataFrame({"StudyUID": [f"S{i}" for i in rng.integers(0, 4, 7)], "View": "lcc",
                          "Slice": rng.integers(0, 40, 7), "X": rng.integers(0, 300, 7), "Y": rng.integers(0, 300, 7),
                          "Width": rng.integers(20, 300, 7), "Height": rng.integers(20, 300, 7), "VolumeSlices": 40.0})
    n = 60
    preds = pd.DataFrame({"StudyUID": [f"S{i}" for i in rng.integers(0, 6, n)], "View": "lcc",
                          "X": rng.integers(0, 400, n).astype(float), "Y": rng.integers(0, 400, n).astype(float),
                          "Z": rng.integers(0, 40, n).astype(float), "Width": 40.0, "Height": 40.0, "Depth": 1.0,
                          "Score": np.round(rng.random(n), 1)})  # rounded: ties between scores
    assert evaluate(labels, boxes, preds)[0] == pytest.approx(literal_rule(labels, boxes, preds))


def write(tmp_path, name: str, frame: pd.DataFrame):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_bad_predictions_name_the_file_and_the_problem(tmp_path):
    missing = write(tmp_path, "p1.csv", PREDICTIONS.drop(columns="Depth"))
    with pytest.raises(DataError, match=r"p1\.csv: missing column\(s\) Depth"):
        read_predictions(missing)
    text = PREDICTIONS.astype({"Score": object})
    text.loc[3, "Score"] = "high"
    bad = write(tmp_path, "p2.csv", text)
    with pytest.raises(DataError, match=r"p2\.csv: column 'Score' row 5: expected a number, got 'high'") as err:
        read_predictions(bad)
    assert "\n" not in str(err.value)
    assert read_predictions(write(tmp_path, "ok.csv", PREDICTIONS))["Score"].dtype == float


def test_boxes_of_an_unknown_volume_are_an_error(tmp_path):
    labels = write(tmp_path, "labels.csv", LABELS)
    boxes = BOXES.copy()
    boxes.loc[2, "StudyUID"] = "S9"
    path = write(tmp_path, "boxes.csv", boxes)
    with pytest.raises(DataError, match=r"boxes\.csv: row 4: box for StudyUID 'S9' View 'rcc', a volume not in"):
        read_official_tables(labels, path)
    read_official_tables(labels, write(tmp_path, "good.csv", BOXES))


def test_evaluate_command_scores_files_and_reports_bad_ones_in_one_line(tmp_path, capsys):
    import json

    from adbench_dbt.cli import main
    from adbench_dbt.errors import EXIT_DATA

    files = ["--labels", str(write(tmp_path, "l.csv", LABELS)), "--boxes", str(write(tmp_path, "b.csv", BOXES))]
    with pytest.raises(SystemExit) as done:
        main(["evaluate", "--predictions", str(write(tmp_path, "p.csv", PREDICTIONS)), *files])
    assert done.value.code == 0
    assert json.loads(capsys.readouterr().out)["mean_sensitivity_positive"] == pytest.approx(0.625)
    with pytest.raises(SystemExit) as done:
        main(["evaluate", "--predictions", str(write(tmp_path, "bad.csv", PREDICTIONS.drop(columns="X"))), *files])
    err = capsys.readouterr().err.strip()
    assert done.value.code == EXIT_DATA and "bad.csv: missing column(s) X" in err and len(err.splitlines()) == 1
