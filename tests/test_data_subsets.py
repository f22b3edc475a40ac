"""Downloads holding only some splits' tables, and `open_dataset` (one manifest per run, split options)."""
from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

import adbench_dbt.data.dataset as dataset_module
from adbench_dbt.data import BCSDBT, DataError
from adbench_dbt.data.layout import TABLE_NAMES
from adbench_dbt.data.prepare import prepare
from adbench_dbt.datasets_resolve import open_dataset

from data_helpers import COLS, write_download


def quiet() -> Console:
    return Console(file=io.StringIO(), width=300)


def _all_names(kind, split):
    return r", ".join(name.replace(".", r"\.") for name in TABLE_NAMES[kind][split])


def test_train_and_test_only_prepares_both_and_lists_validation_as_absent(tmp_path):
    root = write_download(tmp_path / "root", splits=("train", "test"))
    console = quiet()
    report = prepare(root, tmp_path / "cache", workers=1, console=console)
    assert report["counts"] == {"test": 3, "train": 2} and report["failed"] == []
    assert report["decoded"] == 5 and report["test_split"] == "test"
    assert report["unavailable"] == {
        "validation": f"no file-paths table for split 'validation' (looked for "
                      f"{', '.join(TABLE_NAMES['paths']['validation'])})"}
    assert re.search(r"validation\s*│\s*-\s*│\s*absent: no file-paths table for split 'validation'",
                     console.file.getvalue())
    data = BCSDBT(root, tmp_path / "cache", prepare=False)
    assert data.split_names == ["test", "train"] and len(data.split("train")) == 2
    # both the -v2 name and the older names are named in the error
    with pytest.raises(DataError, match=rf"root: split 'validation' is not available: no file-paths table for split "
                                        rf"'validation' \(looked for {_all_names('paths', 'validation')}\)$"):
        data.split("validation")


def test_test_only_download_prepares_the_test_split(tmp_path):
    root = write_download(tmp_path / "root", splits=("test",))
    report = prepare(root, tmp_path / "cache", workers=1, console=quiet())
    assert report["counts"] == {"test": 3} and report["decoded"] == 3 and report["test_split"] == "test"
    assert set(report["unavailable"]) == {"train", "validation"}
    data = BCSDBT(root, tmp_path / "cache", prepare=False)
    assert len(data.split("test")) == 3
    with pytest.raises(DataError, match=rf"split 'train' is not available: no file-paths table for split 'train' "
                                        rf"\(looked for {_all_names('paths', 'train')}\)"):
        data.entries("train")


def test_test_only_download_without_boxes_names_the_missing_fallback(tmp_path):
    root = write_download(tmp_path / "root", splits=("test",), test_boxes=False)
    data = BCSDBT(root, tmp_path / "cache", console=quiet())
    assert data.split_names == [] and data.test_split == "test"
    assert set(data.unavailable) == {"train", "validation", "test", "test-fallback"}
    with pytest.raises(DataError, match=rf"split 'test' is not available: no boxes table for split 'test' \(looked "
                                        rf"for {_all_names('boxes', 'test')}\); nor is its fallback 'test-fallback': "
                                        rf"no file-paths table for split 'train'"):
        data.split("test")
    report = prepare(root, tmp_path / "cache", workers=1, console=quiet())
    assert report["counts"] == {} and report["decoded"] == 0


def test_without_test_tables_the_train_fallback_is_the_test_set(tmp_path):
    root = write_download(tmp_path / "root", splits=("train", "validation"))
    data = BCSDBT(root, tmp_path / "cache", workers=1, console=quiet())
    assert data.test_split == "test-fallback" and "test" in data.unavailable
    assert [(s.id, s.boxes) for s in data.split(data.test_split)] == [
        ("DBT-P00004_DBT-S00004_rcc_f003", ((COLS - 20 - 8, 10, 8, 6),))]
    with pytest.raises(DataError, match="no file-paths table for split 'test'.*the documented fallback is "
                                        "'test-fallback'"):
        data.split("test")


def test_train_without_labels_is_unavailable_naming_the_labels_files(tmp_path):
    root = write_download(tmp_path / "root")
    (root / TABLE_NAMES["labels"]["train"][0]).unlink()
    data = BCSDBT(root, tmp_path / "cache", console=quiet())
    assert "train" not in data.split_names and "validation" in data.split_names
    with pytest.raises(DataError, match=rf"no labels table for split 'train' \(looked for "
                                        rf"{_all_names('labels', 'train')}\)"):
        data.split("train")


# ---- open_dataset ---------------------------------------------------------------------------------------------

def test_open_dataset_builds_the_manifest_once_and_prepares_each_split_on_demand(tmp_path, monkeypatch):
    root = write_download(tmp_path / "root")
    built = []
    original = dataset_module.build_manifest
    monkeypatch.setattr(dataset_module, "build_manifest", lambda *a, **k: built.append(1) or original(*a, **k))
    opened = open_dataset(str(root), cache=tmp_path / "cache", workers=1)
    assert built == [1] and opened.tag == "bcs-dbt" and opened.root == root
    assert opened.fingerprint == opened.dataset.fingerprint
    assert not (tmp_path / "cache" / "slices").exists()            # nothing decoded until a split is asked for
    test = opened.dataset.split(opened.dataset.test_split)
    assert len(test) == 3 and test[0].image.shape == (64, 48)
    assert not any((tmp_path / "cache" / "slices").glob("DBT-P00001_*")) and built == [1]


def test_open_dataset_split_options_reach_the_manifest_and_the_fingerprint(tmp_path):
    root = write_download(tmp_path / "root")
    default = open_dataset(str(root), cache=tmp_path / "cache")
    swiecicki = open_dataset(str(root), cache=tmp_path / "cache", split_options={"protocol": "swiecicki"})
    seeded = open_dataset(str(root), cache=tmp_path / "cache", split_options={"seed": 3, "test_benign": True})
    assert len({default.fingerprint, swiecicki.fingerprint, seeded.fingerprint}) == 3
    assert swiecicki.dataset.manifest["options"]["slices_per_volume"] == 5
    assert seeded.dataset.manifest["options"]["seed"] == 3 and "test-benign" in seeded.dataset.split_names
    with pytest.raises(DataError, match=r"^unknown split option 'sead'; expected one of "):
        open_dataset(str(root), cache=tmp_path / "cache", split_options={"sead": 3})


def test_open_dataset_rejects_a_path_that_is_not_a_directory(tmp_path):
    with pytest.raises(DataError, match=r"--dataset .*nowhere: not a directory"):
        open_dataset(str(tmp_path / "nowhere"))
