"""The BCS-DBT CSV tables: find them under the download root, validate every row, join them per volume.

What each defect does (an error, a named skip, or a notice) is the table in datasets/README.md ("Bad input").
Rows are named by their line in the file (the header is line 1), so a message points at the line to fix.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from adbench_dbt.data.errors import DataError
from adbench_dbt.data.layout import (BOX_CLASSES, BOXES_COLUMNS, FLAG_COLUMNS, KEY_COLUMNS, LABELS_COLUMNS,
                                     PATHS_COLUMNS, SPLITS, TABLE_NAMES, VIEWS)

Key = tuple[str, str, str]  # (PatientID, StudyUID, View)
Record = dict[str, str]     # {"split", "volume", "file", "reason"}: a skip or a notice, portable (no root path)
KINDS = ("paths", "labels", "boxes")
ROW = "row"  # extra column: the record's line in its CSV file

_COLUMNS = {"paths": PATHS_COLUMNS, "labels": LABELS_COLUMNS, "boxes": BOXES_COLUMNS}
_INTEGER_COLUMNS = {"labels": FLAG_COLUMNS, "boxes": ("Slice", "X", "Y", "Width", "Height", "VolumeSlices")}
# Columns that make two rows "the same record": a repeated box differing only in Subject/AD is the same box.
_IDENTITY = {"paths": PATHS_COLUMNS, "labels": LABELS_COLUMNS,
             "boxes": KEY_COLUMNS + ("Slice", "X", "Y", "Width", "Height", "Class")}


@dataclass(frozen=True)
class SplitTables:
    """The tables of one split; `labels`/`boxes` are None when the download lacks them (e.g. test)."""

    split: str
    paths: pd.DataFrame
    labels: pd.DataFrame | None
    boxes: pd.DataFrame | None
    files: dict[str, str]             # table kind -> file name actually read (recorded in the manifest)
    notices: tuple[Record, ...] = ()  # identical duplicate rows that were collapsed


def looked_for(kind: str, split: str) -> str:
    """The accepted file names of one table, for messages about a table that is absent."""
    return ", ".join(TABLE_NAMES[kind][split])


def find_table(root: Path, kind: str, split: str) -> Path | None:
    """First of the accepted names (current `-v2`/PHASE-2 first, then older names) present under `root`."""
    for name in TABLE_NAMES[kind][split]:
        if (root / name).is_file():
            return root / name
    return None


def read_table(path: Path, kind: str) -> pd.DataFrame:
    """Read and validate one table (columns, keys, integers, 0/1 flags, box classes); adds the `row` column."""
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
    for column in KEY_COLUMNS:
        _check(path, frame, column, frame[column] == "", "a non-empty identifier")
    for column in _INTEGER_COLUMNS.get(kind, ()):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        _check(path, frame, column, numbers.isna() | (numbers != numbers.round()), "an integer")
        frame[column] = numbers.astype("int64")
    if kind == "labels":
        for column in FLAG_COLUMNS:
            _check(path, frame, column, ~frame[column].isin((0, 1)), "0 or 1")
    if kind == "boxes":
        _check(path, frame, "Class", ~frame["Class"].str.lower().isin(BOX_CLASSES), " or ".join(BOX_CLASSES))
        frame["Class"] = frame["Class"].str.lower()
    frame[ROW] = frame.index + 2
    return frame


def _check(path: Path, frame: pd.DataFrame, column: str, bad: pd.Series, expected: str) -> None:
    """One-line error naming the first bad row of `column`."""
    if bad.any():
        index = int(bad.to_numpy().argmax())
        value = frame[column].iloc[index]
        shown = repr(value) if isinstance(value, str) else str(value)
        raise DataError(f"{path}: column {column!r} row {index + 2}: expected {expected}, got {shown}")


def collapse_duplicates(frame: pd.DataFrame, kind: str, split: str, path: Path) -> tuple[pd.DataFrame, list[Record]]:
    """Identical rows are one record (each repeat becomes a notice); paths/labels giving one volume two different
    records are an error, because either choice would silently change the split."""
    identity, keys = list(_IDENTITY[kind]), list(KEY_COLUMNS)
    repeats = frame.duplicated(identity, keep="first")
    first_rows = frame.groupby(identity, sort=False)[ROW].transform("first")
    notices = [{"split": split, "volume": volume_key(*frame.loc[i, keys]), "file": path.name,
                "reason": f"row {frame.at[i, ROW]} repeats row {first_rows[i]}; the two are read as one record"}
               for i in frame.index[repeats]]
    frame = frame.loc[~repeats].reset_index(drop=True)
    if kind in ("paths", "labels"):
        clash = frame.duplicated(keys, keep=False)
        if clash.any():
            first = frame.loc[clash].iloc[0]
            same = frame.loc[(frame[keys] == first[keys]).all(axis=1)]
            differ = [c for c in _COLUMNS[kind] if same[c].nunique() > 1]
            raise DataError(f"{path}: rows {' and '.join(str(r) for r in same[ROW])} give volume "
                            f"{volume_key(*first[keys])} different {', '.join(differ)}; expected one row per volume")
    return frame, notices


def load_split_tables(root: Path, split: str) -> SplitTables | None:
    """The tables of `split`, or None when the download has none of them (the split is simply not available).

    The file-paths table is required as soon as the split's labels or boxes are present: without it those tables
    name volumes that cannot be found, which is a broken download rather than a subset.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    found = {kind: find_table(root, kind, split) for kind in KINDS}
    if found["paths"] is None:
        present = [path.name for path in found.values() if path is not None]
        if not present:
            return None
        raise DataError(f"{root}: {', '.join(present)} present but no file-paths table for split {split!r}; "
                        f"expected one of {looked_for('paths', split)}")
    tables: dict[str, pd.DataFrame | None] = {}
    notices: list[Record] = []
    for kind, path in found.items():
        if path is None:
            tables[kind] = None
            continue
        tables[kind], repeats = collapse_duplicates(read_table(path, kind), kind, split, path)
        notices += repeats
    files = {kind: path.name for kind, path in found.items() if path is not None}
    return SplitTables(split, tables["paths"], tables["labels"], tables["boxes"], files, tuple(notices))


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


def normal_keys(labels: pd.DataFrame) -> tuple[set[Key], list[tuple[Key, str]]]:
    """Volumes labelled Normal and nothing else, plus (volume, why) for rows whose flags are not exactly one 1:
    such a volume is not used as normal, and the caller must say so rather than drop it silently."""
    flags = labels[list(FLAG_COLUMNS)]
    count = flags.sum(axis=1)
    normal = (labels["Normal"] == 1) & (count == 1)
    keys = set(labels.loc[normal, list(KEY_COLUMNS)].itertuples(index=False, name=None))
    unclear = []
    for index in labels.index[count != 1]:
        key = tuple(labels.loc[index, list(KEY_COLUMNS)])
        set_flags = [c for c in FLAG_COLUMNS if flags.at[index, c] == 1]
        got = "none" if not set_flags else ", ".join(f"{c}=1" for c in set_flags)
        unclear.append((key, f"row {labels.at[index, ROW]}: expected exactly one of {', '.join(FLAG_COLUMNS)} "
                             f"to be 1, got {got}; the volume is not used as a normal volume"))
    return keys, unclear
