"""Phantom generator: spectrum, determinism, labels/boxes consistency, raw orientation of right views."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from scipy import ndimage

from adbench_dbt.data.dataset import BCSDBT
from adbench_dbt.data.dicom import read_frames, read_header
from adbench_dbt.data.layout import TABLE_NAMES
from adbench_dbt.data.orientation import needs_laterality_flip
from adbench_dbt.data.phantom import GENERATOR_VERSION, ensure_phantom, generate_phantom, get_preset
from adbench_dbt.data.phantom.anatomy import build_breast, sample_geometry
from adbench_dbt.data.phantom.lesions import LesionPlan, place_lesion, sample_plan
from adbench_dbt.data.phantom.noise import depth_noise, power_law_noise, spectrum_slope
from adbench_dbt.data.phantom.volume import VolumeSpec, render_volume
from adbench_dbt.data.phantom.writer import stored_orientation, table_box


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantom") / "tiny"
    generate_phantom(root, "tiny", seed=0)
    return root


def _table(root: Path, kind: str, split: str) -> pd.DataFrame:
    return pd.read_csv(root / TABLE_NAMES[kind][split][0])


def _file_hashes(root: Path) -> dict[str, str]:
    """Every file of the tree (tables, DICOMs, summary), byte for byte."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("beta", [2.5, 3.0, 3.5])
def test_power_law_noise_has_the_requested_slope(beta):
    slopes = np.array([spectrum_slope(f) for f in power_law_noise((256, 256), beta, np.random.default_rng(0),
                                                                  count=6)])
    # one field's fitted slope scatters by ~0.1 around beta
    assert abs(slopes.mean() - beta) < 0.1 and np.all(np.abs(slopes - beta) < 0.35), slopes


def test_parenchyma_frames_keep_beta_three_and_vary_slowly_through_depth():
    frames = depth_noise((256, 192), 9, 3.0, np.random.default_rng(1), correlation_frames=1.5)
    slopes = [spectrum_slope(f) for f in frames]
    assert all(2.5 <= s <= 3.5 for s in slopes), slopes
    near = np.corrcoef(frames[4].ravel(), frames[5].ravel())[0, 1]
    far = np.corrcoef(frames[0].ravel(), frames[8].ravel())[0, 1]
    assert near > 0.6 and abs(far) < 0.4, (near, far)


def test_same_seed_same_files_and_split_fingerprint_other_seed_different(tiny, tmp_path):
    again = tmp_path / "again"
    generate_phantom(again, "tiny", seed=0, workers=2)
    first, second = _file_hashes(tiny), _file_hashes(again)
    assert first == second and sum(k.endswith(".dcm") for k in first) == 13
    # UIDs are derived from the volume identity, so the split fingerprint (which includes them) is stable too
    fingerprints = [BCSDBT(root, tmp_path / f"cache-{i}").fingerprint for i, root in enumerate((tiny, again))]
    assert fingerprints[0] == fingerprints[1]
    uids = {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in tiny.rglob("*.dcm")}
    assert len(uids) == 13  # still one per volume
    other = tmp_path / "other"
    generate_phantom(other, "tiny", seed=1)
    third = _file_hashes(other)
    assert first.keys().isdisjoint(k for k in third if k.endswith(".dcm"))  # other ids, other paths
    volumes = lambda hashes: {v for k, v in hashes.items() if k.endswith(".dcm")}  # noqa: E731
    assert volumes(first).isdisjoint(volumes(third))


def test_tables_have_official_names_and_columns_and_files_exist_at_descriptive_path(tiny):
    preset = get_preset("tiny")
    for split, plan in preset.splits.items():
        paths, labels = _table(tiny, "paths", split), _table(tiny, "labels", split)
        assert len(paths) == len(labels) == plan.normal + plan.actionable + plan.benign + plan.cancer
        for row in paths.itertuples():
            assert (tiny / row.descriptive_path).is_file()
            assert not (tiny / row.classic_path).exists()
            assert row.descriptive_path.startswith(f"Breast-Cancer-Screening-DBT/{row.PatientID}/01-01-2000-"
                                                   f"{row.StudyUID}-")
            assert row.PatientID.startswith("DBT-P") and row.StudyUID.startswith("DBT-S")
        assert (labels[["Normal", "Actionable", "Benign", "Cancer"]].sum(axis=1) == 1).all()


def test_lesions_only_in_cancer_volumes_benign_boxes_only_in_benign_volumes(tiny):
    for split in ("train", "validation", "test"):
        labels = _table(tiny, "labels", split).set_index(["PatientID", "StudyUID", "View"])
        boxes = _table(tiny, "boxes", split)
        boxed = set(zip(boxes.PatientID, boxes.StudyUID, boxes.View))
        for key, row in labels.iterrows():
            classes = set(boxes[(boxes.PatientID == key[0]) & (boxes.StudyUID == key[1])
                                & (boxes.View == key[2])].Class)
            if row.Cancer:
                assert classes == {"cancer"}, key
            elif row.Benign:
                assert classes == {"benign"}, key
            else:
                assert key not in boxed, key
    test_labels = _table(tiny, "labels", "test")
    assert test_labels.Cancer.sum() == 4 and test_labels.Benign.sum() == 1


def test_boxes_lie_inside_the_image_and_on_a_frame_of_the_volume(tiny):
    paths = _table(tiny, "paths", "test").set_index(["PatientID", "StudyUID", "View"])
    boxes = _table(tiny, "boxes", "test")
    assert len(boxes) == 5
    for row in boxes.itertuples():
        header = read_header(tiny / paths.loc[(row.PatientID, row.StudyUID, row.View), "descriptive_path"])
        assert row.VolumeSlices == header.n_frames and 0 <= row.Slice < header.n_frames
        assert row.X >= 0 and row.Y >= 0 and row.Width > 0 and row.Height > 0
        assert row.X + row.Width <= header.cols and row.Y + row.Height <= header.rows
        assert row.AD in (0, 1) and row.Class in ("cancer", "benign")


def test_right_views_are_stored_raw_and_left_views_as_read(tiny):
    seen = set()
    for split in ("train", "test"):
        for row in _table(tiny, "paths", split).itertuples():
            frame = read_frames(tiny / row.descriptive_path, [0])[0]
            assert needs_laterality_flip(frame, row.View) == row.View.startswith("r"), row.View
            seen.add(row.View[0])
    assert seen == {"l", "r"}


def test_orientation_helpers_match_the_reader_conventions():
    frames = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert np.array_equal(stored_orientation(frames, "rcc")[:, ::-1, ::-1][:, :, ::-1], frames)
    assert stored_orientation(frames, "lmlo") is frames
    assert table_box((1, 2, 3, 1), "rmlo", width=10) == (6, 2, 3, 1)
    assert table_box((1, 2, 3, 1), "lcc", width=10) == (1, 2, 3, 1)


def test_box_areas_span_the_real_range_at_demo_size():
    preset = get_preset("demo")
    rng = np.random.default_rng(0)
    breast = build_breast(sample_geometry((preset.rows, preset.cols), "CC", rng))
    fractions = []
    for _ in range(60):
        lesion = place_lesion(sample_plan(rng, preset.lesion_area), breast, preset.n_frames, preset.spacing_mm, rng)
        x, y, w, h = lesion.box
        assert breast.mask[y: y + h, x: x + w].mean() > 0.9  # the lesion sits in the breast
        fractions.append(w * h / (preset.rows * preset.cols))
    assert min(fractions) < 0.003 and max(fractions) > 0.015, (min(fractions), max(fractions))
    assert 0.0003 < min(fractions) and max(fractions) < 0.06


def test_masses_are_as_bright_as_gland_not_brighter():
    """'Bright = cancer' must not work: the mean of a mass's core falls among the breast's own tissue (smoothed to
    the core's size), not at the top of it (generator v1 discs: median percentile ~93, up to 100; v3: ~62). A mass
    may be the densest tissue of a fatty breast (as in real mammograms), but only rarely."""
    percentiles = []
    for seed in range(6):
        for malignant in (True, False):
            spec = VolumeSpec(shape=(256, 200), n_frames=5, view="lcc", density=0.2 + 0.1 * seed,
                              lesions=(LesionPlan("circumscribed_mass", 0.01, malignant),))
            volume = render_volume(spec, [seed, 99])
            lesion = volume.lesions[0]
            image = volume.frames[lesion.focus_frame]
            x, y, w, h = lesion.box
            core = image[y + h // 4: y + 3 * h // 4 + 1, x + w // 4: x + 3 * w // 4 + 1]
            tissue = ndimage.uniform_filter(image, core.shape)[ndimage.binary_erosion(image > 0, iterations=8)]
            percentiles.append(100 * (tissue < core.mean()).mean())
    assert np.median(percentiles) < 80, sorted(percentiles)
    assert sum(p >= 99 for p in percentiles) <= len(percentiles) // 10, sorted(percentiles)


def test_ensure_phantom_generates_once_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("ADBENCH_CACHE", str(tmp_path))
    root = ensure_phantom("tiny", seed=3)
    assert root == tmp_path / f"phantom-tiny-seed3-v{GENERATOR_VERSION}"
    marker = root / "BCS-DBT-labels-train-v2.csv"
    stamp = marker.stat().st_mtime_ns
    assert ensure_phantom("tiny", seed=3) == root and marker.stat().st_mtime_ns == stamp
    (root / "phantom.json").unlink()  # an incomplete tree is generated again
    assert ensure_phantom("tiny", seed=3, root=tmp_path) == root and (root / "phantom.json").is_file()


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown phantom preset 'huge'.*tiny, demo, full"):
        generate_phantom(tmp_path / "x", "huge")


def test_demo_preset_gives_picard_forty_training_patients_and_about_150_test_slices():
    """PICARD keeps one normal volume per patient; the demo writes normal studies as four views of one patient, so
    it needs 40 four-view studies for 40 training slices; ~150 cancer boxes keep a mean-AUROC CI near +-0.03."""
    from collections import Counter

    from adbench_dbt.data.phantom.plan import plan_volumes

    jobs = plan_volumes(get_preset("demo"), seed=0)
    normal_train = Counter(j.patient for j in jobs if j.split == "train" and j.group == "Normal")
    assert len(normal_train) >= 40 and set(normal_train.values()) == {4}
    cancer_test = [j for j in jobs if j.split == "test" and j.group == "Cancer"]
    assert len(cancer_test) >= 120 and len({j.patient for j in cancer_test}) == len(cancer_test) // 2
