"""Execution modes of scoring (adbench_dbt.execution): reduced precision, channels_last, torch.compile, CUDA graphs,
automatic batch size, and the engine's gather. Speed is benchmarked, not tested; what is tested is that every mode
computes what eager fp32 computes (exactly, or within the documented reduced-precision agreement)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from adbench_dbt.cli import main
from adbench_dbt.completion.scorers import completion_distances
from adbench_dbt.config import WindowConfig
from adbench_dbt.errors import ConfigError, DeviceError
from adbench_dbt.execution import WindowExecutor, autocast, fp32_numerics
from adbench_dbt.methods.cutpaste.gaussian_density import GaussianDensity
from adbench_dbt.methods.patchsvdd.nearest_neighbor import NearestNeighborIndex
from adbench_dbt.registry import create_method
from adbench_dbt.windows import WindowGatherer, WindowGrid, largest_batch, run_batches, window_view

CPU = torch.device("cpu")
REDUCED_PRECISION_METHODS = ["picard", "dmse", "cutpaste", "hfpic"]


# ---- numerics that must stay fp32 under autocast --------------------------------------------------------------
def test_fp32_numerics_turns_autocast_off_and_promotes_arguments():
    @fp32_numerics
    def product(a, b):
        return a @ b

    a, b = torch.randn(64, 64), torch.randn(64, 64)
    with autocast(CPU, "bf16"):
        assert (a @ b).dtype == torch.bfloat16  # what autocast alone would do
        out = product(a.bfloat16(), b)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, a.bfloat16().float() @ b)


def test_density_and_nearest_neighbour_scores_are_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    train, query = torch.randn(500, 16), torch.randn(40, 16)
    density = GaussianDensity(16, device=CPU)
    density.update(train)
    density = density.finalize()
    index = NearestNeighborIndex(train)
    expected_density, expected_nn = density.score(query), index.query(query)[0]
    with autocast(CPU, "bf16"):
        got_density, got_nn = density.score(query), index.query(query)[0]
    assert got_density.dtype == torch.float32 and got_nn.dtype == torch.float32
    torch.testing.assert_close(got_density, expected_density, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_nn, expected_nn, rtol=1e-5, atol=1e-5)


def test_completion_distances_are_fp32_under_bf16_autocast():
    truth, completions = torch.rand(3, 1, 32, 32), torch.rand(6, 1, 32, 32)
    expected = completion_distances(truth, completions)
    with autocast(CPU, "bf16"):
        got = completion_distances(truth, completions)
    torch.testing.assert_close(got, expected)


# ---- whole methods: bf16 against fp32 at smoke size ---------------------------------------------------------------
def _heatmaps(name: str, dataset, overrides: dict) -> tuple[dict[str, np.ndarray], str]:
    method = create_method(name, "smoke", overrides)
    torch.manual_seed(0)
    method.prepare_untrained(dataset.split("train"))
    torch.manual_seed(7)
    return method.score_map(dataset.split("test")[0]), method.precision


# Smoke-size models are barely trained: where their scores hardly vary (DMSE's smoke windows are near-ties) bf16
# rounding reorders near-equal pixels, so the smoke bar is lower there. The trained check at the bar (Spearman >= 0.999 per slice, |dAUROC| <=
# 0.005) is the committed phantom-demo table, docs/precision-fidelity.md.
SMOKE_AGREEMENT = {"picard": 0.999, "cutpaste": 0.999, "hfpic": 0.999, "dmse": 0.97}


@pytest.mark.parametrize("name", REDUCED_PRECISION_METHODS)
def test_bf16_scoring_ranks_pixels_as_fp32_does(name, tiny_dataset):
    """Rank correlation of every variant's pixel scores, bf16 against fp32, same weights and seeds."""
    fp32, precision32 = _heatmaps(name, tiny_dataset, {})
    bf16, precision16 = _heatmaps(name, tiny_dataset, {"precision": "bf16"})
    assert (precision32, precision16) == ("fp32", "bf16")
    for variant in fp32:
        assert bf16[variant].dtype == np.float32 and bf16[variant].shape == fp32[variant].shape
        assert np.isfinite(bf16[variant]).all()
        assert not np.array_equal(fp32[variant], bf16[variant]), \
            f"{name}/{variant}: bf16 gave bit-identical maps, so autocast never ran"
        if SMOKE_AGREEMENT[name] is not None:
            rho = spearmanr(fp32[variant].ravel(), bf16[variant].ravel())[0]
            assert rho >= SMOKE_AGREEMENT[name], f"{name}/{variant}: Spearman {rho:.4f} between bf16 and fp32"


def test_patchsvdd_refuses_reduced_precision_before_any_work(capsys):
    with pytest.raises(ConfigError, match="patchsvdd scores in fp32 only"):
        create_method("patchsvdd", "smoke", {"precision": "bf16"})
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--method", "patchsvdd", "--profile", "smoke", "--dataset", "phantom:tiny", "--precision", "fp16",
              "--out", "/nonexistent-never-written"])
    assert exit_info.value.code == 2 and "fp32 only" in capsys.readouterr().err


def test_channels_last_scores_as_contiguous(tiny_dataset):
    plain, _ = _heatmaps("cutpaste", tiny_dataset, {})
    nhwc, _ = _heatmaps("cutpaste", tiny_dataset, {"channels_last": True})
    for variant in plain:
        np.testing.assert_allclose(nhwc[variant], plain[variant], rtol=1e-4, atol=1e-4)


def test_channels_last_converts_the_networks(tiny_dataset):
    method = create_method("picard", "smoke", {"channels_last": True})
    method.execute(method.score_windows)
    convs = [m for net in method.networks() for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


# ---- the executor ------------------------------------------------------------------------------------------------
def _mean_scorer(batch: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"s": batch.mean(dim=(1, 2, 3)) * 2.0 + batch.amax(dim=(1, 2, 3))}


def test_fixed_shape_batches_are_full_and_outputs_trimmed():
    img = torch.rand(60, 52)
    grid = WindowGrid(60, 52, 8, 4)
    seen = []

    def scorer(batch):
        seen.append(tuple(batch.shape))
        return _mean_scorer(batch)

    scorer.fixed_shape = True
    indices = torch.arange(grid.count)[::3]  # gaps: several runs per batch
    out, _ = run_batches(window_view(img, grid), indices, scorer, 16)
    assert len(indices) % 16 and set(seen) == {(16, 1, 8, 8)}
    expected = _mean_scorer(window_view(img, grid).reshape(grid.count, 1, 8, 8)[indices])["s"]
    torch.testing.assert_close(out["s"], expected)


def test_gatherer_equals_advanced_indexing_for_any_index_set():
    img = torch.rand(70, 65)
    grid = WindowGrid(70, 65, 16, 6)
    view = window_view(img, grid)
    rng = np.random.default_rng(0)
    indices = torch.from_numpy(np.sort(rng.choice(grid.count, size=grid.count // 2, replace=False)))
    gatherer = WindowGatherer(view, indices, 7)
    for start in range(0, len(indices), 7):
        count = min(7, len(indices) - start)
        idx = indices[start: start + count]
        expected = view[idx // grid.n_cols, idx % grid.n_cols].unsqueeze(1)
        assert torch.equal(gatherer.gather(start, count, False), expected)


def test_a_scorer_returning_a_view_of_its_batch_is_not_overwritten_by_the_next_batch():
    img = torch.rand(40, 40)
    grid = WindowGrid(40, 40, 8, 8)
    out, _ = run_batches(window_view(img, grid), torch.arange(grid.count), lambda b: {"corner": b[:, 0, 0, 0]}, 5)
    torch.testing.assert_close(out["corner"], window_view(img, grid)[:, :, 0, 0].reshape(-1))


def test_compile_scores_as_eager():
    executor = WindowExecutor(_mean_scorer, CPU, compile=True)
    batch = torch.rand(4, 1, 16, 16)
    got = executor(batch)
    assert executor.compile, "torch.compile fell back to eager on this machine"
    torch.testing.assert_close(got["s"], _mean_scorer(batch)["s"])


def test_compile_failure_falls_back_to_eager_with_one_notice(monkeypatch):
    notices = []

    def broken_compile(fn, **kwargs):
        def compiled(batch):
            raise RuntimeError("InductorError: C++ compiler not found")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    executor = WindowExecutor(_mean_scorer, CPU, compile=True, notice=notices.append)
    batch = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(executor(batch)["s"], _mean_scorer(batch)["s"])
    executor(batch)
    assert len(notices) == 1 and "C++ compiler not found" in notices[0] and "eagerly" in notices[0]
    assert not executor.fixed_shape


def test_cuda_graphs_without_cuda_is_one_line_device_error(capsys):
    with pytest.raises(DeviceError, match="CUDA graphs need a CUDA device"):
        WindowExecutor(_mean_scorer, CPU, cuda_graphs=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--method", "telea", "--profile", "smoke", "--dataset", "phantom:tiny", "--cuda-graphs",
              "--out", "/nonexistent-never-written"])
    assert exit_info.value.code == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda_graphs" in err[0] and "Traceback" not in err[0]


def test_precision_flag_is_validated_and_recorded(tiny_dataset):
    with pytest.raises(Exception, match="precision"):
        WindowConfig(precision="fp8")
    method = create_method("telea", "smoke", {"precision": "bf16"})
    assert method.precision == "bf16"


# ---- automatic batch size ------------------------------------------------------------------------------------------
class FakeGauge:
    """Each window costs `per_window` bytes of a `budget`; beyond `oom_at` windows the scorer runs out of memory."""

    def __init__(self, per_window: float, budget: float) -> None:
        self.per_window, self.budget, self.last = per_window, budget, 0

    def reset(self) -> None:
        self.last = 0

    def peak(self) -> float:
        return self.last

    def fits(self, peak: float) -> bool:
        return peak <= self.budget


def test_auto_batch_grows_to_the_largest_batch_that_fits():
    img = torch.rand(200, 200)
    grid = WindowGrid(200, 200, 8, 4)
    gauge = FakeGauge(per_window=1000.0, budget=100_000.0)

    def scorer(batch):
        gauge.last = gauge.per_window * len(batch)
        return _mean_scorer(batch)

    size = largest_batch(scorer, window_view(img, grid), torch.arange(grid.count), 4, gauge)
    assert size == 64  # 128 windows would need 128,000 > 100,000 bytes


def test_auto_batch_stops_below_an_out_of_memory_error():
    img = torch.rand(200, 200)
    grid = WindowGrid(200, 200, 8, 4)
    gauge = FakeGauge(per_window=1.0, budget=1e12)

    def scorer(batch):
        if len(batch) > 40:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
        return _mean_scorer(batch)

    assert largest_batch(scorer, window_view(img, grid), torch.arange(grid.count), 5, gauge) == 40
    assert largest_batch(scorer, window_view(img, grid), torch.arange(10), 4, gauge) == 8  # at most the windows
    assert largest_batch(scorer, window_view(img, grid), torch.arange(grid.count), 5, None) == 5  # CPU: as set


# ---- the GPU benchmark suite, checked on the CPU ---------------------------------------------------------------------
def test_gpu_suite_dry_run_writes_a_row_per_case(tmp_path):
    """benchmarks/gpu.sh --dry-run: every case of the suite validates its paper config and runs at smoke size."""
    import os
    import subprocess
    import sys

    import pandas as pd

    from adbench_dbt.bench import GPU_SUITE

    out = tmp_path / "bench.csv"
    env = {**os.environ, "ADBENCH": str(Path(sys.executable).with_name("adbench")),
           "ADBENCH_CACHE": str(tmp_path / "cache")}
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.sh"
    done = subprocess.run(["bash", str(script), "--dry-run", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(out)
    assert set(table["method"]) == {case.method for case in GPU_SUITE}
    bf16_slices = table[(table["precision"] == "bf16") & table["timing"].str.startswith("measured on the full")]
    assert len(bf16_slices) and bf16_slices["rank_vs_fp32"].notna().all()
    methods = table[table["method"] != "engine"]
    assert (methods["flop_per_window"] > 0).all() and methods["peak_tflops"].notna().all()
    assert out.with_suffix(".md").read_text().count("\n| ") == len(table) + 1  # the header and one line a row


# ---- adbench fidelity ------------------------------------------------------------------------------------------------
def test_fidelity_rescoring_reproduces_the_run_and_measures_another_mode(tmp_path, cache_root):
    from adbench_dbt.fidelity import fidelity, merge_fidelity
    from adbench_dbt.runner import RunSpec, run

    run(RunSpec(method="picard", profile="smoke", dataset="phantom:tiny", device="cpu", out=str(tmp_path / "runs"),
                cache=str(cache_root), overlays=False, overrides={"iterations": 2}))
    (run_dir,) = [p.parent for p in (tmp_path / "runs").rglob("summary.json")]
    same = fidelity(run_dir, {"precision": "fp32"}, slices=2)
    assert {r["variant"] for r in same} == set(create_method("picard", "smoke").variants)
    assert all(r["reference_max_abs_diff"] == 0 and r["spearman_min"] == 1.0 and r["passes"] for r in same)
    other_seed = fidelity(run_dir, {"seed": 1}, slices=2)  # PICARD's dropout: another seed, other completions
    assert min(r["spearman_min"] for r in other_seed) < 1.0
    table = merge_fidelity(tmp_path / "fidelity.csv", same + other_seed)
    assert len(table) == 2 * len(same) and (tmp_path / "fidelity.md").read_text().startswith("# Reduced-precision")
