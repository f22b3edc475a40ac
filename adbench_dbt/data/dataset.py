"""`BCSDBT`: the standardized BCS-DBT splits as lists of lazy `Slice` records backed by the slice cache."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from adbench_dbt.data.cache import HeaderCache, SliceCache
from adbench_dbt.data.errors import DataError
from adbench_dbt.data.slices import Slice
from adbench_dbt.data.split import build_manifest, load_definition, manifest_fingerprint


class BCSDBT:
    """The BCS-DBT download at `root`, split by `split_config` (default datasets/bcs-dbt.yaml) and `options`.

    options: any field of the split definition (`protocol`, `slices_per_volume`, `seed`, `edge_exclusion_px`,
    `test_benign`, `test_fallback`, ...) plus `strict` (raise on the first unusable volume instead of skipping
    it and listing it in `manifest["skipped"]`). Building the manifest reads tables and DICOM headers only;
    pixels come from the cache that `adbench data prepare` fills.
    """

    def __init__(self, root: str | Path, cache: str | Path | None = None, split_config: str | Path | None = None,
                 **options: Any):
        strict = bool(options.pop("strict", False))
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: BCS-DBT root directory not found")
        self.cache = SliceCache(cache)
        self.definition = load_definition(split_config, **options)
        headers = HeaderCache(self.cache.directory)
        self.manifest: dict[str, Any] = build_manifest(self.root, self.definition, strict=strict,
                                                       header_reader=headers.read)
        headers.save()
        self.fingerprint: str = manifest_fingerprint(self.manifest)

    @property
    def split_names(self) -> list[str]:
        return list(self.manifest["splits"])

    @property
    def test_split(self) -> str:
        """'test', or 'test-fallback' when this download has no test boxes (recorded in the manifest)."""
        return self.manifest["test_split"]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return self.manifest["skipped"]

    def entries(self, name: str) -> list[dict[str, Any]]:
        """Manifest records of one split (id, volume, frame, boxes in left-aligned coordinates)."""
        if name not in self.manifest["splits"]:
            hint = (f"; this download has no test boxes, the documented fallback is {self.test_split!r}"
                    if name == "test" else "")
            raise DataError(f"unknown split {name!r}: available {', '.join(self.split_names)}{hint}")
        return self.manifest["splits"][name]

    def split(self, name: str) -> list[Slice]:
        """The slices of one split, images loaded lazily from the cache (which must have been prepared)."""
        entries = self.entries(name)
        if entries and self.cache.is_empty():
            raise DataError(f"{self.cache.directory}: slice cache is empty; run "
                            f"`adbench data prepare --root {self.root} --cache {self.cache.directory}`")
        volumes = self.manifest["volumes"]
        missing = [e["id"] for e in entries if not self.cache.has(e["volume"], volumes[e["volume"]], e["frame"])]
        if missing:
            raise DataError(f"{self.cache.directory}: {len(missing)} of {len(entries)} slices of split {name!r} "
                            f"are not cached (first: {missing[0]}); run `adbench data prepare` and see its "
                            f"report for volumes that failed to decode")
        return [self._slice(entry, volumes[entry["volume"]]) for entry in entries]

    def _slice(self, entry: dict[str, Any], volume: dict[str, Any]) -> Slice:
        loader, region_loader = self.cache.loaders(entry["volume"], volume, entry["frame"])
        return Slice(id=entry["id"], shape=tuple(volume["shape"]), boxes=tuple(tuple(b) for b in entry["boxes"]),
                     patient=volume["patient"], study=volume["study"], view=volume["view"], frame=entry["frame"],
                     loader=loader, region_loader=region_loader)

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={len(entries)}" for name, entries in self.manifest["splits"].items())
        return f"BCSDBT(root={str(self.root)!r}, {counts}, fingerprint={self.fingerprint[:12]})"
