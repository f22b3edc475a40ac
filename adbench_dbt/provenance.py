"""What every run records so that a number can be traced: code revision, package versions, hardware."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch


# What decides results: uncommitted changes here make a revision '+dirty'. Result tables (leaderboards/, docs/)
# do not: a sequence of benchmark commands rewrites them between its own rows.
CODE_PATHS = (":/adbench_dbt", ":/methods", ":/pyproject.toml")


def harness_revision(source: Path | None = None) -> str:
    """git revision of the harness source (suffixed '+dirty' with uncommitted code changes), or the package
    version; `source`: a directory of the checkout (default: this package's)."""
    source = source or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=source, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                               cwd=source, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"v{package_version('adbench-dbt')}"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy": package_version("numpy"),
        "adbench-dbt": package_version("adbench-dbt"),
        "harness_revision": harness_revision(),
    }


def stable_hash(data: Any, length: int = 10) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]
