"""DMSE: deterministic completion, mse / discr / dmse from one pass, FOV 512 critic, profiles, save/load."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from adbench_dbt.config import ConfigError
from adbench_dbt.registry import create_method, get_method
from test_inpainting_trainer import synthetic_slice


@pytest.fixture(scope="module")
def fitted():
    method = create_method("dmse", "smoke")
    method.fit([synthetic_slice(i) for i in range(3)])
    return method


def test_profiles():
    cls = get_method("dmse")
    profiles = cls.profiles()
    assert {"paper", "averaged", "fov512", "demo", "smoke"} <= set(profiles)
    paper = profiles["paper"]
    assert (paper["window"], paper["hole"], paper["stride"], paper["assembly"]) == (256, 128, 8, "centered-nearest")
    assert profiles["averaged"]["assembly"] == "averaged" and profiles["averaged"]["stride"] == 8
    assert profiles["fov512"]["window"] == 512 and profiles["fov512"]["global_extra_conv"]
    with pytest.raises(ConfigError, match="discr"):
        create_method("dmse", "smoke", {"discr": "absolute"})


def test_fov512_global_critic_matches_fov256_features():
    small = create_method("dmse", "smoke", {"window": 64, "hole": 32})
    large = create_method("dmse", "smoke", {"window": 128, "hole": 32, "global_extra_conv": True})
    assert large.backbone.global_critic.linear.weight.shape == small.backbone.global_critic.linear.weight.shape
    assert large.backbone.global_critic.input_conv is not None and small.backbone.global_critic.input_conv is None
    with torch.inference_mode():
        scores = large.score_windows(torch.rand(2, 1, 128, 128))
    assert all(v.shape == (2,) for v in scores.values())


def test_scores_from_one_deterministic_pass(fitted):
    windows = torch.rand(4, 1, 32, 32)
    with torch.inference_mode():
        torch.manual_seed(0)
        first = fitted.score_windows(windows)
        torch.manual_seed(1)
        second = fitted.score_windows(windows)
    assert set(first) == {"mse", "discr", "dmse"}
    for name in first:
        torch.testing.assert_close(first[name], second[name])  # no dropout: seed-independent
    torch.testing.assert_close(first["dmse"], first["mse"] * first["discr"])
    assert fitted.backbone.generator.live_dropout() == []


def test_mse_and_critic_gap_match_a_direct_computation(fitted):
    windows = torch.rand(3, 1, 32, 32)
    x = windows * 2 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    with torch.inference_mode():
        scores = fitted.score_windows(windows)
        _, x2 = fitted.backbone.generator(x * (1 - mask), mask)
        done = x2 * mask + x * (1 - mask)
        mse = (done - x).pow(2)[..., 8:24, 8:24].flatten(1).mean(1)
        local, glob = fitted.backbone.local_critic, fitted.backbone.global_critic
        gap = (local(x[..., 8:24, 8:24]) - local(done[..., 8:24, 8:24]) + glob(x) - glob(done))[:, 0]
    torch.testing.assert_close(scores["mse"], mse)
    torch.testing.assert_close(scores["discr"], gap, rtol=1e-4, atol=1e-5)


def test_discr_alternatives(fitted):
    windows = torch.rand(3, 1, 32, 32)
    state = fitted.state_dict()

    def discr(**overrides):
        method = create_method("dmse", "smoke", overrides)
        method.load_state_dict(state)
        with torch.inference_mode():
            return method.score_windows(windows)["discr"]

    both = discr()
    torch.testing.assert_close(discr(discr_critics="local") + discr(discr_critics="global"), both,
                               rtol=1e-4, atol=1e-5)
    x = windows * 2 - 1
    with torch.inference_mode():
        generator_loss = discr(discr="generator_loss", discr_critics="local")
        real = fitted.backbone.local_critic(x[..., 8:24, 8:24])[:, 0]
    torch.testing.assert_close(discr(discr_critics="local"), real + generator_loss, rtol=1e-4, atol=1e-5)


def test_score_map_save_load(fitted, tmp_path):
    test = synthetic_slice(11)
    maps = fitted.score_map(test)
    assert set(maps) == {"mse", "discr", "dmse"}
    assert all(m.shape == test.shape and m.dtype == np.float32 and np.isfinite(m).all() for m in maps.values())
    fitted.save(tmp_path / "model")
    again = get_method("dmse").load(tmp_path / "model").score_map(test)
    for name in maps:
        np.testing.assert_array_equal(maps[name], again[name])
