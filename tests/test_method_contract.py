"""Every registered method passes the same contract: fit the smoke profile on the tiny phantom, score, save, load,
score again -> identical maps; maps are float32 at native resolution, finite, one per declared variant."""
import numpy as np
import pytest
import torch

from adbench_dbt.registry import available_methods, create_method


@pytest.mark.parametrize("name", sorted(available_methods()))
def test_fit_score_save_load_roundtrip(name, tiny_dataset, tmp_path):
    method = create_method(name, "smoke")
    train, val, test = (tiny_dataset.split(s) for s in ("train", "validation", "test"))
    torch.manual_seed(0)
    method.fit(train, val)
    sl = test[0]
    torch.manual_seed(123)
    maps = method.score_map(sl)
    assert set(maps) == set(method.variants), f"{name}: variants {sorted(maps)} != declared {method.variants}"
    for variant, heat in maps.items():
        assert heat.shape == sl.shape and heat.dtype == np.float32, (variant, heat.shape, heat.dtype)
        assert np.isfinite(heat).all(), variant
    method.save(tmp_path / "model")
    loaded = type(method).load(tmp_path / "model")
    assert loaded.config == method.config
    torch.manual_seed(123)
    again = loaded.score_map(sl)
    for variant in maps:
        np.testing.assert_array_equal(maps[variant], again[variant], err_msg=f"{name}/{variant} changed after load")
