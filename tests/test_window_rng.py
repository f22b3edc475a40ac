"""Keyed random numbers (adbench_dbt.window_rng): a stochastic method's draws for a window do not depend on the
batch it is scored in."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from adbench_dbt import window_rng
from adbench_dbt.completion.deepfill import SpatialDropout
from adbench_dbt.registry import create_method
from adbench_dbt.windows import run_batches
from test_inpainting_trainer import synthetic_slice


def test_uniforms_are_uniform_and_unrelated_across_adjacent_keys_streams_and_counters():
    keys = torch.arange(8192, dtype=torch.int64)  # adjacent keys: the hardest case for a weak hash
    u = window_rng.uniform(keys, 0, (32,))
    assert u.shape == (8192, 32) and u.dtype == torch.float32 and 0 <= float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.003 and abs(float(u.var()) - 1 / 12) < 0.002
    counts = torch.histc(u, bins=16, min=0, max=1)
    expected = u.numel() / 16
    assert float(((counts - expected) ** 2 / expected).sum()) < 45  # chi-square, 15 dof: p ~ 1e-4
    other_stream = window_rng.uniform(keys, 1, (32,))
    pairs = {"counters": (u[:, 0], u[:, 1]), "streams": (u, other_stream), "keys": (u[:-1], u[1:])}
    for what, (a, b) in pairs.items():
        corr = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
        assert abs(corr) < 0.02, what


def test_per_draw_keys_are_window_major_and_depend_only_on_their_window():
    keys = window_rng.window_keys(window_rng.combine(torch.tensor(7), 3), torch.arange(10))
    draws = window_rng.per_draw(keys, 3)
    assert len(draws) == 30 and len(set(draws.tolist())) == 30
    torch.testing.assert_close(draws.view(10, 3)[:, 2], window_rng.combine(keys, 2))
    torch.testing.assert_close(window_rng.per_draw(keys[4:6], 3), draws[12:18])


def test_current_keys_must_match_the_batch_and_are_fresh_outside_the_engine():
    with window_rng.current_keys(torch.arange(3)):
        assert torch.equal(window_rng.keys_or_fresh(3, torch.device("cpu")), torch.arange(3))
        with pytest.raises(ValueError, match="3 current keys for a batch of 4"):
            window_rng.keys_or_fresh(4, torch.device("cpu"))
    assert window_rng.current() is None
    torch.manual_seed(0)
    a = window_rng.keys_or_fresh(5, torch.device("cpu"))
    torch.manual_seed(0)
    assert torch.equal(a, window_rng.keys_or_fresh(5, torch.device("cpu")))


def _keyed_scorer(batch: torch.Tensor) -> dict[str, torch.Tensor]:
    keys = window_rng.keys_or_fresh(batch.shape[0], batch.device)
    return {"draw": window_rng.uniform(keys, 0, (2,))}


class _FixedShape:
    """A scorer that, like a compiled executor, is handed full (padded) batches."""
    fixed_shape = True

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return _keyed_scorer(batch)


def test_engine_draws_depend_on_the_window_and_seed_not_on_batch_size_or_padding():
    windows = torch.zeros(4, 5, 1, 8, 8)
    indices = torch.tensor([0, 1, 2, 6, 7, 11, 12, 13, 19])

    def draws(scorer, batch_size: int, seed: int = 3) -> torch.Tensor:
        torch.manual_seed(seed)  # what the runner does before each slice
        return run_batches(windows, indices, scorer, batch_size)[0]["draw"]

    reference = draws(_keyed_scorer, 16)
    for scorer, batch_size in [(_keyed_scorer, 1), (_keyed_scorer, 4), (_FixedShape(), 4), (_FixedShape(), 5)]:
        assert torch.equal(draws(scorer, batch_size), reference), (scorer, batch_size)
    assert not torch.equal(draws(_keyed_scorer, 16, seed=4), reference)
    torch.manual_seed(3)
    subset = run_batches(windows, indices[3:6], _keyed_scorer, 2)[0]["draw"]
    assert torch.equal(subset, reference[3:6])  # a window's draws do not depend on the other windows either


def test_spatial_dropout_zeroes_a_fraction_p_of_channels_and_rescales_the_rest():
    drop = SpatialDropout(0.3)
    drop.live = True
    x = torch.ones(400, 64, 2, 2).contiguous(memory_format=torch.channels_last)
    with window_rng.current_keys(torch.arange(400)):
        out = drop(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    per_channel = out[:, :, 0, 0]
    assert (out == per_channel[:, :, None, None]).all()  # whole channels
    assert per_channel.unique().tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert abs(float((per_channel == 0).float().mean()) - 0.3) < 0.01
    drop.stream = 1
    with window_rng.current_keys(torch.arange(400)):
        assert not torch.equal(drop(torch.ones(400, 64, 2, 2)), out)  # each layer its own masks


# random smoke weights barely pass the draws on: PICARD's fine stage ignores the coarse output (so fine-stage dropout
# is switched on), HFPIC's upsampler its token prior (so the sampled tokens are compared, as the upsampler sees them)
@pytest.mark.parametrize("name, options", [("picard", {"fine_dropout": True}),
                                           ("hfpic", {"sampling": "parallel", "parallel_steps": 2})])
def test_stochastic_heatmaps_do_not_depend_on_the_window_batch(name, options):
    """PICARD's dropout masks and HFPIC's token samples were drawn per batch: at another batch size the heatmaps
    changed as with another seed (PICARD paper: pixel Spearman 0.44-0.64 between batch 10 and 7)."""
    method = create_method(name, "smoke", options)
    test = synthetic_slice(11)
    seen: list[torch.Tensor] = []  # what the draws decide: PICARD's completions, HFPIC's token prior
    if name == "hfpic":
        method.backbone.upsampler.register_forward_pre_hook(lambda module, args: seen.append(args[2].clone()))
    else:
        method.backbone.generator.register_forward_hook(lambda module, args, out: seen.append(out[1].clone()))

    def scored(batch_size: int, seed: int = 2) -> tuple[dict[str, np.ndarray], torch.Tensor]:
        method.effective_batch_size = batch_size
        seen.clear()
        torch.manual_seed(seed)
        maps = method.score_map(test)
        return maps, torch.cat(seen)

    (reference, inputs), (other, other_inputs) = scored(16), scored(5)
    assert method.last_window_count > 5  # several batches
    torch.testing.assert_close(other_inputs, inputs, rtol=0, atol=1e-6)
    for variant, heat in reference.items():
        np.testing.assert_allclose(other[variant], heat, rtol=1e-5, atol=1e-5, err_msg=variant)
    reseeded, reseeded_inputs = scored(16, seed=3)
    assert not torch.allclose(reseeded_inputs, inputs, atol=1e-3)  # the draws are live
    assert name == "hfpic" or any(not np.allclose(reseeded[v], reference[v], atol=1e-4) for v in reference)
