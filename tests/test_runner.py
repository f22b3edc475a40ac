"""The runner end to end on the tiny phantom: outputs, resume after a crash, determinism, torchrun sharding,
leaderboard merging and the CLI."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adbench_dbt import runner
from adbench_dbt.cli import app, main
from adbench_dbt.errors import EXIT_DATA
from adbench_dbt.leaderboard import collect_summaries, merge
from adbench_dbt.runner import RunSpec, run
from adbench_dbt.summary import RunSummary


def _spec(tmp_path, cache_root, **kw):
    base = dict(method="telea", profile="smoke", dataset="phantom:tiny", device="cpu", out=str(tmp_path / "runs"),
                cache=str(cache_root))
    return RunSpec(**{**base, **kw})


def _strip(summary):
    """Summary fields that must be identical between equivalent runs (not timings or paths)."""
    return summary.model_dump(include={"method", "profile", "fingerprint", "slices", "variants"})


def test_run_writes_every_artifact(tmp_path, cache_root, tiny_dataset):
    summary = run(_spec(tmp_path, cache_root))
    run_dir = Path(summary.run_dir)
    test = tiny_dataset.split("test")
    assert summary.slices == len(test) and summary.fingerprint == tiny_dataset.fingerprint
    for sl in test:
        assert (run_dir / "heatmaps" / f"{sl.id}.npz").exists()
        assert (run_dir / "overlays" / f"{sl.id}.png").exists()
        record = json.loads((run_dir / "slices" / f"{sl.id}.json").read_text())
        assert 0 <= record["metrics"]["mse"]["auroc"] <= 1 and record["windows"] > 0
        heat = np.load(run_dir / "heatmaps" / f"{sl.id}.npz")["mse"]
        assert heat.shape == sl.shape
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["fingerprint"] == tiny_dataset.fingerprint and meta["environment"]["torch"]
    assert summary.timing.ms_per_patch > 0
    assert not list(run_dir.rglob("*.tmp*")), "temporary files left behind"


def test_crash_then_resume_gives_the_same_result(tmp_path, cache_root, monkeypatch):
    reference = run(_spec(tmp_path / "clean", cache_root, method="random"))
    calls = {"n": 0}
    real = runner._score_one

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_score_one", crashing)
    spec = _spec(tmp_path / "crashy", cache_root, method="random")
    with pytest.raises(KeyboardInterrupt):
        run(spec)
    run_dir = Path(spec.out)
    done_before = len(list(run_dir.rglob("slices/*.json")))
    assert done_before == 2
    stale = next(run_dir.rglob("heatmaps")) / ".x.npz.abc.tmp.npz"  # what a SIGKILL mid-write leaves behind
    stale.write_bytes(b"partial")
    scored = []
    monkeypatch.setattr(runner, "_score_one", lambda m, sl, *a: scored.append(sl.id) or real(m, sl, *a))
    resumed = run(spec)
    assert len(scored) == resumed.slices - done_before
    assert not stale.exists()
    assert _strip(resumed) == _strip(reference)


def test_changed_config_gets_its_own_run_dir(tmp_path, cache_root):
    a = run(_spec(tmp_path, cache_root))
    b = run(_spec(tmp_path, cache_root, overrides={"assembly": "averaged"}))
    assert a.run_dir != b.run_dir


def test_leaderboard_merge_replaces_same_key(tmp_path, cache_root):
    run(_spec(tmp_path, cache_root))
    run(_spec(tmp_path, cache_root, method="random"))
    found, rejected = collect_summaries(tmp_path / "runs")
    assert rejected == []
    assert list(found) == ["phantom-tiny"]
    table = merge(tmp_path / "lb", "phantom-tiny", found["phantom-tiny"])
    again = merge(tmp_path / "lb", "phantom-tiny", found["phantom-tiny"])
    assert len(table) == len(again) == 2
    assert set(again["method"]) == {"telea", "random"}
    md = (tmp_path / "lb" / "phantom-tiny.md").read_text()
    assert "| telea | mse | smoke |" in md
    disk = pd.read_csv(tmp_path / "lb" / "phantom-tiny.csv", dtype={"fingerprint": str})
    assert disk["fingerprint"].nunique() == 1


def test_overridden_run_gets_its_own_leaderboard_row(tmp_path, cache_root):
    plain = run(_spec(tmp_path, cache_root))
    tuned = run(_spec(tmp_path, cache_root, overrides={"stride": 8}))
    table = merge(tmp_path / "lb", "phantom-tiny", [plain, tuned])
    assert sorted(table["profile"]) == ["smoke", "smoke stride=8"]


def test_random_floor_is_at_chance(tmp_path, cache_root):
    summary = run(_spec(tmp_path, cache_root, method="random"))
    assert abs(summary.variants["uniform"].auroc - 0.5) < 0.05


def test_cli_run_methods_leaderboard(tmp_path, cache_root):
    cli = CliRunner()
    out = tmp_path / "runs"
    res = cli.invoke(app, ["run", "--method", "telea", "--profile", "smoke", "--dataset", "phantom:tiny",
                           "--device", "cpu", "--out", str(out), "--cache", str(cache_root), "--no-overlays"])
    assert res.exit_code == 0, res.output
    assert "telea" in res.output
    res = cli.invoke(app, ["leaderboard", "--runs", str(out), "--out", str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "lb" / "phantom-tiny.csv").exists()
    res = cli.invoke(app, ["methods"])
    assert res.exit_code == 0 and "telea" in res.output


def test_missing_dataset_dir_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["run", "--method", "telea", "--dataset", str(tmp_path / "nowhere"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert done.value.code == EXIT_DATA and str(tmp_path / "nowhere") in err and "Traceback" not in err


@pytest.mark.slow
def test_torchrun_shards_slices_and_rank0_merges(tmp_path, cache_root):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    args = ["run", "--method", "random", "--profile", "smoke", "--dataset", "phantom:tiny", "--device", "cpu",
            "--cache", str(cache_root), "--no-overlays"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([torchrun, "--nproc_per_node=2", "--master_port=29517", "-m", "adbench_dbt.cli", *args,
                    "--out", str(tmp_path / "dist")], check=True, env=env, capture_output=True, timeout=300)
    single = run(RunSpec(method="random", profile="smoke", dataset="phantom:tiny", device="cpu",
                         out=str(tmp_path / "single"), cache=str(cache_root), overlays=False))
    dist_summary = RunSummary.read(next((tmp_path / "dist").rglob("summary.json")))
    assert _strip(dist_summary) == _strip(single)


def test_run_records_the_split_protocol_and_options_and_they_change_the_fingerprint(tmp_path, cache_root, capsys):
    base = ["run", "--method", "random", "--profile", "smoke", "--dataset", "phantom:tiny", "--device", "cpu",
            "--cache", str(cache_root), "--no-overlays"]
    runs = {}
    # swiecicki's 128 px edge exclusion would empty the tiny phantom's 128 x 96 test slices (an error, tested in
    # test_errors.py): keep every box
    for name, extra in (("picard", []), ("swiecicki", ["--protocol", "swiecicki", "--split-option",
                                                        "edge_exclusion_px=0"]),
                        ("seed", ["--split-option", "seed=3"])):
        with pytest.raises(SystemExit) as done:
            main([*base, "--out", str(tmp_path / name), *extra])
        assert done.value.code == 0, capsys.readouterr().err
        record = json.loads(next((tmp_path / name).rglob("run.json")).read_text())
        runs[name] = (record, RunSummary.read(next((tmp_path / name).rglob("summary.json"))))
    assert runs["picard"][0]["split_options"] == {}
    assert runs["swiecicki"][0]["split_options"] == {"protocol": "swiecicki", "edge_exclusion_px": 0}
    assert runs["seed"][0]["split_options"] == {"seed": 3}
    assert runs["seed"][1].split_options == {"seed": 3}
    fingerprints = {summary.fingerprint for _, summary in runs.values()}
    assert len(fingerprints) == 3
