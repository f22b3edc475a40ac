"""Patch SVDD: hierarchical encoder, training pairs, exact nearest-neighbour scoring, save/load round trip.

The official fine-scale geometry is checked against hand-computed maps in test_patchsvdd_fine.py."""
import numpy as np
import pytest
import torch

from adbench_dbt.config import ConfigError
from adbench_dbt.data.slices import Slice
from adbench_dbt.registry import create_method
from adbench_dbt.methods.patchsvdd.networks import HierarchicalEncoder, SmallEncoder
from adbench_dbt.methods.patchsvdd.pairs import NEIGHBOURS, jitter_pairs, position_pairs


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_encoder_sizes_match_the_official_networks() -> None:
    assert _count(SmallEncoder(64, in_channels=3)) == 360_832
    assert _count(HierarchicalEncoder(64, 64, in_channels=3)) == 401_984
    assert _count(HierarchicalEncoder(256, 64, in_channels=3)) == 484_288
    with pytest.raises(ValueError, match="power of two"):
        HierarchicalEncoder(96)


@pytest.mark.parametrize("size", [64, 256])
def test_window_maps_to_one_embedding_from_inner_encoded_quadrants(size: int) -> None:
    torch.manual_seed(0)
    encoder = HierarchicalEncoder(size, 16).eval()
    windows = torch.rand(3, 1, size, size)
    with torch.no_grad():
        top, quadrants = encoder.forward_with_quadrants(windows)
        half = size // 2
        for i in range(2):
            for j in range(2):
                manual = encoder.inner(windows[:, :, i * half:(i + 1) * half, j * half:(j + 1) * half])
                torch.testing.assert_close(quadrants[:, i, j], manual)
        torch.testing.assert_close(top, encoder.merge(quadrants.permute(0, 3, 1, 2)).flatten(1))
    assert top.shape == (3, 16) and bool((top.abs() <= 1).all())


def _coordinate_regions(n: int, size: int) -> torch.Tensor:
    """Each pixel holds (row * size + col) / scale so a patch's top-left pixel reveals its position."""
    grid = torch.arange(size * size, dtype=torch.float32).view(size, size)
    return grid.expand(n, size, size).clone()


def test_position_pairs_follow_the_eight_neighbour_layout() -> None:
    size, region = 64, 256
    regions = _coordinate_regions(512, region)
    p1, p2, labels = position_pairs(regions, size, torch.Generator().manual_seed(0))
    corner = lambda p: torch.stack([(p[:, 0, 0, 0].round() // region), p[:, 0, 0, 0].round() % region], 1)
    c1, c2 = corner(p1).long(), corner(p2).long()
    offset = c2 - c1
    clipped = (c2 == 0) | (c2 == region - size)
    assert bool(((offset.sign() == NEIGHBOURS[labels]) | clipped).all())
    free = ((c2 > 0) & (c2 < region - size)).all(1)  # not clipped at the region border
    moved = offset[free].abs()[NEIGHBOURS[labels[free]] != 0]
    assert bool((moved >= 3 * size // 4).all()) and bool((moved < size).all())
    assert bool((offset[free][NEIGHBOURS[labels[free]] == 0] == 0).all())
    assert set(labels.tolist()) == set(range(8))


def test_svdd_pairs_are_small_nonzero_jitters() -> None:
    size, region = 64, 128
    regions = _coordinate_regions(256, region)
    p1, p2 = jitter_pairs(regions, size, torch.Generator().manual_seed(1))
    c1 = torch.stack([p1[:, 0, 0, 0] // region, p1[:, 0, 0, 0] % region], 1)
    c2 = torch.stack([p2[:, 0, 0, 0] // region, p2[:, 0, 0, 0] % region], 1)
    jitter = (c2 - c1).abs()
    assert bool((jitter <= size // 32).all())
    inside = ((c1 >= 2) & (c1 <= region - size - 2)).all(1)
    assert bool((jitter[inside].sum(1) > 0).all())


def _slice(i: int, lesion: bool = False, shape=(160, 128)) -> Slice:
    rng = np.random.default_rng(i)
    image = np.zeros(shape, np.float32)
    image[:, : shape[1] * 3 // 4] = 0.35 + 0.05 * rng.standard_normal((shape[0], shape[1] * 3 // 4))
    boxes = ()
    if lesion:
        image[64:96, 32:64] = 0.95
        boxes = ((32, 64, 32, 32),)
    return Slice.from_array(f"s{i}", image.clip(0, 1), boxes)


def _brute_force(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    return (queries[:, None].double() - bank[None].double()).norm(dim=2).min(1).values.float()


@pytest.fixture(scope="module")
def trained():
    method = create_method("patchsvdd", "smoke")
    method.fit([_slice(i) for i in range(4)])
    return method


def test_fit_builds_banks_and_scores_are_nearest_neighbour_distances(trained) -> None:
    assert len(trained.train_losses) == 4 and np.isfinite(trained.train_losses).all()
    # 160 x 128 slices, K = 64 at stride 32: 4 x 3 windows; official fine grid, 32 px at stride 8: 17 x 13
    assert len(trained.banks["coarse"]) == 4 * 12 and len(trained.banks["fine"]) == 4 * 221
    windows, patches = torch.rand(5, 1, 64, 64), torch.rand(7, 1, 32, 32)
    with torch.no_grad():
        scores = trained.score_windows(windows)
        fine = trained.score_fine_patches(patches)
        top = trained.encoder(windows - trained.input_mean)
        small = trained.encoder.inner(patches - trained.input_mean)
    assert list(scores) == ["coarse"]  # the official fine scale is scored on its own grid, not per window
    relative = {"rtol": 1e-4, "atol": 0.0}  # distances of random windows are small: no absolute slack
    torch.testing.assert_close(scores["coarse"], _brute_force(top, trained.banks["coarse"].bank), **relative)
    torch.testing.assert_close(fine["fine"], _brute_force(small, trained.banks["fine"].bank), **relative)


def test_quadrant_geometry_banks_distinct_quadrants_and_scores_them_per_window() -> None:
    method = create_method("patchsvdd", "smoke", {"fine_geometry": "quadrants", "epochs": 0})
    method.prepare_untrained([_slice(i) for i in range(2)])
    # 160 x 128 slices, K = 64 at stride 32: 4 x 3 windows; distinct 32 px quadrants: 5 x 4 positions
    assert len(method.banks["coarse"]) == 2 * 12 and len(method.banks["fine"]) == 2 * 20
    windows = torch.rand(5, 1, 64, 64)
    with torch.no_grad():
        scores = method.score_windows(windows)
        quadrants = method.encoder.forward_with_quadrants(windows - method.input_mean)[1]
    brute_fine = _brute_force(quadrants.reshape(-1, 16), method.banks["fine"].bank).view(5, 2, 2)
    torch.testing.assert_close(scores["fine"], brute_fine, rtol=1e-4, atol=0.0)
    maps = method.score_map(_slice(9, lesion=True))
    np.testing.assert_allclose(maps["product"], maps["coarse"] * maps["fine"], rtol=1e-6)


def test_maps_combine_scales_and_round_trip(trained, tmp_path) -> None:
    sl = _slice(9, lesion=True)
    maps = trained.score_map(sl)
    assert list(maps) == ["product", "sum", "coarse", "fine"]
    assert all(m.shape == sl.shape and m.dtype == np.float32 for m in maps.values())
    np.testing.assert_allclose(maps["product"], maps["coarse"] * maps["fine"], rtol=1e-6)
    np.testing.assert_allclose(maps["sum"], maps["coarse"] + maps["fine"], rtol=1e-6)
    assert maps["coarse"][sl.label_mask].mean() > np.median(maps["coarse"][sl.breast_mask & ~sl.label_mask])
    loaded = type(trained).load(trained.save(tmp_path / "m"))
    for name, heat in loaded.score_map(sl).items():
        np.testing.assert_array_equal(heat, maps[name])


def test_training_slice_scores_zero_against_its_own_bank(trained) -> None:
    assert float(trained.score_map(_slice(0))["coarse"].max()) < 1e-3


@pytest.mark.parametrize("geometry", ["official", "quadrants"])
def test_untrained_bank_and_grid_assembly(geometry: str) -> None:
    method = create_method("patchsvdd", "smoke", {"assembly": "grid-bicubic", "epochs": 0, "fine_geometry": geometry})
    method.prepare_untrained([_slice(0), _slice(1)])
    maps = method.score_map(_slice(7, lesion=True))
    assert all(np.isfinite(m).all() and m.shape == (160, 128) for m in maps.values())
    assert maps["fine"].std() > 0


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="window"):
        create_method("patchsvdd", "smoke", {"window": 96})
    with pytest.raises(ConfigError, match="fine_geometry"):
        create_method("patchsvdd", "smoke", {"fine_geometry": "dense"})
    paper = create_method("patchsvdd", "paper")
    assert (paper.config.window, paper.config.stride, paper.config.assembly) == (256, 32, "averaged")
    # the official fine scale: 128 px patches at a quarter of the window stride (official 64/16 -> 32/4)
    assert (paper.config.fine_geometry, paper.fine_stride(paper.config.stride)) == ("official", 8)
    assert create_method("patchsvdd", "demo").config.fine_geometry == "quadrants"
    with pytest.raises(RuntimeError, match="fit"):
        create_method("patchsvdd", "smoke").score_windows(torch.rand(1, 1, 64, 64))
