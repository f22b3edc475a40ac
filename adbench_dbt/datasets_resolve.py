"""Turn `--dataset` into a dataset: `phantom` (the embedded demo phantom, generated on first use), `phantom:PRESET`,
or the path of a BCS-DBT download. Both go through the same BCS-DBT reader."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adbench_dbt.data.errors import DataError


@dataclass(frozen=True)
class OpenedDataset:
    tag: str          # leaderboard file name: phantom-demo, phantom-tiny, bcs-dbt
    root: Path
    dataset: Any      # adbench_dbt.data.dataset.BCSDBT
    fingerprint: str


def open_dataset(spec: str, cache: str | Path | None = None, split_options: dict[str, Any] | None = None,
                 workers: int | None = None) -> OpenedDataset:
    """Resolve `spec` and build its manifest once; each split is decoded into the cache when first asked for.

    split_options: `protocol` and any split-definition field (they enter the manifest, hence the fingerprint).
    """
    from adbench_dbt.data.dataset import BCSDBT

    if spec == "phantom" or spec.startswith("phantom:"):
        from adbench_dbt.data.phantom import ensure_phantom

        preset = spec.partition(":")[2] or "demo"
        root = ensure_phantom(preset=preset, root=cache)
        tag = f"phantom-{preset}"
    else:
        root = Path(spec).expanduser()
        if not root.is_dir():
            raise DataError(f"--dataset {spec}: not a directory (expected a BCS-DBT download root or "
                            f"'phantom' / 'phantom:tiny|demo|full')")
        tag = "bcs-dbt"
    dataset = BCSDBT(root, cache=cache, workers=workers, **(split_options or {}))
    return OpenedDataset(tag=tag, root=root, dataset=dataset, fingerprint=dataset.fingerprint)
