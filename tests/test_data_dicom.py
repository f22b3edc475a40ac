"""Multi-frame JPEG 2000 DBT volumes: round trip, single-frame decoding, header, windowing, bad files."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from adbench_dbt.data.dicom import apply_window, read_frames, read_header, write_volume
from adbench_dbt.data.errors import DataError
from adbench_dbt.data.layout import BREAST_TOMOSYNTHESIS_SOP_CLASS

from data_helpers import breast_frames


@pytest.fixture
def volume(tmp_path):
    frames = breast_frames(5, "R", seed=3)
    path = tmp_path / "vol" / "1-1.dcm"
    write_volume(path, frames, patient_id="DBT-P00001", study_uid="DBT-S00001", view="rmlo",
                 window_center=512, window_width=900)
    return path, frames


def test_round_trip_is_lossless_and_decodes_requested_frames_in_order(volume):
    path, frames = volume
    np.testing.assert_array_equal(read_frames(path, range(5)), frames)
    picked = read_frames(path, [3, 0, 3])
    assert picked.dtype == np.uint16 and picked.shape == (3, *frames.shape[1:])
    np.testing.assert_array_equal(picked, frames[[3, 0, 3]])


def test_file_is_a_jpeg2000_breast_tomosynthesis_volume(volume):
    path, frames = volume
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert ds.SOPClassUID == BREAST_TOMOSYNTHESIS_SOP_CLASS and ds.BitsStored == 10
    assert (ds.ImageLaterality, ds.ViewPosition) == ("R", "MLO")
    voi = ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0]
    assert (float(voi.WindowCenter), float(voi.WindowWidth)) == (512.0, 900.0)
    assert not list(path.parent.glob("*.tmp*"))


def test_header_comes_from_the_functional_groups(volume):
    path, frames = volume
    header = read_header(path)
    assert (header.n_frames, header.rows, header.cols) == frames.shape
    assert (header.window_center, header.window_width) == (512.0, 900.0)
    assert header.patient_id == "DBT-P00001" and header.sop_instance_uid


def test_apply_window_maps_the_window_linearly_onto_unit_range_and_clips():
    raw = np.array([0, 100, 300, 500, 900], np.uint16)
    out = apply_window(raw, center=300, width=400)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(DataError, match="window width"):
        apply_window(raw, 300, 0)


def test_write_rejects_values_beyond_bits_stored(tmp_path):
    frames = np.full((2, 8, 8), 1024, np.uint16)
    with pytest.raises(DataError, match="Bits Stored 10"):
        write_volume(tmp_path / "x.dcm", frames, patient_id="p", study_uid="s", view="lcc",
                     window_center=1, window_width=2)
    with pytest.raises(DataError, match="unknown view code 'xcc'"):
        write_volume(tmp_path / "x.dcm", frames // 2, patient_id="p", study_uid="s", view="xcc",
                     window_center=1, window_width=2)
    assert not list(tmp_path.iterdir())


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.dcm: DICOM file not found"):
        read_frames(tmp_path / "nope.dcm", [0])


def test_frame_index_beyond_the_volume(volume):
    path, _ = volume
    with pytest.raises(DataError, match=r"1-1\.dcm: frame index 5 outside the volume \(it has 5 frames\)"):
        read_frames(path, [0, 5])


def test_truncated_volume_fails_to_decode_with_its_name(volume):
    path, _ = volume
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=r"1-1\.dcm: cannot decode frames"):
        read_frames(path, [4])


def test_garbage_file_is_not_dicom(tmp_path):
    path = tmp_path / "bad.dcm"
    path.write_bytes(b"not a dicom file at all")
    with pytest.raises(DataError, match=r"bad\.dcm: not a readable DICOM file"):
        read_header(path)


@pytest.mark.parametrize("edit, message", [
    (lambda ds: setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.2"), "is not Breast Tomosynthesis"),
    (lambda ds: delattr(ds, "NumberOfFrames"), "not a multi-frame volume"),
    (lambda ds: delattr(ds, "SharedFunctionalGroupsSequence"), "no window center/width"),
])
def test_non_dbt_headers_are_rejected(volume, edit, message):
    path, _ = volume
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)
    with pytest.raises(DataError, match=message) as info:
        read_header(path)
    assert str(path) in str(info.value)


def test_window_falls_back_to_per_frame_groups_and_takes_the_first_of_several(volume):
    path, _ = volume
    ds = pydicom.dcmread(path)
    voi = ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0]
    voi.WindowCenter, voi.WindowWidth = [400, 600], [700, 1000]
    ds.PerFrameFunctionalGroupsSequence = ds.SharedFunctionalGroupsSequence
    del ds.SharedFunctionalGroupsSequence
    ds.save_as(path)
    header = read_header(path)
    assert (header.window_center, header.window_width) == (400.0, 700.0)
