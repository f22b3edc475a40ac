"""Every trained method, killed mid-fit and started again in the same work dir, ends bitwise where an uninterrupted
fit ends (CPU, same seed): weights, density / memory bank / training history alike."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from adbench_dbt.data.slices import Slice
from adbench_dbt.methods.cutpaste.method import CutPaste
from adbench_dbt.methods.patchsvdd.method import PatchSVDD
from adbench_dbt.completion.hfpic.trainer import HfpicTrainer
from adbench_dbt.completion.trainer import InpaintingTrainer
from adbench_dbt.registry import create_method
from adbench_dbt.training import LOG_FILE


def _slice(seed: int, height: int = 128, width: int = 112) -> Slice:
    """Smooth texture in an elliptical breast touching the left edge, black background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    breast = ((yy - height / 2) / (0.45 * height)) ** 2 + (xx / (0.9 * width)) ** 2 < 1
    texture = gaussian_filter(rng.random((height, width)), 2)
    texture = (texture - texture.min()) / np.ptp(texture)
    return Slice.from_array(f"normal-{seed}", ((0.3 + 0.5 * texture) * breast).astype(np.float32))


@pytest.fixture(scope="module")
def train() -> list[Slice]:
    return [_slice(i) for i in range(3)]


# method, smoke overrides (total steps, checkpoint cadence), the callable run once per step, the step it dies in,
# the step its last checkpoint holds
CASES = {
    "cutpaste": ({"steps": 5, "checkpoint_every": 2, "progress": False}, (CutPaste, "_training_batch"), 4, 2),
    "patchsvdd": ({"epochs": 3, "checkpoint_every": 2, "progress": False}, (PatchSVDD, "_loss"), 4, 2),
    "picard": ({"checkpoint_every": 3, "n_critic": 2}, (InpaintingTrainer, "step"), 5, 3),
    "dmse": ({"checkpoint_every": 3, "n_critic": 2}, (InpaintingTrainer, "step"), 5, 3),
    # 3 transformer steps, then 3 upsampler steps: killed in stage 2, resumed from a stage-2 checkpoint
    "hfpic": ({"checkpoint_every": 2}, (HfpicTrainer, "step"), 5, 4),
    "hfpic-stage1": ({"checkpoint_every": 2, "stage1_steps": 4, "stage2_steps": 1}, (HfpicTrainer, "step"), 4, 2),
    # crops cut by a worker process (per-step streams: the resumed fit's workers restart at its step)
    "cutpaste-workers": ({"steps": 5, "checkpoint_every": 2, "progress": False, "loader_workers": 1},
                         (CutPaste, "_training_batch"), 4, 2),
    # crops cut on the device from per-step generators
    "patchsvdd-device": ({"epochs": 3, "checkpoint_every": 2, "progress": False, "device_crops": True},
                         (PatchSVDD, "_loss"), 4, 2),
    # bf16 autocast (deterministic on the CPU, so it resumes bitwise too)
    "picard-bf16": ({"checkpoint_every": 3, "n_critic": 2, "train_precision": "bf16"}, (InpaintingTrainer, "step"),
                    5, 3),
}


def _fit(name: str, train: list[Slice], work_dir, process_seed: int = 0) -> Any:
    """A fit as a fresh process runs it; `process_seed` stands for the global RNG state the process starts in."""
    torch.manual_seed(process_seed)
    method = create_method(name.split("-")[0], "smoke", CASES[name][0])
    method.work_dir = work_dir
    method.fit(train)
    return method


def _assert_same_state(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(actual[key], value), key
        elif isinstance(value, dict):
            _assert_same_state(actual[key], value)
        else:
            assert actual[key] == value, key


@pytest.mark.parametrize("name", list(CASES))
def test_killed_fit_resumes_to_the_uninterrupted_weights(name, train, tmp_path, monkeypatch, capsys) -> None:
    _, (owner, attribute), dies_in, checkpoint = CASES[name]
    reference = _fit(name, train, None)

    original, calls = getattr(owner, attribute), [0]

    def dies(*args, **kwargs):
        calls[0] += 1
        if calls[0] == dies_in:
            raise KeyboardInterrupt  # a kill in the middle of a step
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(owner, attribute, dies)
        with pytest.raises(KeyboardInterrupt):
            _fit(name, train, tmp_path)
    capsys.readouterr()
    resumed = _fit(name, train, tmp_path, process_seed=99)  # its start state must not matter: all is restored

    assert f"{name.split('-')[0]}: resuming from step {checkpoint}/" in capsys.readouterr().err
    _assert_same_state(resumed.state_dict(), reference.state_dict())
    steps = [json.loads(line)["step"] for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] >= dies_in  # one line per logged step, none doubled
