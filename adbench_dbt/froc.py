"""The BCS-DBT / DBTex detection score, exactly as the dataset authors' `duke_dbt_data.evaluate` computes it.

A prediction (`StudyUID, View, X, Y, Z, Width, Height, Depth, Score`; centre = X + Width/2, Y + Height/2,
Z + Depth/2) is a true positive for a box of the same view when its in-plane centre lies within
max(half the box diagonal, 100 px) of the box centre (X + Width/2, Y + Height/2) and its Z centre within the view's
VolumeSlices / 4 of the box's Slice. A prediction matching several boxes goes to the nearest one (3-D distance,
Z included; on a tie the box listed first in the table). Thresholds are every true-positive score plus max + 1 and
min - 1; at each one, sensitivity = distinct boxes hit / all boxes and FPs per volume = non-TP predictions at or
above it / volumes of the labels table, stopping after the first point beyond the largest FP rate asked for;
sensitivity at a rate is numpy's linear interpolation over that curve. The same is repeated on the volumes that
have boxes (labels and predictions restricted to them, all boxes kept). Vectorised: one join of predictions and
boxes per view, and counts at every threshold by binary search instead of a filter per threshold.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from adbench_dbt.data.errors import DataError

PREDICTION_COLUMNS = ("StudyUID", "View", "X", "Y", "Z", "Width", "Height", "Depth", "Score")
VIEW_KEY = ["StudyUID", "View"]
MIN_DISTANCE = 100.0
FPS_ALL = (2.0,)
FPS_POSITIVE = (1.0, 2.0, 3.0, 4.0)


@dataclass(frozen=True)
class FrocCurve:
    """The curve the official function interpolates on: FPs per volume and sensitivity, thresholds descending."""

    fps: np.ndarray
    sensitivity: np.ndarray

    def at(self, rates: tuple[float, ...]) -> list[float]:
        return [float(np.interp(rate, self.fps, self.sensitivity)) for rate in rates]


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A DBTex predictions CSV, checked: every column present, coordinates and scores numeric and finite."""
    frame = _read_csv(path)
    _require(frame, PREDICTION_COLUMNS, path)
    for column in PREDICTION_COLUMNS[2:]:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna() | ~np.isfinite(numbers.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise DataError(f"{path}: column {column!r} row {row + 2}: expected a number, got "
                            f"{frame[column].iloc[row]!r}")
        frame[column] = numbers.astype(float)
    frame["StudyUID"] = frame["StudyUID"].astype(str)
    frame["View"] = frame["View"].astype(str)
    return frame


def read_official_tables(labels_path: str | Path, boxes_path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labels and boxes tables as the evaluation needs them; a box of a volume absent from the labels table is
    an error (it could never be counted against a volume)."""
    labels, boxes = _read_csv(labels_path), _read_csv(boxes_path)
    _require(labels, ("StudyUID", "View"), labels_path)
    _require(boxes, ("StudyUID", "View", "Slice", "X", "Y", "Width", "Height", "VolumeSlices"), boxes_path)
    for column in ("Slice", "X", "Y", "Width", "Height", "VolumeSlices"):
        numbers = pd.to_numeric(boxes[column], errors="coerce")
        if numbers.isna().any():
            row = int(numbers.isna().to_numpy().argmax())
            raise DataError(f"{boxes_path}: column {column!r} row {row + 2}: expected a number, got "
                            f"{boxes[column].iloc[row]!r}")
        boxes[column] = numbers.astype(float)
    for frame in (labels, boxes):
        frame["StudyUID"] = frame["StudyUID"].astype(str)
        frame["View"] = frame["View"].astype(str)
    known = pd.MultiIndex.from_frame(labels[VIEW_KEY])
    unknown = ~pd.MultiIndex.from_frame(boxes[VIEW_KEY]).isin(known)
    if unknown.any():
        row = int(unknown.argmax())
        raise DataError(f"{boxes_path}: row {row + 2}: box for StudyUID {boxes['StudyUID'].iloc[row]!r} View "
                        f"{boxes['View'].iloc[row]!r}, a volume not in {labels_path}")
    return labels, boxes


def _read_csv(path: str | Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV table ({str(err).splitlines()[0]})") from None


def _require(frame: pd.DataFrame, columns: tuple[str, ...], path: str | Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")


def match(predictions: pd.DataFrame, boxes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(is_tp, box id) per prediction row; box id = the box's row position in `boxes` (-1: no box)."""
    preds = predictions.reset_index(drop=True).assign(_pred=lambda f: np.arange(len(f)))
    gt = boxes.reset_index(drop=True).assign(_box=lambda f: np.arange(len(f)))
    gt["_offset"] = gt.groupby(VIEW_KEY, sort=False)["VolumeSlices"].transform("first") / 4
    pairs = preds[VIEW_KEY + ["_pred", "X", "Y", "Z", "Width", "Height", "Depth"]].merge(
        gt[VIEW_KEY + ["_box", "X", "Y", "Width", "Height", "Slice", "_offset"]], on=VIEW_KEY, suffixes=("", "_b"))
    dx = (pairs["X"] + pairs["Width"] / 2) - (pairs["X_b"] + pairs["Width_b"] / 2)
    dy = (pairs["Y"] + pairs["Height"] / 2) - (pairs["Y_b"] + pairs["Height_b"] / 2)
    dz = (pairs["Z"] + pairs["Depth"] / 2) - pairs["Slice"]
    radius = np.maximum(np.sqrt(pairs["Width_b"] ** 2 + pairs["Height_b"] ** 2) / 2.0, MIN_DISTANCE)
    hit = (np.sqrt(dx * dx + dy * dy) <= radius) & (np.abs(dz) <= pairs["_offset"])
    hits = pairs.loc[hit, ["_pred", "_box"]].assign(_dist=np.sqrt(dx * dx + dy * dy + dz * dz)[hit])
    nearest = hits.sort_values(["_pred", "_dist", "_box"], kind="stable").drop_duplicates("_pred")
    is_tp = np.zeros(len(preds), bool)
    box_id = np.full(len(preds), -1, np.int64)
    is_tp[nearest["_pred"].to_numpy()] = True
    box_id[nearest["_pred"].to_numpy()] = nearest["_box"].to_numpy()
    return is_tp, box_id


def froc_curve(scores: np.ndarray, is_tp: np.ndarray, box_id: np.ndarray, thresholds: np.ndarray,
               n_volumes: int, n_boxes: int, max_fps: float) -> FrocCurve:
    """Sensitivity and FPs per volume at each threshold (descending, duplicates kept, as the official loop)."""
    thresholds = np.sort(np.asarray(thresholds, float))[::-1]
    fp_scores = np.sort(scores[~is_tp])
    n_fp = len(fp_scores) - np.searchsorted(fp_scores, thresholds, side="left")
    best = pd.Series(scores[is_tp]).groupby(box_id[is_tp]).max().to_numpy()  # each box: its best TP score
    best = np.sort(best)
    n_tp = len(best) - np.searchsorted(best, thresholds, side="left")
    fps = n_fp / n_volumes if n_volumes else np.full(len(thresholds), np.inf)
    sensitivity = n_tp / n_boxes
    beyond = np.flatnonzero(fps > max_fps)
    stop = beyond[0] + 1 if beyond.size else len(thresholds)
    return FrocCurve(fps[:stop].astype(float), sensitivity[:stop].astype(float))


def evaluate(labels: pd.DataFrame, boxes: pd.DataFrame, predictions: pd.DataFrame) -> tuple[dict[str, float],
                                                                                              dict[str, FrocCurve]]:
    """The official figures (same names as `duke_dbt_data.evaluate`) and the two curves they come from."""
    if predictions.empty:
        zeros = {"sensitivity_at_2_fps_all": 0.0, **{f"sensitivity_at_{int(r)}_fps_positive": 0.0
                                                    for r in FPS_POSITIVE}, "mean_sensitivity_positive": 0.0}
        empty = FrocCurve(np.zeros(1), np.zeros(1))
        return zeros, {"all": empty, "positive": empty}
    scores = predictions["Score"].to_numpy(float)
    is_tp, box_id = match(predictions, boxes)
    thresholds = np.concatenate(([scores.max() + 1.0], scores[is_tp], [scores.min() - 1.0]))
    all_curve = froc_curve(scores, is_tp, box_id, thresholds, len(labels), len(boxes), max(FPS_ALL))
    positive_views = pd.MultiIndex.from_frame(boxes[VIEW_KEY])
    in_pos = pd.MultiIndex.from_frame(predictions[VIEW_KEY]).isin(positive_views)
    n_pos_volumes = int(pd.MultiIndex.from_frame(labels[VIEW_KEY]).isin(positive_views).sum())
    pos_curve = froc_curve(scores[in_pos], is_tp[in_pos], box_id[in_pos], thresholds, n_pos_volumes, len(boxes),
                           max(FPS_POSITIVE))
    positive = pos_curve.at(FPS_POSITIVE)
    result = {"sensitivity_at_2_fps_all": all_curve.at(FPS_ALL)[0],
              **{f"sensitivity_at_{int(r)}_fps_positive": s for r, s in zip(FPS_POSITIVE, positive)},
              "mean_sensitivity_positive": float(np.mean(positive))}
    return result, {"all": all_curve, "positive": pos_curve}
