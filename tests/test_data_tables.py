"""Every table row is validated on reading: each defect is an error naming file/column/row/value, or a named skip
or notice (datasets/README.md, "Bad input"); none changes a split silently."""
from __future__ import annotations

import pandas as pd
import pytest

from adbench_dbt.data import BCSDBT, DataError
from adbench_dbt.data.layout import TABLE_NAMES

from data_helpers import write_download


@pytest.fixture
def root(tmp_path):
    return write_download(tmp_path / "root")


def dataset(root, tmp_path, **options):
    return BCSDBT(root, cache=tmp_path / "cache", **options)


def edit_table(root, kind, split, edit):
    path = root / TABLE_NAMES[kind][split][0]
    edit(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)
    return path


def set_cell(table, patient, view, column, value):
    table.loc[(table["PatientID"] == patient) & (table["View"] == view), column] = value
    return table


def test_a_flag_that_is_not_0_or_1_is_an_error_not_a_silent_drop(root, tmp_path):
    """Normal=2 used to remove the volume from training with "0 skipped"."""
    edit_table(root, "labels", "train", lambda t: set_cell(t, "DBT-P00002", "rcc", "Normal", "2"))
    with pytest.raises(DataError, match=r"BCS-DBT-labels-train-v2\.csv: column 'Normal' row 4: expected 0 or 1, "
                                        r"got 2$"):
        dataset(root, tmp_path)


def test_normal_together_with_another_flag_is_a_named_skip(root, tmp_path):
    edit_table(root, "labels", "train", lambda t: set_cell(t, "DBT-P00002", "rcc", "Cancer", "1"))
    data = dataset(root, tmp_path)
    assert "DBT-P00002_DBT-S00002_rcc" not in {e["volume"] for e in data.entries("train")}
    assert data.skipped == [{"split": "train", "volume": "DBT-P00002_DBT-S00002_rcc",
                             "file": "BCS-DBT-labels-train-v2.csv",
                             "reason": "row 4: expected exactly one of Normal, Actionable, Benign, Cancer to be 1, "
                                       "got Normal=1, Cancer=1; the volume is not used as a normal volume"}]
    with pytest.raises(DataError, match=r"^BCS-DBT-labels-train-v2\.csv: row 4: expected exactly one .* got "
                                        r"Normal=1, Cancer=1"):
        dataset(root, tmp_path, strict=True)


def test_a_row_without_any_flag_is_a_named_skip(root, tmp_path):
    edit_table(root, "labels", "validation", lambda t: set_cell(t, "DBT-P00011", "rmlo", "Normal", "0"))
    data = dataset(root, tmp_path)
    assert [(r["split"], r["volume"]) for r in data.skipped] == [("validation", "DBT-P00011_DBT-S00011_rmlo")]
    assert "got none" in data.skipped[0]["reason"] and len(data.entries("validation")) == 1


@pytest.mark.parametrize("kind, split, column, value, expected", [
    ("boxes", "test", "Class", "malignant", r"column 'Class' row 2: expected benign or cancer, got 'malignant'"),
    ("paths", "train", "PatientID", "", r"column 'PatientID' row 2: expected a non-empty identifier, got ''"),
    ("labels", "test", "View", "", r"column 'View' row 2: expected a non-empty identifier"),
    ("boxes", "test", "Slice", "4.5", r"column 'Slice' row 2: expected an integer, got '4.5'"),
])
def test_malformed_cells_name_file_column_row_and_value(root, tmp_path, kind, split, column, value, expected):
    def first_row(table):
        table.loc[0, column] = value
        return table

    path = edit_table(root, kind, split, first_row)
    with pytest.raises(DataError, match=rf"^{path}: {expected}"):
        dataset(root, tmp_path)


@pytest.mark.parametrize("kind, split", [("paths", "train"), ("labels", "train"), ("boxes", "test")])
def test_identical_duplicate_rows_are_one_record_and_a_notice(root, tmp_path, kind, split):
    clean = dataset(root, tmp_path)
    edit_table(root, kind, split, lambda t: pd.concat([t, t.iloc[[1]]], ignore_index=True))
    data = dataset(root, tmp_path / "again")
    assert data.manifest["splits"] == clean.manifest["splits"] and data.skipped == []
    [notice] = data.notices
    rows = len(pd.read_csv(root / TABLE_NAMES[kind][split][0]))
    assert notice["file"] == TABLE_NAMES[kind][split][0] and notice["split"] == split
    assert notice["reason"] == f"row {rows + 1} repeats row 3; the two are read as one record"
    assert dataset(root, tmp_path, strict=True).notices == data.notices   # strict fails on skips, not notices


@pytest.mark.parametrize("kind, column, value", [("labels", "Normal", "0"), ("paths", "descriptive_path", "x.dcm")])
def test_one_volume_with_two_different_rows_is_an_error(root, tmp_path, kind, column, value):
    def conflicting(table):
        extra = table.iloc[[0]].copy()
        extra[column] = value
        return pd.concat([table, extra], ignore_index=True)

    path = edit_table(root, kind, "train", conflicting)
    with pytest.raises(DataError, match=rf"^{path}: rows 2 and 7 give volume DBT-P00001_DBT-S00001_lcc different "
                                        rf"{column}; expected one row per volume$"):
        dataset(root, tmp_path)
