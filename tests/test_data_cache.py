"""prepare -> slice cache -> lazy slices: content, reuse without decoding, staleness, failures, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import adbench_dbt.data.prepare as prepare_module
from adbench_dbt.data import BCSDBT, DataError
from adbench_dbt.data.cache import SCALE, standardize_frame
from adbench_dbt.data.cli import data_app
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

    monkeypatch.setattr(prepare_module, "read_frames", counting)
    return calls


def _cache_files(cache):
    return {p: p.stat().st_mtime_ns for p in (cache / "slices").rglob("*.npy")}


def test_prepare_caches_every_slice_once_and_reuses_it(download, tmp_path, count_decodes):
    cache = tmp_path / "cache"
    first = prepare(download, cache, workers=1)
    assert first["counts"] == {"test": 3, "train": 3, "validation": 2}
    assert first["decoded"] == first["slices"] == 8 and first["failed"] == [] and first["skipped"] == []
    assert len(count_decodes) == 7           # one decode call per volume (two test slices share a volume)
    files = _cache_files(cache)
    assert len(files) == 16 and not list(cache.rglob("*.tmp*"))

    count_decodes.clear()
    second = prepare(download, cache, workers=1)
    assert second["decoded"] == 0 and second["already_cached"] == 8 and count_decodes == []
    assert _cache_files(cache) == files
    assert second["fingerprint"] == first["fingerprint"]
    report = json.loads((cache / REPORT_NAME).read_text())
    assert report["fingerprint"] == first["fingerprint"]
    assert (cache / "manifests" / f"{first['fingerprint']}.json").is_file()


def test_cached_slices_match_a_fresh_decode(download, tmp_path):
    cache = tmp_path / "cache"
    prepare(download, cache, workers=2)
    data = BCSDBT(download, cache)
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
    prepare(download, cache)
    old = BCSDBT(download, cache)
    write_download(download, pixel_seed=100)          # same layout and UIDs, new pixel content
    new = BCSDBT(download, cache)
    assert new.fingerprint != old.fingerprint
    with pytest.raises(DataError, match=r"3 of 3 slices of split 'train' are not cached"):
        new.split("train")
    count_decodes.clear()
    assert prepare(download, cache)["decoded"] == 8 and len(count_decodes) == 7


def test_empty_cache_directory_is_an_error(download, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: slice cache is empty; run `adbench data prepare"):
        BCSDBT(download, tmp_path / "empty").split("train")


def test_truncated_volume_is_reported_and_leaves_nothing_half_written(download, tmp_path):
    volume = next(v for v in default_volumes() if v.split == "test" and v.view == "lcc")
    path = next(download.rglob(f"{volume.patient}/**/1-1.dcm"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    cache = tmp_path / "cache"
    report = prepare(download, cache)
    assert [f["volume"] for f in report["failed"]] == [volume.key]
    assert "cannot decode" in report["failed"][0]["reason"] and report["decoded"] == 6
    assert not list(cache.rglob("*.tmp*")) and not list((cache / "slices").glob(f"{volume.key}/*/*.npy"))
    on_disk = json.loads((cache / REPORT_NAME).read_text())
    assert on_disk["failed"] == report["failed"]
    with pytest.raises(DataError, match="2 of 3 slices of split 'test' are not cached"):
        BCSDBT(download, cache).split("test")


def test_default_cache_dir_comes_from_the_environment(download, tmp_path, monkeypatch):
    monkeypatch.setenv("ADBENCH_CACHE", str(tmp_path / "envcache"))
    assert BCSDBT(download).cache.directory == tmp_path / "envcache"


def test_cli_prepare(download, tmp_path):
    runner = CliRunner()
    result = runner.invoke(data_app, ["prepare", "--root", str(download), "--cache", str(tmp_path / "c"),
                                      "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "c" / REPORT_NAME).read_text())["decoded"] == 8
    missing = runner.invoke(data_app, ["prepare", "--root", str(tmp_path / "nowhere"), "--cache",
                                       str(tmp_path / "c")])
    assert missing.exit_code == 2 and "BCS-DBT root directory not found" in missing.output
