"""The error policy end to end: every expected failure is one line naming the culprit, a documented exit code, no
traceback, nothing half-written, and no training before the inputs are known to be good (issue 12)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adbench_dbt import errors, runner
from adbench_dbt.cli import main
from adbench_dbt.registry import create_method, get_method


def invoke(capsys, *args: str) -> tuple[int, str]:
    """Run the CLI in-process as the console script does; (exit code, everything printed)."""
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return done.value.code, captured.out + captured.err


def error_line(output: str) -> str:
    """The one `error:` line; fails when there is none, several, or a traceback."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


def run_args(tmp_path: Path, cache_root: Path, *extra: str, method: str = "telea") -> list[str]:
    return ["run", "--method", method, "--profile", "smoke", "--dataset", "phantom:tiny", "--device", "cpu",
            "--cache", str(cache_root), "--out", str(tmp_path / "runs"), "--no-overlays", *extra]


def no_temporaries(root: Path) -> None:
    assert not [p for p in root.rglob(".*tmp*")], "half-written temporaries left behind"


@pytest.fixture
def fit_spy(monkeypatch):
    """Records every fit(): a failure found before training leaves it empty."""
    calls: list[str] = []
    cls = get_method("picard")
    real = cls.fit
    monkeypatch.setattr(cls, "fit", lambda self, *a, **k: calls.append(self.name) or real(self, *a, **k))
    return calls


def test_missing_cuda_is_one_line(capsys, tmp_path, cache_root):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = run_args(tmp_path, cache_root)
    args[args.index("--device") + 1] = "cuda"
    code, out = invoke(capsys, *args)
    assert code == errors.EXIT_DEVICE
    assert "--device cuda" in error_line(out) and "no CUDA device" in error_line(out)


def test_unknown_split_fails_before_training(capsys, tmp_path, cache_root, tiny_dataset, fit_spy):
    code, out = invoke(capsys, *run_args(tmp_path, cache_root, "--split", "holdout", method="picard"))
    assert code == errors.EXIT_DATA
    line = error_line(out)
    assert "'holdout'" in line and "test" in line
    assert fit_spy == [], "trained before finding that the split does not exist"


def test_empty_split_fails_before_training(capsys, tmp_path, cache_root, tiny_dataset, fit_spy):
    # every box closer than 10,000 px to the border is dropped: the test split exists but has no slice
    code, out = invoke(capsys, *run_args(tmp_path, cache_root, "--split-option", "edge_exclusion_px=10000",
                                         method="picard"))
    assert code == errors.EXIT_RUN
    assert "has no slices to score" in error_line(out) and "'test'" in error_line(out)
    assert fit_spy == []


def test_bad_override_names_the_key(capsys, tmp_path, cache_root):
    code, out = invoke(capsys, *run_args(tmp_path, cache_root, "--set", "stride=wide"))
    assert code == errors.EXIT_USAGE and "stride" in error_line(out)


class _Hostile:
    """Unpickling this runs code: exactly what weights_only=True must refuse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_hostile_pickle_checkpoint_is_refused_and_never_executed(capsys, tmp_path, cache_root, tiny_dataset):
    marker = tmp_path / "executed"
    ckpt = create_method("telea", "smoke").save(tmp_path / "ckpt")
    torch.save({"payload": _Hostile(marker)}, ckpt / "state.pt")
    code, out = invoke(capsys, *run_args(tmp_path, cache_root, "--checkpoint", str(ckpt)))
    assert code == errors.EXIT_CHECKPOINT
    line = error_line(out)
    assert str(ckpt / "state.pt") in line and "refused" in line
    assert "weights_only=False" not in out and "weights_only" not in line
    assert not marker.exists(), "the pickle's code ran"
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("summary.json"))


def test_checkpoint_of_the_wrong_shapes_names_the_file(capsys, tmp_path, cache_root, tiny_dataset, fit_spy):
    ckpt = create_method("picard", "smoke", {"cnum": 8}).save(tmp_path / "wide")
    code, out = invoke(capsys, *run_args(tmp_path, cache_root, "--checkpoint", str(ckpt), method="picard"))
    assert code == errors.EXIT_CHECKPOINT
    line = error_line(out)
    assert str(ckpt / "state.pt") in line and "does not fit" in line
    assert fit_spy == []


def test_checkpoint_that_is_not_a_torch_file(capsys, tmp_path, cache_root, tiny_dataset):
    ckpt = create_method("picard", "smoke").save(tmp_path / "ckpt")
    (ckpt / "state.pt").write_bytes(b"not a zip, not a pickle")
    code, out = invoke(capsys, *run_args(tmp_path, cache_root, "--checkpoint", str(ckpt), method="picard"))
    assert code == errors.EXIT_CHECKPOINT and str(ckpt / "state.pt") in error_line(out)


def test_output_path_that_cannot_be_a_directory(capsys, tmp_path, cache_root, tiny_dataset, fit_spy):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = run_args(tmp_path, cache_root, method="picard")
    args[args.index("--out") + 1] = str(blocker / "runs")
    code, out = invoke(capsys, *args)
    assert code == errors.EXIT_FILESYSTEM
    assert str(blocker) in error_line(out)
    assert fit_spy == [], "trained before finding that the output is not writable"


def test_full_disk_names_the_file_and_leaves_nothing_half_written(capsys, tmp_path, cache_root, tiny_dataset,
                                                                    monkeypatch):
    def full(*args, **kwargs):
        raise OSError("12288 requested and 12160 written")

    for name in tiny_dataset.split_names:
        tiny_dataset.split(name)  # cached before the disk "fills", so the first write to fail is a heatmap
    monkeypatch.setattr(np.lib.format, "write_array", full)  # what np.save/np.savez call to write the data
    code, out = invoke(capsys, *run_args(tmp_path, cache_root))
    assert code == errors.EXIT_FILESYSTEM
    line = error_line(out)
    assert "heatmaps" in line and ".npz" in line and "12160 written" in line
    no_temporaries(tmp_path / "runs")


def test_a_method_bug_is_one_line_with_the_way_to_the_traceback(capsys, tmp_path, cache_root, tiny_dataset,
                                                                monkeypatch):
    cls = get_method("telea")
    monkeypatch.setattr(cls, "score_windows", lambda self, w: 1 / 0)
    code, out = invoke(capsys, *run_args(tmp_path, cache_root))
    assert code == errors.EXIT_RUN
    line = error_line(out)
    assert "'telea'" in line and "ZeroDivisionError" in line
    code, out = invoke(capsys, *run_args(tmp_path, cache_root), "--debug")
    assert code == errors.EXIT_RUN and "Traceback" in out and "ZeroDivisionError" in out


def test_replaced_checkpoint_contents_never_reuse_old_results(tmp_path, cache_root, tiny_dataset):
    """The bug: the run directory was keyed on the --checkpoint path, so new weights at the same path reported
    the old model's metrics."""
    ckpt = tmp_path / "ckpt"
    spec = runner.RunSpec(method="picard", profile="smoke", dataset="phantom:tiny", device="cpu",
                          out=str(tmp_path / "runs"), cache=str(cache_root), overlays=False, checkpoint=str(ckpt))
    create_method("picard", "smoke").save(ckpt)
    first = runner.run(spec)
    create_method("picard", "smoke", {"seed": 7}).save(ckpt)  # other weights, same path
    second = runner.run(spec)
    assert first.checkpoint_sha256 != second.checkpoint_sha256
    assert first.run_dir != second.run_dir
    assert first.variants != second.variants
    record = json.loads((Path(second.run_dir) / "run.json").read_text())
    assert record["checkpoint_sha256"] == second.checkpoint_sha256
    again = runner.run(spec)  # same contents: the finished run is reused
    assert again.run_dir == second.run_dir and again.variants == second.variants


def test_console_script_exit_code_without_traceback(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "adbench_dbt.cli", "run", "--method", "nope"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == errors.EXIT_USAGE
    assert "Traceback" not in done.stderr and "unknown method 'nope'" in done.stderr


def test_replaced_file_named_in_the_config_never_reuses_old_results(tmp_path, cache_root, tiny_dataset):
    """A file a config field points at (here CutPaste's pretrained encoder) is part of the run's identity by content,
    like --checkpoint: new weights at the same path start a new run."""
    import timm

    weights = tmp_path / "resnet18.pt"
    spec = runner.RunSpec(method="cutpaste", profile="smoke", dataset="phantom:tiny", device="cpu",
                          out=str(tmp_path / "runs"), cache=str(cache_root), overlays=False,
                          overrides={"pretrained_path": str(weights), "steps": 2})
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), weights)
    first = runner.run(spec)
    torch.manual_seed(1)
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), weights)
    second = runner.run(spec)
    assert first.run_dir != second.run_dir
    record = json.loads((Path(second.run_dir) / "run.json").read_text())
    assert set(record["referenced_files"]) == {"pretrained_path"}
    weights.unlink()
    with pytest.raises(errors.ConfigError, match="pretrained_path"):
        runner.run(spec)


def test_a_method_whose_scores_changed_never_reuses_runs_of_the_older_code(tmp_path, cache_root, tiny_dataset,
                                                                            monkeypatch):
    """PICARD's dropout masks changed from per-batch to per-window draws: a run directory of the older code holds
    heatmaps the current code would not produce, so `scores_version` is part of the run's identity."""
    spec = runner.RunSpec(method="random", profile="smoke", dataset="phantom:tiny", device="cpu",
                          out=str(tmp_path / "runs"), cache=str(cache_root), overlays=False)
    old = runner.run(spec)
    assert "scores_version" not in json.loads((Path(old.run_dir) / "run.json").read_text())  # old keys stay valid
    monkeypatch.setattr(get_method("random"), "scores_version", 2)
    new = runner.run(spec)
    assert new.run_dir != old.run_dir
    assert json.loads((Path(new.run_dir) / "run.json").read_text())["scores_version"] == 2
    assert get_method("picard").scores_version == get_method("hfpic").scores_version == 2
