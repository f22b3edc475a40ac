"""PICARD: completion scores, one batched N*M pass, profiles, fit/score/save/load and official checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from adbench_dbt.config import ConfigError
from adbench_dbt.completion.scorers import completion_distances, completion_scores, reduce_distances
from adbench_dbt.completion.official_checkpoints import save_official
from adbench_dbt.registry import create_method, get_method
from test_inpainting_trainer import synthetic_slice

# official PICARD checkpoint layout; provenance in tests/fixtures/README.md
LAYOUT = Path(__file__).parent / "fixtures" / "picard_official_layout.json"
VARIANTS = {"mcd_image", "mcd_feature", "mean_image", "mean_feature", "median_image", "median_feature"}


def test_completion_distances_and_lower_median():
    truth = torch.zeros(2, 1, 2, 2)
    completions = torch.stack([torch.full((1, 2, 2), v) for v in (1.0, 3.0, 2.0, 4.0, 0.5, 0.5, 0.5, 0.5)])
    d = completion_distances(truth, completions)
    torch.testing.assert_close(d, torch.tensor([[2.0, 6.0, 4.0, 8.0], [1.0, 1.0, 1.0, 1.0]]))
    stats = reduce_distances(d)
    torch.testing.assert_close(stats["mcd"], torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(stats["mean"], torch.tensor([5.0, 1.0]))
    torch.testing.assert_close(stats["median"], torch.tensor([4.0, 1.0]))  # lower median of 2,4,6,8
    scores = completion_scores(truth, completions, encoder=lambda x: 3 * x)
    assert set(scores) == VARIANTS
    torch.testing.assert_close(scores["mcd_feature"], 3 * scores["mcd_image"])
    with pytest.raises(ValueError, match="do not match"):
        completion_distances(truth, completions[:3])


@pytest.fixture(scope="module")
def train_slices():
    return [synthetic_slice(i) for i in range(3)]


@pytest.fixture(scope="module")
def fitted(train_slices):
    method = create_method("picard", "smoke")
    method.fit(train_slices)
    return method


def test_registered_with_profiles():
    cls = get_method("picard")
    assert {"paper", "demo", "smoke"} <= set(cls.profiles())
    paper = cls.Config.model_validate(cls.profiles()["paper"])
    assert (paper.window, paper.hole, paper.stride, paper.completions, paper.dropout) == (256, 128, 32, 10, 0.5)
    assert (paper.assembly, paper.skip_background, paper.cnum, paper.train_batch_size) == \
        ("grid-bicubic", False, 32, 55)
    assert paper.iterations == 130_000 and not paper.fine_dropout
    with pytest.raises(ConfigError, match="completions"):
        create_method("picard", "smoke", {"completions": 0})
    with pytest.raises(ConfigError, match="centrable"):
        create_method("picard", "smoke", {"hole": 15})


def test_paper_profile_builds_the_official_networks():
    method = create_method("picard", "paper")
    reference = json.loads(LAYOUT.read_text())
    assert {k: list(v.shape) for k, v in method.backbone.generator.state_dict().items()} == reference["generator"]
    assert {k: list(v.shape) for k, v in method.backbone.local_critic.state_dict().items()} == \
        reference["discriminator"]["localD"]
    assert {k: list(v.shape) for k, v in method.backbone.global_critic.state_dict().items()} == \
        reference["discriminator"]["globalD"]
    assert method.backbone.generator.live_dropout() == reference["dropout_active"]


def test_one_batched_forward_and_truth_encoded_once(fitted):
    method = fitted
    m = method.config.completions
    calls: list[tuple[str, int]] = []
    method.backbone.generator.register_forward_hook(lambda mod, i, o: calls.append(("generator", i[0].shape[0])))
    handle = method.backbone.local_critic.dis_conv_module.register_forward_hook(
        lambda mod, i, o: calls.append(("encoder", i[0].shape[0])))
    windows = torch.rand(5, 1, 32, 32)
    with torch.inference_mode():
        scores = method.score_windows(windows)
    handle.remove()
    method.backbone.generator._forward_hooks.clear()
    assert calls == [("generator", 5 * m), ("encoder", 5), ("encoder", 5 * m)]
    assert set(scores) == VARIANTS and all(v.shape == (5,) for v in scores.values())
    assert (scores["mcd_image"] <= scores["median_image"] + 1e-6).all()
    assert (scores["mcd_image"] <= scores["mean_image"] + 1e-6).all()


def test_scores_equal_a_direct_computation(fitted):
    method = fitted
    m = method.config.completions
    windows = torch.rand(3, 1, 32, 32)
    with torch.inference_mode():
        torch.manual_seed(5)
        scores = method.score_windows(windows)
        torch.manual_seed(5)
        x = windows * 2 - 1
        mask = torch.zeros(1, 1, 32, 32)
        mask[..., 8:24, 8:24] = 1
        _, x2 = method.backbone.generator((x * (1 - mask)).repeat_interleave(m, 0), mask)
        truth, completion = x[..., 8:24, 8:24], x2[..., 8:24, 8:24]
        feats = method.backbone.local_critic.features
        feature = (feats(completion).reshape(3, m, -1) - feats(truth).reshape(3, 1, -1)).norm(dim=2)
    image = (completion.reshape(3, m, -1) - truth.reshape(3, 1, -1)).norm(dim=2)
    torch.testing.assert_close(scores["mcd_image"], image.min(dim=1).values)
    torch.testing.assert_close(scores["mcd_feature"], feature.min(dim=1).values)


def test_completions_differ_only_through_dropout():
    method = create_method("picard", "smoke", {"cnum": 16, "completions": 4})
    windows = torch.rand(2, 1, 32, 32)
    with torch.inference_mode():
        _, masked = method.backbone.masked_input(windows)
        x1, _ = method.backbone.generator(masked.repeat_interleave(4, 0), method.backbone.hole_mask)
        assert not torch.allclose(x1[0], x1[1])
        method.backbone.generator.set_dropout(0.0)
        x1, _ = method.backbone.generator(masked.repeat_interleave(4, 0), method.backbone.hole_mask)
        torch.testing.assert_close(x1[0], x1[1])


def test_fit_score_save_load_round_trip(fitted, tmp_path):
    test = synthetic_slice(42)
    torch.manual_seed(3)
    maps = fitted.score_map(test)
    assert set(maps) == VARIANTS
    assert all(v.shape == test.shape and v.dtype == np.float32 and np.isfinite(v).all() for v in maps.values())
    assert fitted.last_window_count > 0
    assert fitted.backbone.training_l1.shape == (2, 2)  # checkpoint_every 3 of 6 iterations

    fitted.save(tmp_path / "model")
    loaded = get_method("picard").load(tmp_path / "model")
    torch.manual_seed(3)
    again = loaded.score_map(test)
    for name in VARIANTS:
        np.testing.assert_array_equal(maps[name], again[name])
    torch.testing.assert_close(loaded.backbone.training_l1, fitted.backbone.training_l1)

    via_checkpoint = get_method("picard").restore(tmp_path / "model", fitted.config.model_copy(
        update={"stride": 8}))
    assert via_checkpoint.config.stride == 8
    torch.testing.assert_close(via_checkpoint.backbone.generator.coarse_generator.conv1.conv.weight,
                               fitted.backbone.generator.coarse_generator.conv1.conv.weight)


def test_from_official_checkpoint_directory(fitted, tmp_path):
    save_official(tmp_path, 100, fitted.backbone.generator, fitted.backbone.local_critic, fitted.backbone.global_critic)
    save_official(tmp_path, 50, *create_method("picard", "smoke", {"seed": 9}).backbone.networks().values())
    latest = get_method("picard").from_checkpoint(tmp_path, fitted.config)
    test = synthetic_slice(7)
    torch.manual_seed(1)
    a = fitted.score_map(test)
    torch.manual_seed(1)
    b = latest.score_map(test)
    np.testing.assert_array_equal(a["mcd_image"], b["mcd_image"])
    older = get_method("picard").from_checkpoint(tmp_path, fitted.config.model_copy(update={"checkpoint_iter": 50}))
    assert not torch.equal(older.backbone.generator.coarse_generator.conv1.conv.weight,
                           latest.backbone.generator.coarse_generator.conv1.conv.weight)
    with pytest.raises(ValueError, match="does not match"):
        get_method("picard").from_checkpoint(tmp_path, fitted.config.model_copy(update={"cnum": 8}))


def test_load_rejects_foreign_state(fitted):
    method = create_method("picard", "smoke")
    with pytest.raises(ValueError, match="state keys"):
        method.load_state_dict({"generator": {}})
