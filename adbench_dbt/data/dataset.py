"""`BCSDBT`: the standardized BCS-DBT splits as lists of lazy `Slice` records backed by the slice cache."""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from rich.console import Console

from adbench_dbt.data.cache import DecodeJob, HeaderCache, SliceCache, default_workers, fill_cache
from adbench_dbt.data.errors import DataError
from adbench_dbt.data.slices import Slice
from adbench_dbt.data.split import build_manifest, load_definition, manifest_fingerprint
from adbench_dbt.io import write_json


@dataclass(frozen=True)
class CacheFill:
    """What one `BCSDBT.fill` call did (the numbers of `adbench data prepare`'s report)."""

    slices: int            # distinct slices of the requested splits
    already_cached: int
    decoded: int
    failed: list[dict[str, str]]  # {"volume", "file", "reason"} per volume that failed to decode
    seconds: float


class BCSDBT:
    """The BCS-DBT download at `root`, split by `split_config` (default datasets/bcs-dbt.yaml) and `options`.

    options: any field of the split definition (`protocol`, `slices_per_volume`, `volumes_per_patient`, `seed`,
    `edge_exclusion_px`, `test_benign`, `test_fallback`, ...). `strict` raises on the first unusable volume, box or
    label row instead of skipping it and listing it in `manifest["skipped"]`. Building the manifest reads tables and
    DICOM headers only. Pixels come from the slice cache: with `prepare=True` (default) `split(name)` decodes the
    slices of that split that are not cached yet (`workers` processes, a progress bar on `console`), exactly as
    `adbench data prepare` does; with `prepare=False` a split that is not cached is a `DataError`.
    """

    def __init__(self, root: str | Path, cache: str | Path | None = None, split_config: str | Path | None = None,
                 *, prepare: bool = True, workers: int | None = None, strict: bool = False,
                 console: Console | None = None, **options: Any):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: BCS-DBT root directory not found")
        self.cache = SliceCache(cache)
        self.prepare_missing = prepare
        self.workers = workers if workers is not None else default_workers()
        self.console = console or Console(stderr=True)
        self.definition = load_definition(split_config, **options)
        headers = HeaderCache(self.cache.directory)
        self.manifest: dict[str, Any] = build_manifest(self.root, self.definition, strict=strict,
                                                       header_reader=headers.read)
        headers.save()
        self.fingerprint: str = manifest_fingerprint(self.manifest)

    @property
    def split_names(self) -> list[str]:
        """The splits this download provides (see `unavailable` for the others and why)."""
        return list(self.manifest["splits"])

    @property
    def unavailable(self) -> dict[str, str]:
        """Split name -> why this download cannot provide it (the table files looked for)."""
        return self.manifest["unavailable"]

    @property
    def test_split(self) -> str:
        """'test', or 'test-fallback' when this download has no test boxes (recorded in the manifest)."""
        return self.manifest["test_split"]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return self.manifest["skipped"]

    @property
    def notices(self) -> list[dict[str, str]]:
        """Table defects that did not change the split (identical duplicate rows read as one)."""
        return self.manifest["notices"]

    def entries(self, name: str) -> list[dict[str, Any]]:
        """Manifest records of one split (id, volume, frame, boxes in left-aligned coordinates)."""
        if name in self.manifest["splits"]:
            return self.manifest["splits"][name]
        hint = ""
        if name == "test" and self.test_split != "test":
            hint = f"; this download has no test boxes, the documented fallback is {self.test_split!r}"
        elif name == "test" and "test-fallback" in self.unavailable:
            hint = f"; nor is its fallback 'test-fallback': {self.unavailable['test-fallback']}"
        if name in self.unavailable:
            raise DataError(f"{self.root}: split {name!r} is not available: {self.unavailable[name]}{hint}")
        raise DataError(f"unknown split {name!r}: available {', '.join(self.split_names) or 'none'}{hint}")

    def split(self, name: str) -> list[Slice]:
        """The slices of one split, images loaded lazily from the cache (decoding what is missing first when
        `prepare` is on)."""
        entries = self.entries(name)
        missing = self._missing(entries)
        if missing and not self.prepare_missing:
            if self.cache.is_empty():
                raise DataError(f"{self.cache.directory}: slice cache is empty; run "
                                f"`adbench data prepare --root {self.root} --cache {self.cache.directory}`")
            raise DataError(f"{self.cache.directory}: {len(missing)} of {len(entries)} slices of split {name!r} "
                            f"are not cached (first: {missing[0]['id']}); run `adbench data prepare` and see "
                            f"its report for volumes that failed to decode")
        if missing:
            failed = self.fill([name]).failed
            if failed:
                first = failed[0]
                raise DataError(f"{self.cache.directory}: {len(failed)} volume(s) of split {name!r} failed to "
                                f"decode (first: {first['volume']}: {first['reason']}); fix the file or list the "
                                f"volume in the split option exclude_volumes")
        volumes = self.manifest["volumes"]
        return [self._slice(entry, volumes[entry["volume"]]) for entry in entries]

    def fill(self, names: Iterable[str]) -> CacheFill:
        """Decode every not yet cached slice of the splits `names` (each volume opened once for all its frames)."""
        started = time.perf_counter()
        volumes = self.manifest["volumes"]
        unique = {(e["volume"], e["frame"]) for name in names for e in self.entries(name)}
        todo: dict[str, set[int]] = defaultdict(set)
        for volume, frame in unique:
            if not self.cache.has(volume, volumes[volume], frame):
                todo[volume].add(frame)
        jobs: list[DecodeJob] = [(volume, volumes[volume], sorted(frames)) for volume, frames in sorted(todo.items())]
        decoded, failed = fill_cache(jobs, self.root, self.cache, self.workers, self.console) if jobs else (0, [])
        manifest_copy = self.cache.directory / "manifests" / f"{self.fingerprint}.json"
        if not manifest_copy.is_file():  # the cache documents which split its slices were decoded for
            write_json(manifest_copy, self.manifest)
        return CacheFill(slices=len(unique), already_cached=len(unique) - sum(len(f) for f in todo.values()),
                         decoded=decoded, failed=failed, seconds=time.perf_counter() - started)

    def _missing(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        volumes = self.manifest["volumes"]
        return [e for e in entries if not self.cache.has(e["volume"], volumes[e["volume"]], e["frame"])]

    def _slice(self, entry: dict[str, Any], volume: dict[str, Any]) -> Slice:
        loader, region_loader = self.cache.loaders(entry["volume"], volume, entry["frame"])
        return Slice(id=entry["id"], shape=tuple(volume["shape"]), boxes=tuple(tuple(b) for b in entry["boxes"]),
                     patient=volume["patient"], study=volume["study"], view=volume["view"], frame=entry["frame"],
                     loader=loader, region_loader=region_loader)

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={len(entries)}" for name, entries in self.manifest["splits"].items())
        return f"BCSDBT(root={str(self.root)!r}, {counts}, fingerprint={self.fingerprint[:12]})"
