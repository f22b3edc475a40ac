"""The sliding-window engine against slow, obviously-correct per-window references."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adbench_dbt.config import WindowConfig
from adbench_dbt.data.slices import Slice
from adbench_dbt.method import WindowMethod
from adbench_dbt.windows import WindowGrid, assemble, run_batches, tissue_windows, window_view


def test_grid_follows_picard_counts():
    # methods.md 2.7: 2457 x 1996 at P=256, s=32 -> 69 x 55 = 3,795 windows; 2457 x 1890 -> 69 x 52
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
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


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
    ref = F.interpolate(t[None, None].float(), size=shape, mode="bicubic", align_corners=False)[0, 0]
    np.testing.assert_allclose(assemble(t, grid, "grid-bicubic").numpy(), ref.numpy(), atol=1e-6)


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
        return {"mean": windows.mean(dim=(1, 2, 3)), "max": windows.amax(dim=(1, 2, 3))}


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
    assert set(maps) == {"mean", "max"}
    # windows with tissue are identical; the map is finite everywhere
    covered = np.zeros((48, 48), bool)
    covered[:, :8] = True
    np.testing.assert_allclose(maps["mean"][covered], full["mean"][covered], atol=1e-6)
    assert np.isfinite(maps["mean"]).all()


def test_score_slice_rejects_wrong_score_count():
    class Bad(_MeanMethod):
        def score_windows(self, windows):
            return {"s": torch.zeros(len(windows) + 1)}

    with pytest.raises(ValueError, match="scores for"):
        Bad(WindowConfig(window=8, stride=8)).score_map(Slice.from_array("b", np.ones((16, 16), np.float32)))
