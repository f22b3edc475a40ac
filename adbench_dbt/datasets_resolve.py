"""Turn `--dataset` into a dataset: `phantom` (the embedded demo phantom, generated on first use), `phantom:PRESET`,
or the path of a BCS-DBT download. Both go through the same BCS-DBT reader."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class OpenedDataset:
    tag: str          # leaderboard file name: phantom-demo, phantom-tiny, bcs-dbt
    root: Path
    dataset: Any      # adbench_dbt.data.dataset.BCSDBT
    fingerprint: str


def open_dataset(spec: str, cache: str | Path | None = None) -> OpenedDataset:
    """Resolve `spec`, make sure every split slice is decoded into the cache (no work when it already is), open it."""
    from adbench_dbt.data.dataset import BCSDBT
    from adbench_dbt.data.prepare import prepare

    if spec == "phantom" or spec.startswith("phantom:"):
        from adbench_dbt.data.phantom import ensure_phantom

        preset = spec.partition(":")[2] or "demo"
        root = ensure_phantom(preset=preset, root=cache)
        tag = f"phantom-{preset}"
    else:
        root = Path(spec).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"--dataset {spec}: not a directory (expected a BCS-DBT download root or "
                                    f"'phantom' / 'phantom:tiny|demo|full')")
        tag = "bcs-dbt"
    prepare(root, cache, workers=min(4, os.cpu_count() or 1))
    dataset = BCSDBT(root, cache=cache)
    return OpenedDataset(tag=tag, root=root, dataset=dataset, fingerprint=dataset.fingerprint)
