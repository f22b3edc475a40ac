"""Training execution modes (train_precision, train_channels_last, train_compile), the crop stream's worker
processes, and `adbench bench --train`: every mode trains every trained method; speed is benchmarked, not tested."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adbench_dbt import sampling
from adbench_dbt.errors import CheckpointError, ConfigError, RunError
from adbench_dbt.registry import create_method
from adbench_dbt.sampling import CropStream, _StepCrops
from adbench_dbt.training import LOG_FILE, MODE_FIELDS, TrainingConfig, TrainingMode, check_resumable, resume_settings

from test_training_resume import _slice

# a couple of steps of each trained method's smoke profile
SHORT = {"cutpaste": {"steps": 2, "batch_originals": 2}, "patchsvdd": {"epochs": 1, "pairs_per_slice": 2},
         "picard": {"iterations": 2, "n_critic": 1}, "dmse": {"iterations": 2, "n_critic": 1},
         "hfpic": {"stage1_steps": 1, "stage2_steps": 1}}


@pytest.fixture(scope="module")
def train() -> list:
    return [_slice(i) for i in range(3)]


def _networks(method) -> dict[str, torch.nn.Module]:
    if hasattr(method, "backbone"):
        return method.backbone.networks()
    return {"net": method.net} if hasattr(method, "net") else {"encoder": method.encoder}


def _weights(method) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n, m in _networks(method).items() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("name", list(SHORT))
@pytest.mark.parametrize("mode", [{"train_precision": "bf16"}, {"train_channels_last": True}])
def test_every_method_trains_in_every_mode(name, mode, train, tmp_path) -> None:
    method = create_method(name, "smoke", {**SHORT[name], **mode, "log_every": 1})
    method.work_dir = tmp_path
    before = _weights(method)
    method.fit(train)
    after = _weights(method)
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert changed, "no weight changed"
    lines = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert lines and all(np.isfinite(v) for line in lines for v in line["losses"].values())
    expected = {"precision": mode.get("train_precision", "fp32"), "channels_last": bool(mode.get("train_channels_last")),
                "compile": False}
    assert all(line["mode"] == expected for line in lines)  # the log says what ran
    for net in _networks(method).values():  # after the fit: plain contiguous weights (scoring, saving)
        assert all(p.is_contiguous() for p in net.parameters())
        assert all(p.dtype == torch.float32 for p in net.parameters())


def test_bf16_autocasts_the_forward_and_keeps_the_loss_fp32() -> None:
    mode = TrainingMode(TrainingConfig(train_precision="bf16"), "cpu")
    conv = torch.nn.Conv2d(1, 2, 3)
    with mode.autocast():
        out = conv(torch.rand(1, 1, 8, 8))
    assert out.dtype == torch.bfloat16
    loss = out.float().mean()
    mode.step(loss, torch.optim.SGD(conv.parameters(), lr=0.1))
    assert conv.weight.dtype == torch.float32 and conv.weight.grad.dtype == torch.float32


def test_channels_last_is_applied_inside_the_fit_only() -> None:
    mode = TrainingMode(TrainingConfig(train_channels_last=True), "cpu")
    conv = torch.nn.Conv2d(2, 4, 3)
    with mode.applied([conv]):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
        assert mode.batch(torch.rand(2, 4, 5, 5)).is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.is_contiguous()


def test_fp16_on_cpu_is_a_config_error_naming_the_field(train) -> None:
    method = create_method("cutpaste", "smoke", {**SHORT["cutpaste"], "train_precision": "fp16"})
    with pytest.raises(ConfigError, match="train_precision: fp16 training needs a CUDA device"):
        method.fit(train)


def test_compile_falls_back_to_eager_with_one_notice(train, tmp_path, monkeypatch, capsys) -> None:
    def unavailable(*args, **kwargs):
        raise RuntimeError("Compiler: cc not found\nlong traceback text")

    monkeypatch.setattr(torch, "compile", unavailable)
    method = create_method("cutpaste", "smoke", {**SHORT["cutpaste"], "train_compile": True, "log_every": 1})
    method.work_dir = tmp_path
    method.fit(train)
    err = capsys.readouterr().err
    assert "train_compile: torch.compile is unavailable here (Compiler: cc not found); training runs eagerly" in err
    assert "long traceback" not in err
    assert all(json.loads(line)["mode"]["compile"] is False for line in (tmp_path / LOG_FILE).read_text().splitlines())


def test_compile_applies_to_the_fit_and_is_undone_after(train, monkeypatch) -> None:
    compiled: list[torch.nn.Module] = []
    seen: list[bool] = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)  # stands in for a working toolchain
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kwargs: (
        compiled.append(self), setattr(self, "_compiled_call_impl", self._call_impl)))
    method = create_method("cutpaste", "smoke", {**SHORT["cutpaste"], "train_compile": True})
    original = method._training_batch

    def batch(*args):
        seen.append(method.net._compiled_call_impl is not None)
        return original(*args)

    monkeypatch.setattr(method, "_training_batch", batch)
    method.fit(train)
    assert compiled == [method.net] and all(seen) and seen
    assert method.net._compiled_call_impl is None  # scoring runs the eager network


def test_amp_flag_is_replaced_by_train_precision(tmp_path) -> None:
    with pytest.raises(ConfigError, match="amp was replaced by train_precision"):
        create_method("picard", "smoke", {"amp": True})
    config = create_method("picard", "smoke", {"amp": False}).config
    assert config.train_precision == "fp32"
    # a checkpoint written before the modes existed (amp false, no train_* fields) resumes as the fp32 fit it was
    saved = {k: v for k, v in resume_settings(config).items() if k not in MODE_FIELDS}
    check_resumable({**saved, "amp": False}, config, tmp_path / "optimizer.pt")
    with pytest.raises(CheckpointError, match="train_precision 'fp32' -> 'bf16'"):
        check_resumable({**saved, "amp": False}, config.model_copy(update={"train_precision": "bf16"}),
                        tmp_path / "optimizer.pt")


def test_worker_crops_depend_on_the_step_not_on_the_workers(train) -> None:
    reference = _StepCrops(train, 3, 32, 0.05, (0, 0))
    rng = np.random.default_rng(0)
    for workers in (1, 2):
        with CropStream(train, 3, 32, "cpu", workers=workers, key=(0, 0)) as stream:
            for step in (0, 1, 2, 5, 6):  # 2 -> 5: a resumed fit restarts the workers at its step
                images, masks = stream.take(step, rng)
                assert torch.equal(images, reference[step][0]) and torch.equal(masks, reference[step][1])
    assert not torch.equal(reference[0][0], reference[1][0])
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state  # workers leave the fit's stream


def test_a_stalled_loader_worker_is_an_error_naming_the_field_not_a_hang(train, monkeypatch) -> None:
    import time

    def stall(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(sampling, "WORKER_TIMEOUT_S", 1.0)
    monkeypatch.setattr(sampling, "sample_tissue_crops", stall)  # the forked worker inherits the stall
    started = time.monotonic()
    with CropStream(train, 3, 32, "cpu", workers=1, key=(0, 0)) as stream:
        with pytest.raises(RunError, match="loader_workers: no training crops .* for 1 s at step 0"):
            stream.take(0, np.random.default_rng(0))
    assert time.monotonic() - started < 25


def test_bench_train_writes_rows(tmp_path, cache_root, tiny_dataset, capsys) -> None:
    from adbench_dbt.cli import main

    out = tmp_path / "bench-train.csv"
    for precision in ("fp32", "bf16"):
        with pytest.raises(SystemExit) as done:
            main(["bench", "--train", "--method", "cutpaste", "--profile", "smoke", "--preset", "tiny",
                  "--device", "cpu", "--warmup-steps", "1", "--steps", "2", "--cache", str(cache_root),
                  "--set", f"train_precision={precision}", "--set", "batch_originals=2", "--out", str(out)])
        assert done.value.code == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert sorted(table.precision) == ["bf16", "fp32"] and set(table.timed_steps) == {2}
    assert (table.steps_per_s > 0).all() and np.allclose(table.samples_per_s, 2 * table.steps_per_s)
    assert "| cutpaste | smoke batch_originals=2 |" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit) as done:
        main(["bench", "--train", "--method", "cutpaste", "--profile", "smoke", "--preset", "tiny", "--device",
              "cpu", "--warmup-steps", "2", "--steps", "5", "--cache", str(cache_root), "--out", str(out)])
    assert done.value.code != 0  # the smoke profile has 3 steps: said, not a row from too few steps
    assert "trained only 3 steps, 7 needed" in capsys.readouterr().err
    assert len(pd.read_csv(out)) == 2


def test_device_crops_are_tissue_crops_of_the_slices() -> None:
    from adbench_dbt.data.slices import Slice
    from adbench_dbt.sampling import DeviceSlices

    slices = []
    for k, (h, w) in enumerate([(64, 48), (40, 56)]):  # pixel value = (slice, row, col) encoded: crops are traceable
        code = (k * 10_000 + np.arange(h)[:, None] * 100 + np.arange(w)[None, :]).astype(np.float32) / 2 ** 20
        breast = np.zeros((h, w), bool)
        breast[:, : w // 3] = True  # tissue only on the left third
        slices.append(Slice.from_array(f"s{k}", code, breast_mask=breast))
    cut = DeviceSlices(slices, 16, torch.device("cpu"), budget_gb=1.0)
    images, masks = cut.cut(200, torch.Generator().manual_seed(0), min_fraction=0.25)
    corner = (images[:, 0, 0] * 2 ** 20).round().long()
    which, top, left = corner // 10_000, corner % 10_000 // 100, corner % 100
    assert set(which.tolist()) == {0, 1}
    for k in range(len(images)):
        image, mask = slices[which[k]].load()
        window = (slice(int(top[k]), int(top[k]) + 16), slice(int(left[k]), int(left[k]) + 16))
        assert np.array_equal(images[k].numpy(), image[window]) and np.array_equal(masks[k].numpy(), mask[window])
    assert (masks.float().mean((1, 2)) >= 0.25).all()  # the rejection rule holds (tissue is plentiful here)
    with pytest.raises(ConfigError, match="device_crops: 2 training slices need .* over device_crops_gb=1e-06"):
        DeviceSlices(slices, 16, torch.device("cpu"), budget_gb=1e-6)


def test_device_crops_train_and_depend_on_the_step_only(train) -> None:
    stream = CropStream.for_config(TrainingConfig(device_crops=True), train, 4, 32, "cpu", key=(0, 0))
    first, again = stream.take(3, np.random.default_rng(1)), stream.take(3, np.random.default_rng(2))
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], stream.take(4, None)[0])
    method = create_method("patchsvdd", "smoke", {**SHORT["patchsvdd"], "device_crops": True})
    before = _weights(method)
    method.fit(train)
    assert any(not torch.equal(v, _weights(method)[k]) for k, v in before.items() if v.is_floating_point())
