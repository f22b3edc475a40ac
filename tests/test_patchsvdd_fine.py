"""Patch SVDD's fine scale as the official inspection code computes it (`fine_geometry: official`).

The official code embeds every K/2 patch at a quarter of the coarse stride (32 px at stride 4 beside 64 px at
stride 16), keeps all of them in the fine bank, and coverage-averages the patch scores into pixels
(`distribute_score`: add each score to its patch's pixels, divide by the count, uncovered pixels 0). These tests
redo that with plain loops, and check a case small enough to compute by hand.
"""
import numpy as np
import pytest
import torch

from adbench_dbt.data.slices import Slice
from adbench_dbt.registry import create_method

K, S = 64, 32  # smoke profile: windows; the fine grid is 32 px patches at stride 8
DIM = 16


def _tissue(i: int, shape: tuple[int, int]) -> Slice:
    rng = np.random.default_rng(i)
    image = rng.random(shape, np.float32)  # contrast enough that random-weight embeddings spread out
    return Slice.from_array(f"t{i}", image, breast_mask=np.ones(shape, bool))


def _patches(image: np.ndarray, size: int, stride: int) -> tuple[torch.Tensor, int, int]:
    """Every size x size patch at `stride`, cut one by one in raster order (the official PatchDataset order)."""
    rows, cols = (image.shape[0] - size) // stride + 1, (image.shape[1] - size) // stride + 1
    cut = [image[i * stride: i * stride + size, j * stride: j * stride + size]
           for i in range(rows) for j in range(cols)]
    return torch.from_numpy(np.stack(cut))[:, None], rows, cols


def _distribute(scores: np.ndarray, shape: tuple[int, int], size: int, stride: int) -> np.ndarray:
    """The official distribute_score, as a loop: per-patch scores -> coverage-averaged pixel map.

    One documented difference: pixels no patch covers get the lowest covered value here (the harness's rule for
    every assembly), 0 in the official code; for these non-negative distances both rank them lowest.
    """
    total, count = np.zeros(shape), np.zeros(shape, int)
    for i in range(scores.shape[0]):
        for j in range(scores.shape[1]):
            total[i * stride: i * stride + size, j * stride: j * stride + size] += scores[i, j]
            count[i * stride: i * stride + size, j * stride: j * stride + size] += 1
    mean = total / np.maximum(count, 1)
    return np.where(count > 0, mean, mean[count > 0].min())


def _nearest(queries: torch.Tensor, bank: torch.Tensor) -> np.ndarray:
    return torch.cdist(queries.double(), bank.double()).min(1).values.numpy()


@pytest.fixture(scope="module")
def untrained():
    method = create_method("patchsvdd", "smoke", {"epochs": 0, "skip_background": False})
    train = [_tissue(0, (96, 80)), _tissue(1, (72, 64))]
    method.prepare_untrained(train)
    return method, train


def test_fine_bank_holds_every_dense_half_window_patch(untrained) -> None:
    method, train = untrained
    # by hand: 96 x 80 -> (96-32)/8+1 = 9 rows x (80-32)/8+1 = 7 cols; 72 x 64 -> 6 x 5; coarse: 2 x 1 and 1 x 1
    assert len(method.banks["fine"]) == 63 + 30 and len(method.banks["coarse"]) == 2 + 1
    with torch.no_grad():
        expected = torch.cat([method.encoder.inner(_patches(sl.image, 32, 8)[0] - method.input_mean)
                              for sl in train])
    torch.testing.assert_close(method.banks["fine"].bank, expected, rtol=1e-5, atol=1e-6)
    # the quadrant shortcut's bank (window quadrants, 32 px at stride 32) is a subset of it
    quadrants = create_method("patchsvdd", "smoke", {"epochs": 0, "fine_geometry": "quadrants"})
    quadrants.load_state_dict({k: v for k, v in method.state_dict().items()
                               if not k.startswith("bank.") and k != "fine_geometry"})  # same weights
    quadrants.prepare_untrained(train)
    assert quadrants.input_mean == method.input_mean
    assert len(quadrants.banks["fine"]) == 3 * 2 + 2 * 2  # distinct quadrant positions, by hand
    distances = torch.cdist(quadrants.banks["fine"].bank.double(), method.banks["fine"].bank.double())
    assert float(distances.min(1).values.max()) < 1e-6 < float(distances.kthvalue(2, 1).values.min())


def test_divisor_sets_the_fine_grids_of_bank_and_test() -> None:
    method = create_method("patchsvdd", "smoke", {"epochs": 0, "fine_stride_divisor": 2, "bank_stride": 64})
    method.prepare_untrained([_tissue(0, (96, 80))])
    # fine bank stride 64 // 2 = 32: (96-32)/32+1 = 3 x (80-32)/32+1 = 2; fine test stride 32 // 2 = 16
    assert len(method.banks["fine"]) == 6 and method.fine_stride(method.config.stride) == 16
    assert create_method("patchsvdd", "smoke", {"fine_stride_divisor": 64}).fine_stride(32) == 1


def test_maps_equal_the_official_inspection_loop(untrained) -> None:
    method, _ = untrained
    sl = _tissue(5, (101, 83))  # neither grid reaches the last rows / columns: uncovered pixels get the lowest
    maps = method.score_map(sl)
    image = sl.image
    with torch.no_grad():
        patches, rows, cols = _patches(image, 32, 8)
        fine = _nearest(method.encoder.inner(patches - method.input_mean), method.banks["fine"].bank)
        windows, wrows, wcols = _patches(image, K, S)
        coarse = _nearest(method.encoder(windows - method.input_mean), method.banks["coarse"].bank)
    assert (rows, cols, wrows, wcols) == (9, 7, 2, 1)
    fine_map = _distribute(fine.reshape(rows, cols), image.shape, 32, 8)
    coarse_map = _distribute(coarse.reshape(wrows, wcols), image.shape, K, S)
    tight = {"rtol": 1e-4, "atol": 0}  # relative: random-weight distances are ~1e-3, products ~1e-7
    np.testing.assert_allclose(maps["fine"], fine_map, **tight)
    np.testing.assert_allclose(maps["coarse"], coarse_map, **tight)
    # the official combination: plain sum and product of the two maps, no normalisation
    np.testing.assert_allclose(maps["sum"], coarse_map + fine_map, **tight)
    np.testing.assert_allclose(maps["product"], coarse_map * fine_map, **tight)
    lowest = maps["fine"][:96, :80].min()
    assert (maps["fine"][96:] == lowest).all() and (maps["fine"][:, 80:] == lowest).all() and lowest > 0


class PatchMax(torch.nn.Module):
    """A stand-in inner encoder whose embedding is the patch maximum in every dimension: scores known by hand."""

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return patches.amax(dim=(1, 2, 3))[:, None] * torch.ones(DIM)


def _hand_method(skip_background: bool):
    """Smoke method with a zero fine bank and PatchMax inside: a patch scores |max| * sqrt(16) = 4 x max."""
    method = create_method("patchsvdd", "smoke", {"skip_background": skip_background})
    zeros = torch.zeros(1, DIM)
    method.load_state_dict(method.state_dict() | {"bank.coarse": zeros, "bank.fine": zeros, "input_mean": 0.0,
                                                  "fine_geometry": "official"})
    method.encoder.inner = PatchMax()
    calls: list[int] = []
    scorer = method.score_fine_patches
    method.score_fine_patches = lambda p: (calls.append(len(p)), scorer(p))[1]
    return method, calls


def _bright_pixel(mask: np.ndarray | None = None) -> Slice:
    image = np.zeros((75, 64), np.float32)
    image[10, 20] = 1.0
    return Slice.from_array("hand", image, breast_mask=np.ones(image.shape, bool) if mask is None else mask)


def test_fine_map_by_hand() -> None:
    """75 x 64 slice, one bright pixel at (10, 20); fine grid 32 px at stride 8: tops 0..40 (6), lefts 0..32 (5).

    The patches holding (10, 20) are rows {0, 1} x cols {0, 1, 2}: six patches score 4, the other 24 score 0.
    A pixel's value is 4 x (bright patches covering it) / (patches covering it).
    """
    method, calls = _hand_method(skip_background=False)
    fine = method.score_map(_bright_pixel())["fine"]
    assert sum(calls) == 6 * 5
    expected = {
        (0, 0): 4.0,  # covered by patch (0, 0) only
        (8, 8): 4.0,  # patches (0..1) x (0..1), all bright
        (20, 20): 4.0 * 6 / 9,  # patches (0..2) x (0..2), six bright
        (35, 20): 4.0 * 3 / 12,  # patches (1..4) x (0..2), only row 1 bright
        (0, 63): 0.0,  # patch (0, 4) only, cols 32..63
        (71, 63): 0.0,  # patch (5, 4) only
        (72, 10): 0.0,  # below the last patch (rows 40..71): uncovered
        (74, 63): 0.0,
    }
    for (r, c), value in expected.items():
        assert fine[r, c] == pytest.approx(value, abs=1e-6), (r, c)


def test_fine_grid_skips_patches_without_tissue_by_hand() -> None:
    """Breast pixels only at (0, 0) and (70, 60): just patches (0, 0) (score 4) and (5, 4) (score 0) are scored;
    the others take the slice's lowest score (0), as in the engine's coarse grid."""
    mask = np.zeros((75, 64), bool)
    mask[0, 0] = mask[70, 60] = True
    method, calls = _hand_method(skip_background=True)
    fine = method.score_map(_bright_pixel(mask))["fine"]
    assert sum(calls) == 2
    assert fine[0, 0] == pytest.approx(4.0) and fine[8, 8] == pytest.approx(1.0)
    assert fine[20, 20] == pytest.approx(4 / 9) and fine[40, 40] == 0


def test_warmup_runs_the_fine_scorer_once() -> None:
    method, calls = _hand_method(skip_background=False)
    method.warmup(_bright_pixel())
    assert calls == [6 * 5]  # one batch, at most fine_batch_size patches (4 x batch_size)
    assert method.fine_batch_size == 4 * method.config.batch_size


def test_saved_bank_must_match_the_fine_geometry(untrained) -> None:
    method, _ = untrained
    state = method.state_dict()
    assert state["fine_geometry"] == "official"
    quadrants = create_method("patchsvdd", "smoke", {"fine_geometry": "quadrants"})
    with pytest.raises(ValueError, match="fine_geometry='official'"):
        quadrants.load_state_dict(state)
    legacy = {k: v for k, v in state.items() if k != "fine_geometry"}  # saved before the field: quadrant banks
    with pytest.raises(ValueError, match="fine_geometry='quadrants'"):
        create_method("patchsvdd", "smoke").load_state_dict(legacy)
