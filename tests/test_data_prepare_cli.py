"""`adbench data prepare`: errors propagate as DataError (the top-level CLI prints them), --strict, --split-option,
the exit code for volumes that failed to decode, and the printed list of skips."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from adbench_dbt.config import ConfigError
from adbench_dbt.data import DataError
from adbench_dbt.data.cli import data_app
from adbench_dbt.data.prepare import REPORT_NAME
from adbench_dbt.errors import EXIT_PARTIAL

from data_helpers import COLS, BoxRow, default_boxes, default_volumes, write_download


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Rich folds table cells at the console width: one record per line keeps the assertions simple."""
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture
def download(tmp_path):
    return write_download(tmp_path / "root")


def invoke(*args: str):
    return CliRunner().invoke(data_app, ["prepare", *args])


def test_cli_prepare(download, tmp_path):
    result = invoke("--root", str(download), "--cache", str(tmp_path / "c"), "--workers", "2")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "c" / REPORT_NAME).read_text())["decoded"] == 7
    missing = invoke("--root", str(tmp_path / "nowhere"), "--cache", str(tmp_path / "c"))
    assert isinstance(missing.exception, DataError)             # not caught here: `adbench` prints it, exit 3
    assert "BCS-DBT root directory not found" in str(missing.exception)


def test_split_options_change_the_fingerprint_and_unknown_keys_are_named(download, tmp_path):
    cache = str(tmp_path / "c")
    default = invoke("--root", str(download), "--cache", cache, "--workers", "1")
    seeded = invoke("--root", str(download), "--cache", cache, "--workers", "1", "--split-option", "seed=1",
                    "--split-option", "volumes_per_patient=null", "--protocol", "swiecicki")
    assert default.exit_code == seeded.exit_code == 0, seeded.output
    report = json.loads((tmp_path / "c" / REPORT_NAME).read_text())
    manifest = json.loads((tmp_path / "c" / "manifests" / f"{report['fingerprint']}.json").read_text())
    assert manifest["options"]["seed"] == 1 and manifest["options"]["volumes_per_patient"] is None
    assert manifest["options"]["protocol"] == "swiecicki" and report["fingerprint"] not in default.output
    unknown = invoke("--root", str(download), "--cache", cache, "--split-option", "slices=3")
    assert isinstance(unknown.exception, DataError)
    assert str(unknown.exception).startswith("unknown split option 'slices'; expected one of name, protocol, seed")
    malformed = invoke("--root", str(download), "--cache", cache, "--split-option", "seed")
    assert isinstance(malformed.exception, ConfigError) and "expected key=value" in str(malformed.exception)


def test_skips_are_printed_as_a_table_and_strict_turns_them_into_an_error(tmp_path):
    bad = BoxRow("test", "DBT-P00020", "DBT-S00020", "lcc", 4, COLS - 3, 10, 8, 8)
    root = write_download(tmp_path / "root", default_volumes(), default_boxes() + [bad])
    lenient = invoke("--root", str(root), "--cache", str(tmp_path / "c"), "--workers", "1")
    assert lenient.exit_code == 0, lenient.output
    assert "Skipped, failed and collapsed records" in lenient.output
    line = next(line for line in lenient.output.splitlines() if "DBT-P00020_DBT-S00020_lcc" in line)
    assert "skipped" in line and "BCS-DBT-boxes-test-v2-PHASE-2-Jan-2024.csv" in line and "row 7" in line
    assert "1 skipped" in lenient.output
    strict = invoke("--root", str(root), "--cache", str(tmp_path / "c"), "--strict")
    assert isinstance(strict.exception, DataError) and "lies outside the 64 x 48 image" in str(strict.exception)


def test_volumes_that_fail_to_decode_exit_partial(download, tmp_path):
    volume = next(v for v in default_volumes() if v.split == "test" and v.view == "lcc")
    path = next(download.rglob(f"{volume.patient}/**/1-1.dcm"))
    path.write_bytes(path.read_bytes()[:1000])
    result = invoke("--root", str(download), "--cache", str(tmp_path / "c"), "--workers", "1")
    assert result.exit_code == EXIT_PARTIAL, result.output
    line = next(line for line in result.output.splitlines() if volume.key in line)
    assert "failed" in line
