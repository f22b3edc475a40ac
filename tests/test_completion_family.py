"""The completion family: PICARD / DMSE / Telea heatmaps equal their pre-refactor values, and the scorers see only
completions (same completions in, same scores out, whatever backbone made them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from adbench_dbt.completion.backbone import CompletionBackbone, Completions, centred_box
from adbench_dbt.completion.scorers import dmse_scores, hole_mse, mcd_scores
from adbench_dbt.registry import create_method
from test_inpainting_trainer import synthetic_slice

# Heatmaps of the smoke models computed by the code before the refactor (commit 38d8e0c); recipe in
# tests/fixtures/README.md.
PREREFACTOR = Path(__file__).parent / "fixtures" / "completion_prerefactor.npz"
CASES = [("picard", {}, True), ("dmse", {}, True), ("telea", {}, True),
         ("picard", {"cnum": 16, "completions": 4}, False), ("dmse", {"cnum": 16}, False)]


@pytest.fixture
def one_thread():
    """The fixture was computed with one intra-op thread; oneDNN's summation order (hence the last bit of a
    convolution) depends on the thread count, so the comparison is made at that count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name,overrides,fit", CASES)
def test_heatmaps_equal_the_pre_refactor_code(name, overrides, fit, one_thread):
    reference = np.load(PREREFACTOR)
    method = create_method(name, "smoke", overrides)
    if fit:
        method.fit([synthetic_slice(i) for i in range(3)])
    torch.manual_seed(3)
    maps = method.score_map(synthetic_slice(42, 64, 48))
    key = name if fit else f"{name}-untrained"
    assert {f"{key}/{v}" for v in maps} == {k for k in reference.files if k.startswith(key + "/")}
    for variant, heat in maps.items():
        expected = reference[f"{key}/{variant}"]
        if name == "telea":  # the hole MSE is now torch's mean (was numpy's): summation order, <= 1e-6 relative
            np.testing.assert_allclose(heat, expected, rtol=1e-6, atol=0, err_msg=variant)
        else:  # the generator's ELU is now exp(x) - 1 (was expm1): float rounding apart, the same maps. Measured:
            # <= 6e-6 of the map's peak untrained, <= 3.1e-4 after the 6 Adam steps of the trained DMSE (Adam's
            # normalised steps amplify last-bit gradient differences), 0 for some variants.
            np.testing.assert_allclose(heat, expected, rtol=0, atol=1e-3 * np.abs(expected).max(), err_msg=variant)


class FixedBackbone(CompletionBackbone):
    """Returns the completions it was given: stands in for 'another backbone' producing the same completions."""

    def __init__(self, samples: torch.Tensor, value_range: tuple[float, float]) -> None:
        super().__init__(samples.shape[-1], samples.shape[-1] // 2, samples.shape[1])
        self.samples, self.value_range = samples, value_range

    def complete(self, windows: torch.Tensor) -> Completions:
        return Completions(self.to_space(windows), self.samples, self.box)


def test_mcd_scores_depend_only_on_the_completions():
    picard = create_method("picard", "smoke", {"completions": 4})
    windows = torch.rand(3, 1, 32, 32)
    with torch.inference_mode():
        torch.manual_seed(0)
        produced = picard.backbone.complete(windows)
        torch.manual_seed(0)
        from_method = picard.score_windows(windows)
        other = FixedBackbone(produced.samples.clone(), (-1.0, 1.0)).complete(windows)
        encoder = picard.backbone.local_critic.features
        again = mcd_scores(other, encoder)
    for name, value in from_method.items():
        torch.testing.assert_close(again[name], value, rtol=0, atol=0)
    assert set(mcd_scores(other)) == {"mcd_image", "mean_image", "median_image"}


def test_completions_shape_and_known_pixels():
    picard = create_method("picard", "smoke", {"completions": 3})
    windows = torch.rand(2, 1, 32, 32)
    with torch.inference_mode():
        done = picard.backbone.complete(windows)
    assert done.samples.shape == (2, 3, 1, 32, 32)
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[centred_box(32, 16)] = False
    torch.testing.assert_close(done.samples[..., outside], done.truth[:, None].expand_as(done.samples)[..., outside],
                               rtol=0, atol=0)
    telea = create_method("telea", "smoke").backbone.complete(windows)
    assert telea.samples.shape == (2, 1, 1, 32, 32)
    torch.testing.assert_close(telea.samples[..., outside], windows[:, None][..., outside], rtol=0, atol=0)


def test_hole_mse_and_dmse_scores_by_hand():
    truth = torch.zeros(2, 1, 8, 8)
    samples = torch.zeros(2, 1, 1, 8, 8)
    samples[0, 0, 0, 2:6, 2:6] = 2.0
    samples[1, 0, 0, 0, 0] = 5.0  # outside the hole: ignored
    c = Completions(truth, samples, centred_box(8, 4))
    torch.testing.assert_close(hole_mse(c), torch.tensor([[4.0], [0.0]]))
    scores = dmse_scores(c, lambda t, s: torch.tensor([0.5, 3.0]))
    torch.testing.assert_close(scores["dmse"], torch.tensor([2.0, 0.0]))
    with pytest.raises(ValueError, match="one deterministic completion"):
        dmse_scores(Completions(truth, samples.repeat(1, 2, 1, 1, 1), c.box), lambda t, s: t)
    with pytest.raises(ValueError, match="do not match"):
        Completions(truth, samples[:1], c.box)
