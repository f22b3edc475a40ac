"""The BCS-DBT CSV tables: find them under the download root, check their columns, join them per volume."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from adbench_dbt.data.errors import DataError
from adbench_dbt.data.layout import (BOXES_COLUMNS, KEY_COLUMNS, LABELS_COLUMNS, PATHS_COLUMNS, SPLITS,
                                     TABLE_NAMES, VIEWS)

_COLUMNS = {"paths": PATHS_COLUMNS, "labels": LABELS_COLUMNS, "boxes": BOXES_COLUMNS}
_INTEGER_COLUMNS = {"labels": ("Normal", "Actionable", "Benign", "Cancer"),
                    "boxes": ("Slice", "X", "Y", "Width", "Height", "VolumeSlices")}


@dataclass(frozen=True)
class SplitTables:
    """The three tables of one split; `labels`/`boxes` are None when the download lacks them (e.g. test)."""

    split: str
    paths: pd.DataFrame
    labels: pd.DataFrame | None
    boxes: pd.DataFrame | None
    files: dict[str, str]  # table kind -> file name actually read (recorded in the manifest)


def find_table(root: Path, kind: str, split: str) -> Path | None:
    """First of the accepted names (current `-v2`/PHASE-2 first, then older names) present under `root`."""
    for name in TABLE_NAMES[kind][split]:
        if (root / name).is_file():
            return root / name
    return None


def read_table(path: Path, kind: str) -> pd.DataFrame:
    """Read one table as strings/ints, failing with the file name when a column is missing or malformed."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in _COLUMNS[kind] if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(_COLUMNS[kind])}")
    frame = frame[list(_COLUMNS[kind])].copy()
    for column in frame.columns:
        frame[column] = frame[column].str.strip()
    for column in _INTEGER_COLUMNS.get(kind, ()):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna() | (numbers != numbers.round())
        if bad.any():
            row = int(bad.idxmax())
            raise DataError(f"{path}: column {column!r} row {row + 2}: expected an integer, "
                            f"got {frame.at[row, column]!r}")
        frame[column] = numbers.astype("int64")
    if kind == "boxes":
        frame["Class"] = frame["Class"].str.lower()
    return frame


def load_split_tables(root: Path, split: str) -> SplitTables:
    """The tables of `split`; the file-paths table is required, labels and boxes are optional."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    tables: dict[str, pd.DataFrame | None] = {}
    files: dict[str, str] = {}
    for kind in ("paths", "labels", "boxes"):
        path = find_table(root, kind, split)
        if path is None:
            if kind == "paths":
                raise DataError(f"{root}: no file-paths table for split {split!r}; expected one of "
                                f"{', '.join(TABLE_NAMES[kind][split])}")
            tables[kind] = None
            continue
        tables[kind] = read_table(path, kind)
        files[kind] = path.name
    return SplitTables(split, tables["paths"], tables["labels"], tables["boxes"], files)


def volume_key(patient: str, study: str, view: str) -> str:
    """The identifier of one volume; slice ids append `_f{frame:03d}`."""
    return f"{patient}_{study}_{view}"


def view_problem(view: str) -> str | None:
    return None if view in VIEWS else f"unknown view code {view!r}: expected one of {', '.join(VIEWS)}"


def resolve_volume_path(root: Path, descriptive: str, classic: str) -> str:
    """Relative path of the volume as it exists on disk: `descriptive_path` or else `classic_path`."""
    for candidate in (descriptive, classic):
        if candidate and (root / candidate).is_file():
            return Path(candidate).as_posix()
    raise DataError(f"{root}: volume file not found at descriptive_path {descriptive!r} "
                    f"nor classic_path {classic!r}")


def normal_keys(tables: SplitTables) -> set[tuple[str, str, str]]:
    """Volumes labelled Normal (and nothing else) in the split's labels table."""
    if tables.labels is None:
        names = ", ".join(TABLE_NAMES["labels"][tables.split])
        raise DataError(f"no labels table for split {tables.split!r}; expected one of {names}")
    labels = tables.labels
    normal = (labels["Normal"] == 1) & (labels[["Actionable", "Benign", "Cancer"]].sum(axis=1) == 0)
    return set(labels.loc[normal, list(KEY_COLUMNS)].itertuples(index=False, name=None))
