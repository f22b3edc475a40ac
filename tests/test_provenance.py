"""The harness revision recorded with every result: '+dirty' marks uncommitted code, not rewritten result tables."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from adbench_dbt.provenance import harness_revision


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0, reason="no git")
def test_rewritten_result_tables_do_not_make_the_revision_dirty_but_code_changes_do(tmp_path):
    for path in ("adbench_dbt/core.py", "methods/m/model.py", "leaderboards/bench.csv", "docs/fidelity.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("v1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    package = tmp_path / "adbench_dbt"
    clean = harness_revision(package)
    assert len(clean) == 12 and not clean.endswith("+dirty")
    (tmp_path / "leaderboards/bench.csv").write_text("v2\n")
    (tmp_path / "docs/fidelity.md").write_text("v2\n")
    assert harness_revision(package) == clean  # a benchmark sequence rewrites its tables between rows
    (tmp_path / "methods/m/model.py").write_text("v2\n")
    assert harness_revision(package) == clean + "+dirty"
