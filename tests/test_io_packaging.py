"""Atomic writes and packaging (every method folder is shipped)."""
import tomllib
from pathlib import Path

import numpy as np
import pytest

from adbench_dbt.io import atomic_directory, atomic_path, save_npz, write_json

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text().strip().startswith("{") and '"x": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_atomic_directory_replaces_whole_or_nothing(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "w").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "w").write_text("2")
            raise RuntimeError("crash")
    assert (target / "w").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_npz_roundtrip(tmp_path):
    save_npz(tmp_path / "h.npz", a=np.arange(3, dtype=np.float32))
    assert np.load(tmp_path / "h.npz")["a"].tolist() == [0, 1, 2]


def test_every_method_folder_is_a_listed_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(config["tool"]["setuptools"]["packages"])
    for folder in (ROOT / "methods").iterdir():
        if (folder / "__init__.py").exists():
            assert f"adbench_dbt.methods.{folder.name}" in packages, folder
    for folder in (ROOT / "adbench_dbt").rglob("__init__.py"):
        name = ".".join(folder.parent.relative_to(ROOT).parts)
        assert name in packages, name
