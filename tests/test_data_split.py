"""Split rules, tables, bad input and the manifest fingerprint (headers only: no pixels are decoded here)."""
from __future__ import annotations

import dataclasses
import re
import shutil

import pandas as pd
import pydicom
import pytest

from adbench_dbt.data import BCSDBT, DataError
from adbench_dbt.data.layout import TABLE_NAMES
from adbench_dbt.data.split import draw_frames, eligible_frame_range, load_definition, pick_volumes_per_patient

from data_helpers import COLS, BoxRow, Volume, default_boxes, default_volumes, write_download


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    return write_download(tmp_path_factory.mktemp("bcs") / "root")


def dataset(root, tmp_path, **options):
    return BCSDBT(root, cache=tmp_path / "cache", **options)


def ids(entries):
    return [e["id"] for e in entries]


def test_train_and_validation_take_k_normal_slices_per_volume(download, tmp_path):
    every = dataset(download, tmp_path, volumes_per_patient=None)
    assert [e["volume"] for e in every.entries("train")] == [
        "DBT-P00001_DBT-S00001_lcc", "DBT-P00001_DBT-S00001_rmlo", "DBT-P00002_DBT-S00002_rcc"]
    assert len(every.entries("validation")) == 2
    five = dataset(download, tmp_path, protocol="swiecicki")
    per_volume = pd.Series([e["volume"] for e in five.entries("train")]).value_counts()
    # 8-frame volumes have 4 eligible (central) frames, the 12-frame volume 6
    assert per_volume.to_dict() == {"DBT-P00001_DBT-S00001_lcc": 4, "DBT-P00001_DBT-S00001_rmlo": 4,
                                    "DBT-P00002_DBT-S00002_rcc": 5}
    for entry in five.entries("train"):
        n = 12 if entry["volume"].startswith("DBT-P00002") else 8
        assert entry["frame"] in eligible_frame_range(n, (0.25, 0.75)) and entry["boxes"] == []


def _patients(entries):
    return pd.Series([e["volume"].split("_")[0] for e in entries]).value_counts().to_dict()


def test_picard_takes_one_normal_volume_per_patient(tmp_path):
    """A patient with several normal volumes (two studies, four views) contributes exactly one of them."""
    volumes = [Volume("train", "DBT-P00001", study, view) for study in ("DBT-S00001", "DBT-S00002")
               for view in ("lcc", "lmlo", "rcc", "rmlo")]
    volumes += [Volume("train", "DBT-P00002", "DBT-S00003", "lcc"), Volume("train", "DBT-P00002", "DBT-S00003",
                                                                             "rcc", label="cancer"),
                Volume("validation", "DBT-P00010", "DBT-S00010", "lcc"),
                Volume("validation", "DBT-P00010", "DBT-S00010", "rmlo"),
                Volume("test", "DBT-P00020", "DBT-S00020", "lcc", label="cancer")]
    root = write_download(tmp_path / "root", volumes, [b for b in default_boxes() if b.patient == "DBT-P00020"])
    picard = dataset(root, tmp_path)
    assert picard.definition.volumes_per_patient == 1
    assert _patients(picard.entries("train")) == {"DBT-P00001": 1, "DBT-P00002": 1}
    assert _patients(picard.entries("validation")) == {"DBT-P00010": 1}
    assert [e["volume"] for e in picard.entries("train")][1] == "DBT-P00002_DBT-S00003_lcc"  # its only normal
    # seeded and stable: the same choice every time; another seed may choose another volume
    assert picard.entries("train") == dataset(root, tmp_path / "again").entries("train")
    chosen = {tuple(e["volume"] for e in dataset(root, tmp_path, seed=seed).entries("train")) for seed in range(8)}
    assert len(chosen) > 1
    two = dataset(root, tmp_path, volumes_per_patient=2)
    assert _patients(two.entries("train")) == {"DBT-P00001": 2, "DBT-P00002": 1}
    every = dataset(root, tmp_path, protocol="swiecicki")
    assert len({e["volume"] for e in every.entries("train")}) == 9 and every.definition.volumes_per_patient is None


def test_volume_choice_per_patient_does_not_depend_on_other_patients():
    keys = [(f"P{p}", "S", view) for p in range(30) for view in ("lcc", "lmlo", "rcc", "rmlo")]
    chosen = pick_volumes_per_patient(keys, 1, seed=0)
    assert len(chosen) == 30 and len({k[0] for k in chosen}) == 30
    without_one = pick_volumes_per_patient([k for k in keys if k[0] != "P3"], 1, seed=0)
    assert without_one == [k for k in chosen if k[0] != "P3"]
    assert len({k[2] for k in chosen}) > 1   # not always the same view
    assert pick_volumes_per_patient(keys, 1, seed=1) != chosen


def test_frame_draw_is_seeded_per_volume():
    definition = load_definition(slices_per_volume=3)
    assert draw_frames("A_B_lcc", 60, definition) == draw_frames("A_B_lcc", 60, definition)
    assert eligible_frame_range(60, (0.25, 0.75)) == range(15, 45)
    draws = {tuple(draw_frames(f"P{i}_S_lcc", 60, definition)) for i in range(20)}
    assert len(draws) > 10
    other_seed = load_definition(slices_per_volume=3, seed=1)
    assert any(draw_frames(f"P{i}_S_lcc", 60, definition) != draw_frames(f"P{i}_S_lcc", 60, other_seed)
               for i in range(5))


def test_test_split_is_every_cancer_slice_with_boxes_merged_and_left_aligned(download, tmp_path):
    data = dataset(download, tmp_path)
    test = {e["id"]: e["boxes"] for e in data.entries("test")}
    assert test == {
        "DBT-P00020_DBT-S00020_lcc_f004": [[5, 10, 8, 8], [20, 30, 6, 6]],
        "DBT-P00020_DBT-S00020_lcc_f006": [[2, 2, 5, 5]],
        "DBT-P00021_DBT-S00021_rmlo_f002": [[COLS - 30 - 10, 20, 10, 12]],   # right view: x' = W - x - w
    }
    assert data.test_split == "test" and "test-fallback" not in data.split_names
    assert "test-benign" not in data.split_names
    benign = dataset(download, tmp_path, test_benign=True)
    assert ids(benign.entries("test-benign")) == ["DBT-P00022_DBT-S00022_lmlo_f005"]


def test_edge_exclusion_drops_boxes_near_the_border(download, tmp_path):
    data = dataset(download, tmp_path, edge_exclusion_px=4)
    assert ids(data.entries("test")) == ["DBT-P00020_DBT-S00020_lcc_f004", "DBT-P00021_DBT-S00021_rmlo_f002"]
    tight = dataset(download, tmp_path, edge_exclusion_px=9)
    assert {e["id"]: e["boxes"] for e in tight.entries("test")} == {
        "DBT-P00020_DBT-S00020_lcc_f004": [[20, 30, 6, 6]]}


def test_fallback_when_the_test_split_has_no_boxes(tmp_path):
    root = write_download(tmp_path / "root", test_boxes=False)
    data = dataset(root, tmp_path)
    assert data.test_split == "test-fallback" and data.manifest["test_split"] == "test-fallback"
    assert [(e["id"], e["boxes"]) for e in data.entries("test-fallback")] == [
        ("DBT-P00004_DBT-S00004_rcc_f003", [[COLS - 20 - 8, 10, 8, 6]])]
    with pytest.raises(DataError, match="no test boxes, the documented fallback is 'test-fallback'"):
        data.split("test")


def test_fallback_on_request_and_train_volume_subset(download, tmp_path):
    data = dataset(download, tmp_path, test_fallback="always", train_volumes=2)
    assert data.test_split == "test" and len(data.entries("test-fallback")) == 1
    assert len(data.entries("train")) == 2


def test_older_table_names_and_classic_paths_are_accepted(download, tmp_path):
    old = write_download(tmp_path / "old", name_index=2)
    assert (old / TABLE_NAMES["paths"]["train"][2]).is_file()
    assert dataset(old, tmp_path).fingerprint != ""
    rcc = dataset(download, tmp_path).manifest["volumes"]["DBT-P00002_DBT-S00002_rcc"]
    assert rcc["source"].startswith("manifest-")   # this one only exists at its classic_path


def test_fingerprint_is_independent_of_the_root_path(download, tmp_path):
    copy = tmp_path / "elsewhere" / "bcs"
    shutil.copytree(download, copy)
    assert dataset(copy, tmp_path).fingerprint == dataset(download, tmp_path / "other").fingerprint
    assert len(dataset(download, tmp_path).fingerprint) == 64


@pytest.mark.parametrize("options", [{"seed": 1}, {"edge_exclusion_px": 1}, {"protocol": "swiecicki"},
                                     {"volumes_per_patient": None}, {"volumes_per_patient": 2}])
def test_fingerprint_changes_with_options(download, tmp_path, options):
    assert dataset(download, tmp_path, **options).fingerprint != dataset(download, tmp_path).fingerprint


def test_fingerprint_changes_when_a_box_moves(tmp_path):
    boxes = default_boxes()
    moved = [dataclasses.replace(b, x=b.x + 1) if b.slice == 2 else b for b in boxes]
    a = write_download(tmp_path / "a", boxes=boxes)
    b = write_download(tmp_path / "b", boxes=moved)
    shutil.copytree(a, tmp_path / "a2")
    for name in TABLE_NAMES["boxes"]["test"][:1]:
        shutil.copy(b / name, tmp_path / "a2" / name)
    assert dataset(tmp_path / "a2", tmp_path).fingerprint != dataset(a, tmp_path).fingerprint


# ---- bad input ---------------------------------------------------------------------------------------------

def _replace_table(root, kind, split, edit):
    path = root / TABLE_NAMES[kind][split][0]
    edit(pd.read_csv(path, dtype=str)).to_csv(path, index=False)
    return path


def test_table_missing_a_column(tmp_path):
    root = write_download(tmp_path / "root")
    _replace_table(root, "labels", "train", lambda t: t.drop(columns=["Cancer"]))
    with pytest.raises(DataError, match=r"BCS-DBT-labels-train-v2\.csv: missing column\(s\) Cancer"):
        dataset(root, tmp_path)


def test_labels_without_the_file_paths_table_is_a_broken_download(tmp_path):
    root = write_download(tmp_path / "root")
    (root / TABLE_NAMES["paths"]["validation"][0]).unlink()
    with pytest.raises(DataError, match=r"BCS-DBT-labels-validation-PHASE-2-Jan-2024\.csv.* present but no file-paths "
                                        r"table for split 'validation'; expected one of BCS-DBT-file-paths-validation"):
        dataset(root, tmp_path)


def test_non_integer_box_coordinate(tmp_path):
    root = write_download(tmp_path / "root")
    _replace_table(root, "boxes", "test", lambda t: t.assign(X="abc"))
    with pytest.raises(DataError, match=r"boxes-test-v2-PHASE-2-Jan-2024\.csv: column 'X' row 2: expected an integer"):
        dataset(root, tmp_path)


def _root_with(tmp_path, volumes=None, boxes=None):
    return write_download(tmp_path / "root", volumes, boxes)


@pytest.mark.parametrize("case, message", [
    ("missing-file", r"volume file not found at descriptive_path '.*' nor classic_path"),
    ("unknown-view", r"file-paths-train-v2\.csv: unknown view code 'xcc'"),
    ("not-dbt", r"1-1\.dcm: SOP class .* is not Breast Tomosynthesis"),
])
def test_bad_volumes_raise_when_strict_and_are_skipped_otherwise(tmp_path, case, message):
    volumes = default_volumes()
    if case == "unknown-view":
        volumes.append(Volume("train", "DBT-P00009", "DBT-S00009", "xcc"))
        root = _write_with_bad_view(tmp_path, volumes)
    else:
        root = _root_with(tmp_path, volumes)
    if case == "missing-file":
        next(root.rglob("DBT-P00001/**/lcc/1-1.dcm")).unlink()
    if case == "not-dbt":
        path = next(root.rglob("DBT-P00001/**/lcc/1-1.dcm"))
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.save_as(path)
    with pytest.raises(DataError, match=message):
        dataset(root, tmp_path, strict=True, volumes_per_patient=None)
    lenient = dataset(root, tmp_path, volumes_per_patient=None)
    assert len(lenient.skipped) == 1
    assert re.search(message, f"{lenient.skipped[0]['file']}: {lenient.skipped[0]['reason']}")
    bad_volume = lenient.skipped[0]["volume"]
    assert all(e["volume"] != bad_volume for entries in lenient.manifest["splits"].values() for e in entries)


@pytest.mark.parametrize("bad, message", [
    (BoxRow("test", "DBT-P00020", "DBT-S00020", "lcc", 4, COLS - 3, 10, 8, 8),
     r"row 7: box \(X=45, Y=10, Width=8, Height=8\) on Slice 4 lies outside the 64 x 48 image"),
    (BoxRow("test", "DBT-P00020", "DBT-S00020", "lcc", 9, 1, 1, 8, 8),
     r"row 7: box \(X=1, Y=1, Width=8, Height=8\) on Slice 9: Slice is beyond the volume's 8 frames"),
    (BoxRow("test", "DBT-P00020", "DBT-S00020", "lcc", 4, 30, 30, 0, 5),
     r"row 7: box \(X=30, Y=30, Width=0, Height=5\) on Slice 4: expected a positive Width and Height"),
    (BoxRow("test", "DBT-P00020", "DBT-S00020", "lcc", 4, -2, 30, 5, 5), r"row 7: .* lies outside"),
])
def test_a_bad_box_drops_that_box_only_and_is_a_named_skip(tmp_path, bad, message):
    root = _root_with(tmp_path, boxes=default_boxes() + [bad])
    with pytest.raises(DataError, match=r"boxes-test-v2-PHASE-2-Jan-2024\.csv: volume DBT-P00020_DBT-S00020_lcc .*"
                                        + message):
        dataset(root, tmp_path, strict=True)
    lenient = dataset(root, tmp_path)
    [record] = lenient.skipped
    assert (record["split"], record["volume"], record["file"]) == (
        "test", "DBT-P00020_DBT-S00020_lcc", TABLE_NAMES["boxes"]["test"][0])
    assert re.search(message, record["reason"]) and "only this box is dropped" in record["reason"]
    # the volume's valid boxes are all still there, exactly as without the bad row
    assert lenient.entries("test") == dataset(_root_with(tmp_path / "good"), tmp_path).entries("test")


def test_a_slice_whose_only_box_is_bad_leaves_the_test_set(tmp_path):
    boxes = default_boxes() + [BoxRow("test", "DBT-P00021", "DBT-S00021", "rmlo", 5, 40, 60, 20, 20)]
    data = dataset(_root_with(tmp_path, boxes=boxes), tmp_path)
    assert "DBT-P00021_DBT-S00021_rmlo_f005" not in ids(data.entries("test"))
    assert "DBT-P00021_DBT-S00021_rmlo_f002" in ids(data.entries("test"))
    assert [r["volume"] for r in data.skipped] == ["DBT-P00021_DBT-S00021_rmlo"]


def _write_with_bad_view(tmp_path, volumes):
    """write_volume refuses unknown views, so write a valid file and rename the view in the tables only."""
    good = [v if v.view != "xcc" else dataclasses.replace(v, view="lcc") for v in volumes]
    root = write_download(tmp_path / "root", good)
    for kind in ("paths", "labels"):
        _replace_table(root, kind, "train", lambda t: t.assign(
            View=t["View"].where(t["PatientID"] != "DBT-P00009", "xcc")))
    return root


def test_unknown_split_definition_keys_are_rejected(download, tmp_path):
    with pytest.raises(DataError, match=r"^unknown split option 'slices_per_volum'; expected one of name, protocol, "
                                        r"seed, slices_per_volume, volumes_per_patient, "):
        dataset(download, tmp_path, slices_per_volum=3)
    with pytest.raises(DataError, match=r"bcs-dbt\.yaml: invalid split definition: seed: .*\(got 'x'\)$"):
        dataset(download, tmp_path, seed="x")
    with pytest.raises(DataError, match="unknown protocol 'konz'"):
        dataset(download, tmp_path, protocol="konz")


def test_skips_and_exclusions_keep_the_fingerprint_portable(tmp_path):
    root = write_download(tmp_path / "a" / "root")
    next(root.rglob("DBT-P00001/**/lcc/1-1.dcm")).unlink()
    copy = shutil.copytree(root, tmp_path / "b" / "elsewhere")
    a, b = dataset(root, tmp_path, volumes_per_patient=None), dataset(copy, tmp_path, volumes_per_patient=None)
    assert a.skipped[0]["reason"].startswith("<root>: volume file not found") and a.fingerprint == b.fingerprint
    excluded = dataset(root, tmp_path, volumes_per_patient=None,
                       exclude_volumes=["DBT-P00001_DBT-S00001_lcc", "DBT-P00020_DBT-S00020_lcc"])
    assert excluded.skipped == [] and [e["volume"] for e in excluded.entries("test")] == ["DBT-P00021_DBT-S00021_rmlo"]
