"""Shared fixtures: one tiny phantom (BCS-DBT layout) per test session, read through the real reader."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adbench-cache")


@pytest.fixture(scope="session")
def tiny_root(cache_root) -> Path:
    from adbench_dbt.data.phantom import ensure_phantom

    return ensure_phantom(preset="tiny", seed=0, root=cache_root)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_root, cache_root):
    from adbench_dbt.data.dataset import BCSDBT

    return BCSDBT(tiny_root, cache=cache_root)
