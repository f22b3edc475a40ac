"""CutPaste 3-way: tissue-only augmentations, local pretrained weights, density scoring, save/load round trip."""
import numpy as np
import pytest
import timm
import torch

from adbench_dbt.config import ConfigError
from adbench_dbt.errors import CheckpointError
from adbench_dbt.data.slices import Slice
from adbench_dbt.registry import create_method
from adbench_dbt.methods.cutpaste.augment import (AREA_RATIO, ASPECT_RATIO, SCAR_LENGTH, SCAR_WIDTH, color_jitter,
                                                  cutpaste, cutpaste_scar)


def _crops(n: int = 16, size: int = 64, tissue_cols: int | None = None):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, size, size, generator=g) * 0.5 + 0.25
    breast = torch.zeros(n, size, size, dtype=torch.bool)
    breast[:, :, : tissue_cols or size] = True
    return images * breast, breast


def test_cutpaste_pastes_only_into_tissue_with_parameters_in_range() -> None:
    images, breast = _crops(64, 64, tissue_cols=40)
    out, pasted, params = cutpaste(images, breast, torch.Generator().manual_seed(1))
    assert not bool((pasted & ~breast).any())
    assert torch.equal(out[~pasted], images[~pasted])
    assert bool(pasted.flatten(1).any(1).all())
    area = params.heights * params.widths / 64 ** 2
    aspect = params.widths / params.heights
    assert bool((area > AREA_RATIO[0] * 0.8).all()) and bool((area < AREA_RATIO[1] * 1.2).all())
    assert bool((aspect > ASPECT_RATIO[0] * 0.8).all()) and bool((aspect < ASPECT_RATIO[1] * 1.25).all())
    assert bool((params.angles == 0).all())
    assert bool(breast[torch.arange(64), params.centers[:, 0].long(), params.centers[:, 1].long()].all())


def test_cutpaste_in_full_tissue_pastes_the_whole_rectangle() -> None:
    images, breast = _crops(32, 64)
    _, pasted, params = cutpaste(images, breast, torch.Generator().manual_seed(2))
    assert torch.equal(pasted.sum((1, 2)), (params.heights * params.widths).long())
    rows, cols = pasted.any(2), pasted.any(1)  # the pasted set is one axis-aligned h x w rectangle
    assert torch.equal(rows.sum(1), params.heights.long()) and torch.equal(cols.sum(1), params.widths.long())


def test_scar_is_thin_rotated_and_inside_tissue() -> None:
    images, breast = _crops(64, 64, tissue_cols=48)
    _, pasted, params = cutpaste_scar(images, breast, torch.Generator().manual_seed(3))
    assert not bool((pasted & ~breast).any())
    assert bool((params.widths >= SCAR_WIDTH[0]).all()) and bool((params.widths <= SCAR_WIDTH[1]).all())
    assert bool((params.heights >= SCAR_LENGTH[0]).all()) and bool((params.heights <= SCAR_LENGTH[1]).all())
    assert bool((params.angles.abs() <= np.pi / 4 + 1e-6).all())
    count = pasted.sum((1, 2)).float()
    assert bool((count <= params.heights * params.widths + 2 * (params.heights + params.widths)).all())
    assert bool((count > 0).all())


def test_color_jitter_stays_in_range_and_is_seeded() -> None:
    images = torch.rand(8, 1, 16, 16)
    a = color_jitter(images, torch.Generator().manual_seed(5))
    b = color_jitter(images, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, images)


def _slice(i: int, lesion: bool = False, shape=(128, 112)) -> Slice:
    rng = np.random.default_rng(i)
    image = np.zeros(shape, np.float32)
    image[:, : shape[1] * 3 // 4] = 0.35 + 0.05 * rng.standard_normal((shape[0], shape[1] * 3 // 4))
    boxes = ()
    if lesion:
        image[48:80, 24:56] = 0.95
        boxes = ((24, 48, 32, 32),)
    return Slice.from_array(f"s{i}", image.clip(0, 1), boxes)


@pytest.fixture(scope="module")
def trained():
    method = create_method("cutpaste", "smoke")
    method.fit([_slice(i) for i in range(4)])
    return method


def test_fit_score_and_save_load_round_trip(trained, tmp_path) -> None:
    sl = _slice(9, lesion=True)
    maps = trained.score_map(sl)
    assert set(maps) == {"score"} and maps["score"].shape == sl.shape and maps["score"].dtype == np.float32
    assert np.isfinite(maps["score"]).all() and trained.last_window_count > 0
    assert len(trained.train_losses) == trained.config.steps
    loaded = type(trained).load(trained.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.score_map(sl)["score"], maps["score"])


def test_bright_lesion_scores_above_background_tissue() -> None:
    method = create_method("cutpaste", "smoke", {"stride": 8, "density_windows_per_slice": None})
    method.prepare_untrained([_slice(i) for i in range(4)])
    sl = _slice(10, lesion=True)
    heat = method.score_map(sl)["score"]
    tissue_outside = sl.breast_mask & ~sl.label_mask
    assert heat[sl.label_mask].mean() > np.median(heat[tissue_outside])


def test_per_location_density(tmp_path) -> None:
    train = [_slice(i) for i in range(4)] + [_slice(5, shape=(128, 96))]
    method = create_method("cutpaste", "smoke", {"density": "per_location", "steps": 0})
    method.prepare_untrained(train)
    assert method.density_grid == (7, 6) and method.density.locations == 42
    sl = _slice(11, shape=(144, 112))  # one row more than the training grid: nearest cell is used
    maps = method.score_map(sl)
    assert maps["score"].shape == sl.shape and np.isfinite(maps["score"]).all()
    loaded = type(method).load(method.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.score_map(sl)["score"], maps["score"])


def test_pretrained_weights_come_from_a_local_file(tmp_path) -> None:
    rgb = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pt"
    torch.save(rgb.state_dict(), path)
    method = create_method("cutpaste", "smoke", {"pretrained_path": str(path), "steps": 0})
    method.fit([_slice(0), _slice(1)])
    torch.testing.assert_close(method.net.encoder.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(method.net.encoder.layer4[1].conv2.weight, rgb.layer4[1].conv2.weight)
    missing = create_method("cutpaste", "smoke", {"pretrained_path": str(tmp_path / "nope.pt")})
    with pytest.raises(CheckpointError, match="nope.pt"):
        missing.fit([_slice(0)])


def test_profiles_and_errors() -> None:
    paper = create_method("cutpaste", "paper")
    assert (paper.config.window, paper.config.stride, paper.config.lr, paper.config.steps) == (256, 32, 0.03, 65536)
    assert paper.config.density == "global" and not paper.config.skip_background
    with pytest.raises(ConfigError, match="density"):
        create_method("cutpaste", "smoke", {"density": "local"})
    with pytest.raises(RuntimeError, match="fit"):
        create_method("cutpaste", "smoke").score_map(_slice(0))
