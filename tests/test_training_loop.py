"""The shared training pieces: RNG capture, progress bar, train-log.jsonl, and the checkpointed plain loop."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from adbench_dbt.errors import CheckpointError
from adbench_dbt.training import (CHECKPOINT_FILE, LOG_FILE, TrainingConfig, TrainingProgress, rng_state, run_steps,
                                  seeded_generators, set_rng_state)


def test_rng_state_round_trip_replays_every_stream() -> None:
    rng, gen = seeded_generators(3, torch.device("cpu"))
    rng.random(5), torch.rand(2, generator=gen), torch.rand(2)  # not at their seeds any more
    state = rng_state(rng, gen)

    def draw() -> list:
        return [rng.integers(1 << 30, size=4).tolist(), torch.rand(4, generator=gen).tolist(), torch.rand(4).tolist()]

    first = draw()
    set_rng_state(state, rng, gen)
    assert draw() == first


class Toy:
    """A loop that draws from all three streams: numpy batches, generator noise, dropout on the global RNG."""

    def __init__(self, config: TrainingConfig, seed: int = 0) -> None:
        self.config = config
        self.rng, self.gen = seeded_generators(seed, torch.device("cpu"))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=7)
        self.calls = 0

    def loss(self, step: int) -> torch.Tensor:
        self.calls += 1
        x = torch.from_numpy(self.rng.standard_normal((6, 4)).astype(np.float32))
        x = x + 0.1 * torch.randn(x.shape, generator=self.gen)
        return (self.net(x) - x.sum(1, keepdim=True)).pow(2).mean()

    def fit(self, work_dir: Path | None, steps: int = 7) -> list[float]:
        return run_steps(self.loss, self.optimizer, steps, "toy", config=self.config, work_dir=work_dir,
                         modules={"net": self.net}, rng=self.rng, gen=self.gen, scheduler=self.scheduler)


CONFIG = TrainingConfig(checkpoint_every=3, log_every=2, progress=False)


def _interrupt_at(toy: Toy, call: int) -> None:
    loss = toy.loss

    def interrupted(step: int) -> torch.Tensor:
        if toy.calls + 1 == call:
            toy.rng.random(2)  # the killed step had drawn its batch already
            raise KeyboardInterrupt
        return loss(step)

    toy.loss = interrupted


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resumed_loop_ends_bitwise_where_the_uninterrupted_one_ends(tmp_path, capsys) -> None:
    reference = Toy(CONFIG)
    losses = reference.fit(None)

    killed = Toy(CONFIG)
    _interrupt_at(killed, 5)  # steps 1-4 done, checkpoint at 3
    with pytest.raises(KeyboardInterrupt):
        killed.fit(tmp_path)
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["step"] == 3
    torch.manual_seed(99)  # a new process: the global RNG is wherever it is
    resumed = Toy(CONFIG)
    assert resumed.fit(tmp_path) == losses
    assert resumed.calls == 4  # steps 4..7, not the three the checkpoint holds
    assert "toy: resuming from step 3/7" in capsys.readouterr().err
    for key, value in resumed.net.state_dict().items():
        assert torch.equal(value, reference.net.state_dict()[key]), key
    assert resumed.scheduler.state_dict() == reference.scheduler.state_dict()
    momentum = zip(resumed.optimizer.state_dict()["state"].values(), reference.optimizer.state_dict()["state"].values())
    assert all(torch.equal(a["momentum_buffer"], b["momentum_buffer"]) for a, b in momentum)
    logged = _log(tmp_path / LOG_FILE)
    assert [line["step"] for line in logged] == [2, 4, 6, 7]  # steps 4-5 the killed run logged are not doubled
    means = [np.mean(losses[0:2]), np.mean(losses[2:4]), np.mean(losses[4:6]), losses[6]]
    np.testing.assert_allclose([line["losses"]["loss"] for line in logged], means, rtol=1e-6)
    assert all(line["seconds"] >= 0 for line in logged)


def test_finished_checkpoint_is_reused_without_training(tmp_path) -> None:
    first = Toy(CONFIG)
    losses = first.fit(tmp_path)
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["step"] == 7  # the end is always saved
    again = Toy(CONFIG)
    assert again.fit(tmp_path) == losses and again.calls == 0
    assert all(torch.equal(a, b) for a, b in zip(again.net.parameters(), first.net.parameters()))
    assert again.rng.random() == first.rng.random()  # what runs after training draws the same numbers


def test_kill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch) -> None:
    reference = Toy(CONFIG)
    reference.fit(None)
    saves = [0]
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        saves[0] += 1
        if saves[0] == 2:  # the step-6 checkpoint: part of it is on disk when the process dies
            Path(f).write_bytes(b"PK\x03\x04 torn")
            raise KeyboardInterrupt
        return real_save(obj, f, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", dying_save)
        with pytest.raises(KeyboardInterrupt):
            Toy(CONFIG).fit(tmp_path)
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["step"] == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
    resumed = Toy(CONFIG)
    resumed.fit(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(resumed.net.parameters(), reference.net.parameters()))


def test_without_work_dir_nothing_is_written(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Toy(CONFIG).fit(None)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_of_other_settings_or_length_is_refused(tmp_path) -> None:
    Toy(CONFIG).fit(tmp_path, steps=3)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: written by a fit of 3 steps, this one has 7"):
        Toy(CONFIG).fit(tmp_path, steps=7)

    class Other(TrainingConfig):
        lr: float = 0.1

    with pytest.raises(CheckpointError, match="lr None -> 0.1"):
        Toy(Other(checkpoint_every=3)).fit(tmp_path, steps=3)
    # cadence and display may change between the killed run and the resumed one
    assert len(Toy(TrainingConfig(checkpoint_every=1, log_every=5)).fit(tmp_path, steps=3)) == 3


def test_progress_bar_shows_step_losses_speed_and_eta() -> None:
    out = Console(file=io.StringIO(), width=200)  # not a terminal: the final state is printed once
    with TrainingProgress("demo", 4, TrainingConfig(log_every=2), None, out=out) as progress:
        for value in (1.0, 3.0, 5.0, 7.0):
            progress.update({"loss": torch.tensor(value), "aux": value / 10})
    text = out.file.getvalue()
    assert "fit demo" in text and "4/4" in text and "steps/s" in text
    assert "loss 6" in text and "aux 0.6" in text  # mean of the last logging interval
    assert "0:00:00" in text  # elapsed and remaining time


def test_log_restart_drops_lines_past_the_checkpoint_and_torn_lines(tmp_path) -> None:
    config = TrainingConfig(log_every=1, progress=False)
    with TrainingProgress("demo", 5, config, tmp_path) as progress:
        for value in range(4):
            progress.update({"loss": float(value)})
        state = progress.state_dict() | {"step": 2, "seconds": 10.0}
    with open(tmp_path / LOG_FILE, "a") as fh:
        fh.write('{"step": 5, "los')  # the kill tore the last line
    with TrainingProgress("demo", 5, config, tmp_path, state) as progress:
        progress.update({"loss": 7.0})
    logged = _log(tmp_path / LOG_FILE)
    assert [(line["step"], line["losses"]["loss"]) for line in logged] == [(1, 0.0), (2, 1.0), (3, 7.0)]
    assert logged[-1]["seconds"] >= 10.0  # training time counts across resumed pieces
