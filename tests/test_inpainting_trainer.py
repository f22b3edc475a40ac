"""WGAN-GP inpainter trainer: loss pieces, update schedule, checkpoints/exact resume, DDP hook."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
from scipy.ndimage import gaussian_filter
from torch.nn.parallel import DistributedDataParallel

from adbench_dbt.data.slices import Slice
from adbench_dbt.errors import CheckpointError
from adbench_dbt.completion.critics import GlobalCritic, LocalCritic
from adbench_dbt.completion.deepfill import InpaintGenerator
from adbench_dbt.completion.trainer import (OPTIMIZER_FILE, InpaintingTrainer, InpaintingTrainingConfig,
                                               gradient_penalty_scores, hole_masks, spatial_discount)
from adbench_dbt.training import LOG_FILE

WINDOW, HOLE = 32, 16


def synthetic_slice(seed: int, height: int = 96, width: int = 72) -> Slice:
    """Smooth texture inside an elliptical 'breast' touching the left edge, black background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    breast = ((yy - height / 2) / (0.45 * height)) ** 2 + (xx / (0.9 * width)) ** 2 < 1
    texture = gaussian_filter(rng.random((height, width)), 2)
    texture = (texture - texture.min()) / np.ptp(texture)
    return Slice.from_array(f"synthetic-{seed}", ((0.3 + 0.5 * texture) * breast).astype(np.float32))


@pytest.fixture(scope="module")
def slices() -> list[Slice]:
    return [synthetic_slice(i) for i in range(3)]


def make_trainer(**overrides) -> InpaintingTrainer:
    torch.manual_seed(0)
    settings = dict(hole=HOLE, hole_shrink=2, iterations=4, train_batch_size=2, checkpoint_every=2, progress=False)
    config = InpaintingTrainingConfig(**(settings | overrides))
    return InpaintingTrainer(InpaintGenerator(1, 4), LocalCritic(1, 4, HOLE), GlobalCritic(1, 4, WINDOW),
                             config, WINDOW)


def test_spatial_discount_is_gamma_to_the_edge_distance():
    w = spatial_discount(128, 0.9)
    assert w.shape == (128, 128)
    assert w[0, 0] == 1 and w[0, 64] == 1 and w[64, 0] == 1
    assert w[64, 64] == pytest.approx(0.9 ** 64)
    assert w[10, 64] == pytest.approx(0.9 ** 10)


def test_hole_masks_shrink_each_sample_within_the_box():
    rng = np.random.default_rng(0)
    masks = hole_masks(64, 64, 32, 8, 20, 4, rng)
    assert masks.shape == (64, 1, 64, 64)
    box = torch.zeros(64, 64)
    box[8:40, 20:52] = 1
    assert ((masks <= box).all())
    sides = masks[:, 0].amax(dim=2).sum(dim=1)  # hole height per sample
    assert sides.min() >= 32 - 8 and sides.max() <= 32
    assert len(set(sides.tolist())) > 1  # margins drawn per sample
    assert masks[:, 0, 8 + 4: 40 - 4, 20 + 4: 52 - 4].all()


def test_gradient_penalty_of_a_linear_critic():
    weight = torch.randn(1, 1, 8, 8)

    def critic(x):
        return (x * weight).flatten(1).sum(dim=1, keepdim=True)

    real, fake = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    d_real, d_fake, gp = gradient_penalty_scores(critic, real, fake)
    torch.testing.assert_close(d_real, critic(real))
    torch.testing.assert_close(d_fake, critic(fake))
    assert float(gp) == pytest.approx((float(weight.norm()) - 1) ** 2, rel=1e-5)


def test_critic_every_step_generator_every_n_critic(slices):
    trainer = make_trainer(n_critic=2)
    rng = np.random.default_rng(0)

    def snapshot(module):
        return [p.detach().clone() for p in module.parameters()]

    for iteration, g_step in [(0, True), (1, False), (2, True)]:
        gen_before, critic_before = snapshot(trainer.generator), snapshot(trainer.local_critic)
        trainer.iteration = iteration
        losses = trainer.step(slices, rng)
        assert all(np.isfinite(v) for v in losses.values())
        gen_changed = any(not torch.equal(a, b) for a, b in zip(gen_before, trainer.generator.parameters()))
        critic_changed = any(not torch.equal(a, b) for a, b in zip(critic_before, trainer.local_critic.parameters()))
        assert critic_changed
        assert gen_changed == g_step
        assert ("l1" in losses) == g_step


def test_no_dropout_during_training(slices):
    trainer = make_trainer(iterations=1)
    trainer.generator.set_dropout(0.5)
    seen = []
    trainer.generator.coarse_generator.conv3.dropout.register_forward_hook(lambda m, i, o: seen.append(m.live))
    trainer.train(slices)
    assert seen == [False]
    assert trainer.generator.live_dropout()  # inference setting restored


def test_checkpoint_resume_continues_the_run(tmp_path, slices):
    full = make_trainer(iterations=4, checkpoint_dir=str(tmp_path / "a"))
    full.train(slices)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["dis_00000002.pt", "dis_00000004.pt", "gen_00000002.pt", "gen_00000004.pt", OPTIMIZER_FILE,
                     LOG_FILE]
    state = torch.load(tmp_path / "a" / OPTIMIZER_FILE, weights_only=True)
    assert state["iteration"] == 4 and [h["iteration"] for h in state["history"]] == [2.0, 4.0]

    resumed = make_trainer(iterations=6, checkpoint_dir=str(tmp_path / "a"))
    assert resumed.resume(tmp_path / "a")
    assert resumed.iteration == 4
    for a, b in zip(full.generator.parameters(), resumed.generator.parameters()):
        torch.testing.assert_close(a, b)
    assert resumed.opt_g.state_dict()["state"].keys() == full.opt_g.state_dict()["state"].keys()
    history = resumed.train(slices)
    assert [h["iteration"] for h in history] == [2.0, 4.0, 6.0]
    assert all(h["hole_l1"] > 0 for h in history)
    assert (tmp_path / "a" / "gen_00000006.pt").exists()

    fresh = make_trainer(iterations=2)
    assert not fresh.resume(tmp_path / "empty")


def test_resume_rejects_foreign_optimizer_file(tmp_path):
    torch.save({"gen": {}}, tmp_path / OPTIMIZER_FILE)
    with pytest.raises(CheckpointError, match="optimizer.pt"):
        make_trainer().resume(tmp_path)


def _weights(trainer: InpaintingTrainer) -> dict[str, torch.Tensor]:
    nets = {"g": trainer.generator, "l": trainer.local_critic, "d": trainer.global_critic}
    return {f"{n}.{k}": v for n, net in nets.items() for k, v in net.state_dict().items()}


def _interrupt_step_at(monkeypatch, call: int) -> None:
    """KeyboardInterrupt inside the `call`-th step (1-based) after its crops are drawn: a kill mid-iteration."""
    original, calls = InpaintingTrainer.step, [0]

    def step(self, slices, rng):
        calls[0] += 1
        if calls[0] == call:
            rng.random(3)
            raise KeyboardInterrupt
        return original(self, slices, rng)

    monkeypatch.setattr(InpaintingTrainer, "step", step)


def test_interrupted_training_resumes_to_the_uninterrupted_weights(tmp_path, slices, monkeypatch, capsys):
    """Crops, hole boxes, GP mixing weights and Adam moments continue exactly: bitwise the same weights."""
    settings = dict(iterations=5, checkpoint_every=2, n_critic=2)
    full = make_trainer(**settings, checkpoint_dir=str(tmp_path / "full"))
    full.train(slices)

    with monkeypatch.context() as patch:
        _interrupt_step_at(patch, 4)  # iterations 1-3 done, checkpoint at 2
        with pytest.raises(KeyboardInterrupt):
            make_trainer(**settings, checkpoint_dir=str(tmp_path / "cut")).train(slices)
    torch.manual_seed(123)  # the process that resumes starts from another global RNG state
    resumed = make_trainer(**settings, checkpoint_dir=str(tmp_path / "cut"))
    history = resumed.train(slices)
    assert "resuming from step 2/5" in capsys.readouterr().err

    expected = _weights(full)
    for key, value in _weights(resumed).items():
        assert torch.equal(value, expected[key]), key
    assert history == full.history
    for opt in ("opt_g", "opt_d"):
        moments = zip(getattr(resumed, opt).state_dict()["state"].values(), getattr(full, opt).state_dict()["state"].values())
        assert all(torch.equal(a[k], b[k]) for a, b in moments for k in a)
    logged = [json.loads(line) for line in (tmp_path / "cut" / LOG_FILE).read_text().splitlines()]
    reference = [json.loads(line) for line in (tmp_path / "full" / LOG_FILE).read_text().splitlines()]
    assert [(r["step"], r["losses"]) for r in logged] == [(r["step"], r["losses"]) for r in reference]


def test_training_depends_on_the_seed_not_on_the_callers_global_rng(slices):
    trained = []
    for caller_seed in (5, 6):
        trainer = make_trainer(iterations=2)
        torch.manual_seed(caller_seed)
        trainer.train(slices)
        trained.append(_weights(trainer))
    assert all(torch.equal(trained[0][k], v) for k, v in trained[1].items())


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path, slices):
    make_trainer(iterations=2, checkpoint_dir=str(tmp_path)).train(slices)
    with pytest.raises(CheckpointError, match="lr 0.0001 -> 0.001"):
        make_trainer(iterations=4, lr=1e-3).resume(tmp_path)
    assert make_trainer(iterations=4, checkpoint_every=1, progress=True).resume(tmp_path)  # display/length only


def test_checkpoint_without_rng_states_still_resumes(tmp_path, slices):
    """optimizer.pt files written before RNG states were saved continue with fresh streams."""
    make_trainer(iterations=2, checkpoint_dir=str(tmp_path)).train(slices)
    state = torch.load(tmp_path / OPTIMIZER_FILE, weights_only=True)
    torch.save({k: state[k] for k in ("gen", "dis", "iteration", "history")}, tmp_path / OPTIMIZER_FILE)
    resumed = make_trainer(iterations=3)
    assert resumed.resume(tmp_path) and resumed.iteration == 2
    assert resumed.train(slices, tmp_path)[-1]["iteration"] == 3.0


def test_invalid_geometry_is_an_error():
    with pytest.raises(ValueError, match="hole_shrink"):
        make_trainer(hole_shrink=8)
    with pytest.raises(ValueError, match="larger than the window"):
        InpaintingTrainer(InpaintGenerator(1, 4), LocalCritic(1, 4, 64), GlobalCritic(1, 4, 32),
                          InpaintingTrainingConfig(hole=64), 32)


def test_wraps_in_ddp_when_a_process_group_exists(tmp_path, slices):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        trainer = make_trainer(iterations=2, n_critic=1)
        assert isinstance(trainer.generator, DistributedDataParallel)
        assert isinstance(trainer.local_critic, DistributedDataParallel)
        before = [p.detach().clone() for p in trainer.generator.parameters()]
        history = trainer.train(slices)
        assert history and np.isfinite(history[-1]["hole_l1"])
        assert any(not torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))
    finally:
        dist.destroy_process_group()
