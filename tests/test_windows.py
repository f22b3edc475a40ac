"""The sliding-window engine against slow, obviously-correct per-window references."""
import cv2
import numpy as np
import pytest
import torch

from adbench_dbt.config import WindowConfig
from adbench_dbt.data.slices import Slice
from adbench_dbt.method import WindowMethod
from adbench_dbt.windows import (GridOutputs, WindowGrid, assemble, assemble_outputs, run_batches, tissue_windows,
                                 window_view)


def test_grid_follows_picard_counts():
    # PICARD's grid (methods/picard/README.md, "Details"): 2457 x 1996 at P=256, s=32 -> 69 x 55 = 3,795 windows;
    # 2457 x 1890 -> 69 x 52
    assert WindowGrid(2457, 1996, 256, 32).count == 3795
    assert (WindowGrid(2457, 1890, 256, 32).n_rows, WindowGrid(2457, 1890, 256, 32).n_cols) == (69, 52)
    with pytest.raises(ValueError, match="smaller than the 256px window"):
        WindowGrid(200, 300, 256, 32)


def test_window_view_equals_slicing():
    img = torch.rand(50, 41)
    grid = WindowGrid(50, 41, 16, 5)
    view = window_view(img, grid)
    for i in range(grid.n_rows):
        for j in range(grid.n_cols):
            assert torch.equal(view[i, j], img[i * 5: i * 5 + 16, j * 5: j * 5 + 16])


def test_run_batches_halves_batch_on_oom_and_keeps_order():
    img = torch.rand(40, 40)
    grid = WindowGrid(40, 40, 8, 4)
    calls = []

    def scorer(batch):
        calls.append(len(batch))
        if len(batch) > 10:
            raise RuntimeError("CUDA out of memory. Tried to allocate")
        return {"s": batch.mean(dim=(1, 2, 3))}

    idx = torch.arange(grid.count)
    out, batch = run_batches(window_view(img, grid), idx, scorer, 64)
    assert batch == 8 and calls[:4] == [64, 32, 16, 8]
    expected = window_view(img, grid).reshape(grid.count, -1).mean(1)
    torch.testing.assert_close(out["s"], expected)


def test_run_batches_reraises_other_errors():
    img = torch.rand(20, 20)
    grid = WindowGrid(20, 20, 8, 4)

    def scorer(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_batches(window_view(img, grid), torch.arange(grid.count), scorer, 4)


def _reference_averaged(scores, grid):
    total = np.zeros((grid.height, grid.width))
    count = np.zeros((grid.height, grid.width))
    p = grid.window
    for i in range(grid.n_rows):
        for j in range(grid.n_cols):
            t, l = i * grid.stride, j * grid.stride
            block = scores[i, j]
            if block.ndim == 2:  # small map stretched over the window (nearest, equal cells)
                block = np.kron(block, np.ones((p // block.shape[0], p // block.shape[1])))
            total[t: t + p, l: l + p] += block
            count[t: t + p, l: l + p] += 1
    mean = total / np.maximum(count, 1)
    return np.where(count > 0, mean, mean[count > 0].min())


def _reference_centered(scores, grid, nearest):
    out = np.zeros((grid.height, grid.width))
    cy = np.arange(grid.n_rows) * grid.stride + (grid.window - 1) / 2
    cx = np.arange(grid.n_cols) * grid.stride + (grid.window - 1) / 2
    for y in range(grid.height):
        for x in range(grid.width):
            fy = np.clip((y - cy[0]) / grid.stride, 0, grid.n_rows - 1)
            fx = np.clip((x - cx[0]) / grid.stride, 0, grid.n_cols - 1)
            if nearest:
                out[y, x] = scores[int(min(np.floor(fy + 0.5), grid.n_rows - 1)),
                                   int(min(np.floor(fx + 0.5), grid.n_cols - 1))]
                continue
            y0, x0 = int(np.floor(fy)), int(np.floor(fx))
            y1, x1 = min(y0 + 1, grid.n_rows - 1), min(x0 + 1, grid.n_cols - 1)
            wy, wx = fy - y0, fx - x0
            out[y, x] = ((1 - wy) * ((1 - wx) * scores[y0, x0] + wx * scores[y0, x1])
                         + wy * ((1 - wx) * scores[y1, x0] + wx * scores[y1, x1]))
    return out


@pytest.mark.parametrize("shape,window,stride", [((37, 45), 8, 4), ((40, 33), 16, 5), ((24, 24), 24, 3)])
def test_assembly_modes_match_references(shape, window, stride):
    grid = WindowGrid(*shape, window, stride)
    scores = np.random.default_rng(0).random((grid.n_rows, grid.n_cols))
    t = torch.from_numpy(scores)
    np.testing.assert_allclose(assemble(t, grid, "averaged").numpy(), _reference_averaged(scores, grid), atol=1e-5)
    for nearest, mode in ((False, "centered"), (True, "centered-nearest")):
        np.testing.assert_allclose(assemble(t, grid, mode).numpy(), _reference_centered(scores, grid, nearest),
                                   atol=1e-5)


def _keys_cubic(t, a=-0.75):
    """Keys' cubic convolution kernel (R. Keys 1981) with a = -0.75, the constant of OpenCV and torch."""
    t = np.abs(t)
    return np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                    np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))


def _resize_matrix(n_in, n_out):
    """n_out x n_in weights of a 1-D bicubic resize, written from the definition, not from the implementation:
    output sample y sits at source position (y + 0.5) * n_in / n_out - 0.5 (pixel centres, the grid stretched over
    the slice), takes the 4 nearest source samples weighted by the Keys kernel, and indices beyond the grid are
    clamped to its edge (edge replication)."""
    weights = np.zeros((n_out, n_in))
    for y in range(n_out):
        src = (y + 0.5) * n_in / n_out - 0.5
        base = int(np.floor(src))
        for k in range(base - 1, base + 3):
            weights[y, min(max(k, 0), n_in - 1)] += _keys_cubic(src - k)
    return weights


def _reference_bicubic(scores, shape):
    """Separable: rows then columns."""
    return _resize_matrix(scores.shape[0], shape[0]) @ scores @ _resize_matrix(scores.shape[1], shape[1]).T


@pytest.mark.parametrize("shape,window,stride", [((37, 45), 8, 4), ((40, 33), 16, 10), ((24, 24), 24, 3),
                                                ((24, 61), 16, 7), ((2457, 1996), 256, 32)])
def test_grid_bicubic_matches_independent_references(shape, window, stride):
    """PICARD's released assembly = the score grid stretched over the slice by bicubic interpolation
    (align_corners=False, Keys a = -0.75, edge replication). Checked against two implementations that share no
    code with torch: the formula above, and OpenCV's INTER_CUBIC (same kernel, same half-pixel mapping, same edge
    replication). The formula and OpenCV agree to float32 rounding (OpenCV computes positions and weights in
    float32: at most 2.2e-5 here for scores of size ~4), so a disagreement with the engine is the engine's.
    Every pixel is compared, borders included; grids of 8 x 10, 3 x 2, 1 x 1, 2 x 7 windows, and PICARD's real
    69 x 55 grid of a 2457 x 1996 slice. The tolerance, 1e-4, is far below what a wrong assembly gives: bilinear
    differs by 0.77-1.15 and align_corners=True by 1.5-3.1 on the grids larger than 1 x 1."""
    grid = WindowGrid(*shape, window, stride)
    scores = np.random.default_rng(3).normal(size=(grid.n_rows, grid.n_cols))
    reference = _reference_bicubic(scores, shape)
    opencv = cv2.resize(scores, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_allclose(opencv, reference, atol=1e-4)
    out = assemble(torch.from_numpy(scores), grid, "grid-bicubic").numpy()
    assert out.shape == shape
    np.testing.assert_allclose(out, reference, atol=1e-4)  # the engine computes in float32 too


def test_averaged_accepts_small_maps():
    grid = WindowGrid(30, 26, 8, 3)
    maps = np.random.default_rng(1).random((grid.n_rows, grid.n_cols, 2, 4))
    out = assemble(torch.from_numpy(maps), grid, "averaged").numpy()
    np.testing.assert_allclose(out, _reference_averaged(maps, grid), atol=1e-5)
    with pytest.raises(ValueError, match="one score per window"):
        assemble(torch.from_numpy(maps), grid, "centered")


def test_tissue_windows_matches_per_window_any():
    breast = torch.zeros(40, 50, dtype=torch.bool)
    breast[5:20, 3:12] = True
    grid = WindowGrid(40, 50, 10, 6)
    view = window_view(breast.float(), grid)
    assert torch.equal(tissue_windows(breast, grid), view.amax(dim=(2, 3)) > 0)


class _MeanMethod(WindowMethod):
    name = "test-mean"

    def fit(self, train, val=None):
        pass

    def score_windows(self, windows):
        mean = windows.mean(dim=(1, 2, 3))
        return {"mean": mean, "max": windows.amax(dim=(1, 2, 3)), "negative": -1 - mean}


def test_score_slice_skips_background_and_fills_with_slice_minimum():
    img = np.zeros((48, 48), np.float32)
    img[:, :20] = np.random.default_rng(0).random((48, 20)) * 0.5 + 0.5
    sl = Slice.from_array("a", img)
    method = _MeanMethod(WindowConfig(window=16, stride=8, batch_size=3, assembly="averaged", skip_background=True))
    maps = method.score_map(sl)
    grid = WindowGrid(48, 48, 16, 8)
    keep = tissue_windows(torch.from_numpy(sl.breast_mask), grid)
    assert method.last_window_count == int(keep.sum()) < grid.count
    full = _MeanMethod(WindowConfig(window=16, stride=8, assembly="averaged")).score_map(sl)
    assert set(maps) == {"mean", "max", "negative"}
    # windows with tissue are identical; the map is finite everywhere
    covered = np.zeros((48, 48), bool)
    covered[:, :8] = True
    for name in maps:
        np.testing.assert_allclose(maps[name][covered], full[name][covered], atol=1e-6)
        assert np.isfinite(maps[name]).all()
    # window columns 0-2 (lefts 0, 8, 16) hold tissue; columns 3-4 (lefts 24, 32) are skipped, and pixels from
    # x = 32 on are covered by skipped windows only: there the heatmap is the lowest score of the scored windows,
    # computed here per window by slicing (not the highest, the mean, or 0: scores of "negative" are all < 0)
    assert keep[:, :3].all() and not keep[:, 3:].any()
    scored = [img[t: t + 16, l: l + 16] for t in range(0, 33, 8) for l in (0, 8, 16)]
    lowest = {"mean": min(w.mean() for w in scored), "max": min(w.max() for w in scored),
              "negative": min(-1 - w.mean() for w in scored)}
    assert lowest["negative"] < -1 and lowest["mean"] > 0
    for name, value in lowest.items():
        np.testing.assert_allclose(maps[name][:, 32:], value, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("mode", ["averaged", "centered", "centered-nearest", "grid-bicubic"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_unscored_windows_get_the_lowest_score_in_every_assembly(mode, sign):
    """Windows that were not scored (skip_background) enter the assembly with the slice's lowest score. Scores all
    positive, then all negative, and not constant: a fill with the highest score, the mean, 0 or NaN fails."""
    grid = WindowGrid(48, 48, 8, 8)  # 6 x 6 windows tiling the slice; each window's pixels are its own
    rows, cols = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    indices = torch.from_numpy((rows * 6 + cols)[:, :2].reshape(-1))  # window columns 0-1 scored, 2-5 skipped
    values = sign * (1 + torch.from_numpy(np.random.default_rng(4).random(len(indices))))  # |v| in [1, 2)
    lowest = float(values.min())
    heat = assemble_outputs(GridOutputs(grid, indices, {"s": values}, 1), values, mode)
    assert heat.shape == (48, 48) and heat.dtype == np.float32
    # from x = 32 on every interpolation reads skipped windows only (bicubic: 2 windows on each side)
    np.testing.assert_allclose(heat[:, 32:], lowest, rtol=1e-6)
    if mode in ("averaged", "centered-nearest"):  # scored windows keep their own score on their own pixels
        expected = np.kron(values.numpy().reshape(6, 2), np.ones((8, 8)))
        np.testing.assert_allclose(heat[:, :16], expected, rtol=1e-6)


def test_averaged_pixels_no_window_covers_get_the_lowest_score():
    """`averaged` gives pixels outside every window the lowest covered value: 37 x 45 at P = 8, s = 4 covers rows
    0-35 and columns 0-43 only. Negative scores, so the old fill with 0 (which ranked the border strip above every
    real score) fails, and so would a fill with the highest or the mean score."""
    grid = WindowGrid(37, 45, 8, 4)
    assert (grid.tops()[-1] + 8, grid.lefts()[-1] + 8) == (36, 44)
    for scores in (-1 - torch.from_numpy(np.random.default_rng(5).random((grid.n_rows, grid.n_cols))),
                   1 + torch.from_numpy(np.random.default_rng(6).random((grid.n_rows, grid.n_cols)))):
        heat = assemble(scores, grid, "averaged").numpy()
        lowest = heat[:36, :44].min()
        assert (heat[36, :] == lowest).all() and (heat[:, 44] == lowest).all()
        assert lowest > scores.min().item() - 1e-6 and lowest < scores.max().item()
        # the same through assemble_outputs with every window scored
        out = GridOutputs(grid, torch.arange(grid.count), {"s": scores.reshape(-1)}, 1)
        np.testing.assert_array_equal(assemble_outputs(out, scores.reshape(-1), "averaged"), heat)


def test_score_slice_rejects_wrong_score_count():
    class Bad(_MeanMethod):
        def score_windows(self, windows):
            return {"s": torch.zeros(len(windows) + 1)}

    with pytest.raises(ValueError, match="scores for"):
        Bad(WindowConfig(window=8, stride=8)).score_map(Slice.from_array("b", np.ones((16, 16), np.float32)))


def test_engine_does_not_import_the_method_layer():
    """No import cycle: the engine is below the Method classes (they import it, never the reverse)."""
    import ast
    import inspect

    from adbench_dbt import windows

    imported = {node.module for node in ast.walk(ast.parse(inspect.getsource(windows)))
                if isinstance(node, ast.ImportFrom)}
    assert "adbench_dbt.config" in imported and not {"adbench_dbt.method", "adbench_dbt.registry"} & imported
