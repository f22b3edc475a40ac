"""Shared fixtures: one tiny phantom (BCS-DBT layout) per test session, read through the real reader."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("adbench-cache")


@pytest.fixture(scope="session")
def tiny_dataset(cache_root):
    """The tiny phantom, generated, prepared and opened exactly as `adbench run --dataset phantom:tiny` does."""
    from adbench_dbt.datasets_resolve import open_dataset

    return open_dataset("phantom:tiny", cache=cache_root).dataset
