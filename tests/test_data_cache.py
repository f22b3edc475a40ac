"""prepare -> slice cache -> lazy slices: content, reuse without decoding, staleness, failures, lazy preparation
by `BCSDBT.split`, the CLI."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console

import adbench_dbt.data.cache as cache_module
from adbench_dbt.data import BCSDBT, DataError
from adbench_dbt.data.cache import SCALE, standardize_frame
from adbench_dbt.data.dicom import read_frames
from adbench_dbt.data.prepare import REPORT_NAME, prepare

from data_helpers import WINDOW, default_volumes, write_download


@pytest.fixture
def download(tmp_path):
    return write_download(tmp_path / "root")


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []

    def counting(path, frames):
        calls.append((path.name, list(frames)))
        return read_frames(path, frames)

    monkeypatch.setattr(cache_module, "read_frames", counting)
    return calls


def _cache_files(cache):
    return {p: p.stat().st_mtime_ns for p in (cache / "slices").rglob("*.npy")}


def test_prepare_caches_every_slice_once_and_reuses_it(download, tmp_path, count_decodes):
    cache = tmp_path / "cache"
    first = prepare(download, cache, workers=1)
    assert first["counts"] == {"test": 3, "train": 2, "validation": 2}   # PICARD: one volume per patient
    assert first["decoded"] == first["slices"] == 7 and first["failed"] == [] and first["skipped"] == []
    assert len(count_decodes) == 6           # one decode call per volume (two test slices share a volume)
    files = _cache_files(cache)
    assert len(files) == 14 and not list(cache.rglob("*.tmp*"))

    count_decodes.clear()
    second = prepare(download, cache, workers=1)
    assert second["decoded"] == 0 and second["already_cached"] == 7 and count_decodes == []
    assert _cache_files(cache) == files
    assert second["fingerprint"] == first["fingerprint"]
    report = json.loads((cache / REPORT_NAME).read_text())
    assert report["fingerprint"] == first["fingerprint"]
    assert (cache / "manifests" / f"{first['fingerprint']}.json").is_file()


def test_cached_slices_match_a_fresh_decode(download, tmp_path):
    cache = tmp_path / "cache"
    prepare(download, cache, workers=2)
    data = BCSDBT(download, cache, prepare=False)
    test = {s.id: s for s in data.split("test")}
    sl = test["DBT-P00021_DBT-S00021_rmlo_f002"]
    volume = data.manifest["volumes"][sl.id.rsplit("_", 1)[0]]
    raw = read_frames(download / volume["source"], [sl.frame])[0]
    expected, expected_mask = standardize_frame(raw, "rmlo", *WINDOW)
    image, mask = sl.load()
    assert image.dtype == np.float32 and image.shape == sl.shape == (64, 48)
    np.testing.assert_allclose(image, expected / SCALE, atol=1e-7)
    np.testing.assert_array_equal(mask, expected_mask)
    assert mask[:, 0].any() and not mask[:, -1].any()    # stored with the breast on the left: flipped + mirrored
    crop_image, crop_mask = sl.crop(10, 5, 20, 16)
    np.testing.assert_array_equal(crop_image, image[10:30, 5:21])
    np.testing.assert_array_equal(crop_mask, mask[10:30, 5:21])
    assert (sl.patient, sl.study, sl.view, sl.boxes) == ("DBT-P00021", "DBT-S00021", "rmlo", ((8, 20, 10, 12),))


def test_replaced_source_file_is_never_served_from_the_old_entry(download, tmp_path, count_decodes):
    cache = tmp_path / "cache"
    prepare(download, cache, workers=1)
    old = BCSDBT(download, cache)
    write_download(download, pixel_seed=100)          # same layout and UIDs, new pixel content
    new = BCSDBT(download, cache, prepare=False)
    assert new.fingerprint != old.fingerprint
    with pytest.raises(DataError, match=r"2 of 2 slices of split 'train' are not cached"):
        new.split("train")
    count_decodes.clear()
    assert prepare(download, cache, workers=1)["decoded"] == 7 and len(count_decodes) == 6


def test_without_prepare_an_empty_cache_directory_is_an_error(download, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: slice cache is empty; run `adbench data prepare"):
        BCSDBT(download, tmp_path / "empty", prepare=False).split("train")


def test_split_decodes_exactly_the_missing_slices_of_that_split(download, tmp_path, count_decodes):
    cache = tmp_path / "cache"
    data = BCSDBT(download, cache, workers=1, console=Console(file=io.StringIO()))
    test = data.split("test")
    assert sorted(name for name, _ in count_decodes) == ["1-1.dcm", "1-1.dcm"]   # the two test volumes only
    assert sorted(frames for _, frames in count_decodes) == [[2], [4, 6]]
    assert not any((cache / "slices").glob("DBT-P0000[12]_*"))                 # train untouched
    assert [s.image.shape for s in test] == [(64, 48)] * 3
    count_decodes.clear()
    assert [s.id for s in data.split("test")] == [s.id for s in test] and count_decodes == []
    # a slice lost from the cache is decoded again, alone
    next((cache / "slices").glob("DBT-P00020_*/*/f006.image.npy")).unlink()
    data.split("test")
    assert [frames for _, frames in count_decodes] == [[6]]
    # `adbench data prepare` takes the same path: only train and validation are left to decode
    count_decodes.clear()
    report = prepare(download, cache, workers=1, console=Console(file=io.StringIO()))
    assert report["decoded"] == 4 and report["already_cached"] == 3 and len(count_decodes) == 4


def test_split_with_a_volume_that_fails_to_decode_names_it(download, tmp_path):
    volume = _truncate_test_lcc(download)
    data = BCSDBT(download, tmp_path / "cache", workers=1, console=Console(file=io.StringIO()))
    with pytest.raises(DataError, match=rf"1 volume\(s\) of split 'test' failed to decode \(first: {volume.key}: "
                                        r"[^\n]*cannot decode[^\n]*\); fix the file or list the volume in the split "
                                        r"option exclude_volumes$"):
        data.split("test")
    assert len(data.split("train")) == 2
    excluded = BCSDBT(download, tmp_path / "cache", workers=1, exclude_volumes=[volume.key])
    assert [s.id for s in excluded.split("test")] == ["DBT-P00021_DBT-S00021_rmlo_f002"]


def _truncate_test_lcc(download):
    volume = next(v for v in default_volumes() if v.split == "test" and v.view == "lcc")
    path = next(download.rglob(f"{volume.patient}/**/1-1.dcm"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return volume


def test_truncated_volume_is_reported_and_leaves_nothing_half_written(download, tmp_path):
    volume = _truncate_test_lcc(download)
    cache = tmp_path / "cache"
    console = Console(file=io.StringIO(), width=200)
    report = prepare(download, cache, workers=1, console=console)
    assert [f["volume"] for f in report["failed"]] == [volume.key]
    assert "cannot decode" in report["failed"][0]["reason"] and report["decoded"] == 5
    assert "\n" not in report["failed"][0]["reason"]
    assert not list(cache.rglob("*.tmp*")) and not list((cache / "slices").glob(f"{volume.key}/*/*.npy"))
    on_disk = json.loads((cache / REPORT_NAME).read_text())
    assert on_disk["failed"] == report["failed"]
    printed = console.file.getvalue()
    assert "Skipped, failed and collapsed records" in printed and f"{volume.key}" in printed
    with pytest.raises(DataError, match="2 of 3 slices of split 'test' are not cached"):
        BCSDBT(download, cache, prepare=False).split("test")


def test_default_cache_dir_comes_from_the_environment(download, tmp_path, monkeypatch):
    monkeypatch.setenv("ADBENCH_CACHE", str(tmp_path / "envcache"))
    assert BCSDBT(download).cache.directory == tmp_path / "envcache"
