"""End to end: the `tiny` phantom read back through the BCS-DBT reader (`BCSDBT` + `prepare`), like real data."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from adbench_dbt.data.dataset import BCSDBT
from adbench_dbt.data.phantom import generate_phantom, get_preset
from adbench_dbt.data.phantom.plan import plan_volumes
from adbench_dbt.data.phantom.volume import render_volume
from adbench_dbt.data.prepare import prepare


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> BCSDBT:
    base = tmp_path_factory.mktemp("phantom-read")
    generate_phantom(base / "root", "tiny", seed=0)
    prepare(base / "root", base / "cache")
    return BCSDBT(base / "root", base / "cache")


@pytest.fixture(scope="module")
def jobs() -> dict[str, object]:
    return {f"{j.patient}_{j.study}_{j.view}": j for j in plan_volumes(get_preset("tiny"), seed=0)}


def _features(image: np.ndarray, detail: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Brightness, texture, brightest specks and fine detail of one region."""
    values = image[region]
    return np.array([values.mean(), values.std(), np.percentile(values, 99), detail[region].mean()])


def _box_vs_ring(image, detail, tissue, box) -> np.ndarray:
    x, y, w, h = box
    inside = np.zeros_like(tissue)
    inside[y: y + h, x: x + w] = True
    pad = max(w, h) // 2 + 2
    ring = np.zeros_like(tissue)
    ring[max(y - pad, 0): y + h + pad, max(x - pad, 0): x + w + pad] = True
    return _features(image, detail, inside & tissue) - _features(image, detail, ring & ~inside & tissue)


def box_contrast(image: np.ndarray, tissue: np.ndarray, box, rng: np.random.Generator, draws: int = 60) -> float:
    """How unusual the box-vs-ring difference is, in standard deviations of the same statistic over random
    boxes of the same size elsewhere in the breast (largest over the four features)."""
    detail = np.abs(image - ndimage.gaussian_filter(image, 1.5))
    x, y, w, h = box
    observed = _box_vs_ring(image, detail, tissue, box)
    away = np.ones_like(tissue)
    away[max(y - h, 0): y + 2 * h, max(x - w, 0): x + 2 * w] = False
    centres = np.argwhere(ndimage.binary_erosion(tissue, iterations=max(w, h)) & away)
    null = np.array([_box_vs_ring(image, detail, tissue, (cx - w // 2, cy - h // 2, w, h))
                     for cy, cx in centres[rng.choice(len(centres), draws)]])
    return float(np.max(np.abs(observed - null.mean(0)) / (null.std(0) + 1e-9)))


def test_reader_sees_every_split_with_boxes_only_on_test_slices(dataset):
    counts = {name: len(dataset.entries(name)) for name in dataset.split_names}
    # PICARD takes one normal volume per patient: the phantom writes normal volumes as four-view studies of one
    # patient (train: 6 volumes of 2 patients, validation: 2 of 1); the benign volume is not a test slice
    assert counts == {"train": 2, "validation": 1, "test": 4}
    assert dataset.test_split == "test" and not dataset.skipped
    assert all(not s.boxes for name in ("train", "validation") for s in dataset.split(name))
    assert all(len(s.boxes) >= 1 for s in dataset.split("test"))


def test_slices_and_boxes_round_trip_to_the_canonical_render(dataset, jobs):
    for sl in dataset.split("train")[:2] + dataset.split("test"):
        job = jobs[f"{sl.patient}_{sl.study}_{sl.view}"]
        volume = render_volume(job.spec, list(job.entropy))
        canonical = volume.frames[sl.frame]
        tissue = canonical > 0
        # The reader's image is the canonical frame up to the 10-bit quantisation of the window.
        assert np.abs(sl.image[tissue] - canonical[tissue]).max() <= 0.6 / job.window[1] + 1e-6, sl.id
        assert sorted(sl.boxes) == sorted(les.box for les in volume.lesions if les.focus_frame == sl.frame), sl.id


def test_every_lesion_is_drawn_inside_its_box_and_fades_over_several_frames(dataset, jobs):
    for sl in dataset.split("test"):
        job = jobs[f"{sl.patient}_{sl.study}_{sl.view}"]
        lesion = render_volume(job.spec, list(job.entropy)).frames
        plain = render_volume(replace(job.spec, lesions=()), list(job.entropy)).frames
        signal = np.abs(lesion - plain)
        for x, y, w, h in sl.boxes:
            inside = signal[sl.frame, y: y + h, x: x + w]
            assert inside.mean() > 0.01, sl.id
            # the box covers the lesion: almost all of its signal in this slice lies within the box (+25%)
            grow_x, grow_y = w // 4 + 1, h // 4 + 1
            covered = signal[sl.frame, max(y - grow_y, 0): y + h + grow_y, max(x - grow_x, 0): x + w + grow_x]
            assert covered.sum() >= 0.9 * signal[sl.frame].sum(), sl.id
            # and it stays visible, fading, on the neighbouring frames
            per_frame = signal[:, y: y + h, x: x + w].mean(axis=(1, 2))
            neighbours = [per_frame[f] for f in (sl.frame - 1, sl.frame + 1) if 0 <= f < len(per_frame)]
            assert all(0.1 * per_frame[sl.frame] < n <= 1.05 * per_frame[sl.frame] for n in neighbours), sl.id


def test_tissue_inside_every_test_box_differs_from_its_surroundings_more_than_normal_tissue_does(dataset):
    """Per box the statistic is noisy: at 128 x 96 random normal boxes score up to ~4 and a subtle distortion
    ~0.8-2.5 (median ~1.3 over placements), so lesion boxes are compared with normal boxes as groups; that each
    lesion is really drawn in its box is checked above."""
    rng = np.random.default_rng(0)
    scores = [box_contrast(*sl.load(), box, rng) for sl in dataset.split("test") for box in sl.boxes]
    normal = []
    for sl in dataset.split("train"):
        image, tissue = sl.load()
        centres = np.argwhere(ndimage.binary_erosion(tissue, iterations=12))
        for cy, cx in centres[rng.choice(len(centres), 3)]:
            normal.append(box_contrast(image, tissue, (cx - 5, cy - 5, 11, 11), rng))
    assert np.median(normal) < 2.0 <= np.median(scores), (normal, scores)
    assert np.median(scores) > np.percentile(normal, 75) and max(scores) > max(normal), (normal, scores)
