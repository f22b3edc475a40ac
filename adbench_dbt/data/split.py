"""The standardized BCS-DBT split: which slices form train / validation / test, written as a canonical manifest.

Rules (datasets/README.md): train and validation = k seeded random slices from each *normal* volume of their
split (with `volumes_per_patient`, only that many seeded volumes per patient); test = every slice of the test
split carrying a cancer box (boxes of one slice merged into one record); `test-benign` and `test-fallback` (train
cancer slices, the documented fallback when test boxes are withheld) are options. A split whose tables the
download lacks is listed as unavailable, with the file names looked for. Everything is decided from tables and
DICOM headers, no pixel decoding, so the manifest and its fingerprint are cheap and identical on every machine.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adbench_dbt.data.cache import READER_VERSION
from adbench_dbt.data.dicom import VolumeHeader, read_header
from adbench_dbt.data.errors import DataError
from adbench_dbt.data.layout import SPLITS
from adbench_dbt.data.orientation import mirror_boxes
from adbench_dbt.data.slices import Box
from adbench_dbt.data.tables import (Key, Record, SplitTables, load_split_tables, looked_for, normal_keys,
                                     resolve_volume_path, view_problem, volume_key)

MANIFEST_FORMAT = 2  # 2: `unavailable` splits, `notices`, per-box skips, `volumes_per_patient`
# The top-level datasets/ folder installs as adbench_dbt.datasets (pyproject package-dir).
DEFAULT_DEFINITION = Path(str(files("adbench_dbt.datasets") / "bcs-dbt.yaml"))
_PATIENT_STREAM = 1  # keeps the per-patient volume choice independent of the per-volume frame draw


class SplitDefinition(BaseModel):
    """The split rules as data (datasets/bcs-dbt.yaml merged with the chosen protocol and overrides)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "bcs-dbt"
    protocol: str = "picard"
    seed: int = 0
    slices_per_volume: int = Field(1, ge=1)
    volumes_per_patient: int | None = Field(None, ge=1)
    eligible_frames: tuple[float, float] = (0.25, 0.75)
    edge_exclusion_px: int = Field(0, ge=0)
    train_volumes: int | None = Field(None, ge=1)
    test_benign: bool = False
    test_fallback: Literal["auto", "always"] = "auto"
    normal_test_slices: int = Field(0, ge=0)  # also score N evenly spaced slices of each normal test volume
    exclude_volumes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _eligible_range(self) -> "SplitDefinition":
        low, high = self.eligible_frames
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"eligible_frames must satisfy 0 <= low < high <= 1, got {self.eligible_frames}")
        return self


SPLIT_OPTIONS = tuple(SplitDefinition.model_fields)


def load_definition(path: str | Path | None = None, **options: Any) -> SplitDefinition:
    """Read the split definition file, apply its protocol (or `options['protocol']`), then `options`."""
    path = Path(path) if path is not None else DEFAULT_DEFINITION
    if not path.is_file():
        raise DataError(f"{path}: split definition not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping of split settings")
    protocols = data.pop("protocols", {}) or {}
    if not isinstance(protocols, dict) or not all(isinstance(v, (dict, type(None))) for v in protocols.values()):
        raise DataError(f"{path}: 'protocols' must map each protocol name to a mapping of split settings")
    _reject_unknown(data, f"{path}: unknown key")
    for name, settings in protocols.items():
        _reject_unknown(settings or {}, f"{path}: protocol {name!r}: unknown key")
    _reject_unknown(options, "unknown split option")
    protocol = options.pop("protocol", data.get("protocol", "picard"))
    if protocols and protocol not in protocols:
        raise DataError(f"{path}: unknown protocol {protocol!r}; defined: {', '.join(sorted(protocols))}")
    merged = {**data, **(protocols.get(protocol) or {}), **options, "protocol": protocol}
    try:
        return SplitDefinition(**merged)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'definition'}: {error['msg']} "
                             f"(got {error.get('input')!r})" for error in exc.errors())
        raise DataError(f"{path}: invalid split definition: {problems}") from exc


def _reject_unknown(settings: dict[str, Any], what: str) -> None:
    unknown = sorted(set(settings) - set(SPLIT_OPTIONS))
    if unknown:
        raise DataError(f"{what} {unknown[0]!r}; expected one of {', '.join(SPLIT_OPTIONS)}")


@dataclass
class _Volume:
    """One volume some split needs, with its resolved file and header (or the reason it is unusable)."""

    source_split: str
    key: Key
    descriptive: str
    classic: str
    source: str = ""
    header: VolumeHeader | None = None
    problem: str = ""


@dataclass
class _Builder:
    root: Path
    definition: SplitDefinition
    strict: bool
    header_reader: Callable[[Path], VolumeHeader]
    tables: dict[str, SplitTables] = field(default_factory=dict)
    path_index: dict[str, dict[Key, tuple[str, str]]] = field(default_factory=dict)
    volumes: dict[tuple[str, Key], _Volume] = field(default_factory=dict)
    skipped: list[Record] = field(default_factory=list)

    def skip(self, split: str, key: Key, file: str, reason: str) -> None:
        """Record why something of `split` is left out (or raise when strict): never a silent change."""
        if self.strict:
            raise DataError(reason if file in reason else f"{file}: {reason}")
        # The manifest must not depend on where the download lives: absolute paths become <root>.
        reason = reason.replace(str(self.root), "<root>")
        self.skipped.append({"split": split, "volume": volume_key(*key), "file": file, "reason": reason})

    def volume(self, split: str, source_split: str, key: Key) -> _Volume | None:
        """The volume's header, read once; None (and a skip record) when it cannot be used."""
        if (source_split, key) not in self.volumes:
            self.volumes[(source_split, key)] = self._open(source_split, key)
        volume = self.volumes[(source_split, key)]
        if volume.problem:
            self.skip(split, key, volume.source or self.tables[source_split].files["paths"], volume.problem)
            return None
        return volume

    def _open(self, source_split: str, key: Key) -> _Volume:
        if source_split not in self.path_index:
            paths = self.tables[source_split].paths
            self.path_index[source_split] = {(r.PatientID, r.StudyUID, r.View): (r.descriptive_path, r.classic_path)
                                             for r in paths.itertuples(index=False)}
        if key not in self.path_index[source_split]:
            return _Volume(source_split, key, "", "",
                           problem=f"volume {volume_key(*key)} is not in the file-paths table")
        volume = _Volume(source_split, key, *self.path_index[source_split][key])
        if (problem := view_problem(key[2])) is not None:
            volume.problem = problem
            return volume
        try:
            volume.source = resolve_volume_path(self.root, volume.descriptive, volume.classic)
            volume.header = self.header_reader(self.root / volume.source)
        except DataError as exc:
            volume.problem = str(exc)
        return volume


def build_manifest(root: str | Path, definition: SplitDefinition, *, strict: bool = False,
                   header_reader: Callable[[Path], VolumeHeader] = read_header) -> dict[str, Any]:
    """The canonical manifest of every split the download allows; the others are listed under `unavailable`
    with what was looked for. Unusable volumes and boxes are skipped and listed (or raise when strict)."""
    root = Path(root)
    builder = _Builder(root, definition, strict, header_reader)
    loaded = {split: load_split_tables(root, split) for split in SPLITS}
    builder.tables = {split: tables for split, tables in loaded.items() if tables is not None}
    excluded = set(definition.exclude_volumes)

    splits: dict[str, list[dict[str, Any]]] = {}
    unavailable: dict[str, str] = {}
    for name, limit in (("train", definition.train_volumes), ("validation", None)):
        if (problem := _missing_table(builder.tables, name, "labels")) is None:
            splits[name] = _normal_slices(builder, name, excluded, limit)
        else:
            unavailable[name] = problem
    test_problem = _missing_table(builder.tables, "test", "boxes")
    test_boxes = {} if test_problem else _boxes_by_slice(builder.tables["test"], "cancer", excluded)
    if test_boxes:
        splits["test"] = _box_slices(builder, "test", "test", test_boxes)
        if definition.normal_test_slices:
            if (problem := _missing_table(builder.tables, "test", "labels")) is not None:
                raise DataError(f"split option normal_test_slices needs the test labels table: {problem}")
            splits["test"] += _spaced_normal_slices(builder, "test", excluded, definition.normal_test_slices)
    else:
        unavailable["test"] = test_problem or f"{builder.tables['test'].files['boxes']} has no cancer boxes"
    if definition.test_benign:
        if test_problem is None:
            splits["test-benign"] = _box_slices(builder, "test-benign", "test",
                                                _boxes_by_slice(builder.tables["test"], "benign", excluded))
        else:
            unavailable["test-benign"] = test_problem
    if not test_boxes or definition.test_fallback == "always":
        if (problem := _missing_table(builder.tables, "train", "boxes")) is None:
            splits["test-fallback"] = _box_slices(builder, "test-fallback", "train",
                                                  _boxes_by_slice(builder.tables["train"], "cancer", excluded))
        else:
            unavailable["test-fallback"] = problem

    used = {entry["volume"] for entries in splits.values() for entry in entries}
    volumes = {}
    for volume in builder.volumes.values():
        name = volume_key(*volume.key)
        if name in used and volume.header is not None:
            volumes[name] = _volume_record(root, volume)
    return {
        "format": MANIFEST_FORMAT,
        "reader_version": READER_VERSION,
        "dataset": definition.name,
        "options": _options(definition),
        "tables": {split: dict(sorted(tables.files.items())) for split, tables in sorted(builder.tables.items())},
        "test_split": "test" if test_boxes or "test-fallback" not in splits else "test-fallback",
        "volumes": dict(sorted(volumes.items())),
        "splits": {name: sorted(entries, key=lambda e: e["id"]) for name, entries in sorted(splits.items())},
        "unavailable": dict(sorted(unavailable.items())),
        "skipped": _sorted_records(builder.skipped),
        "notices": _sorted_records([n for tables in builder.tables.values() for n in tables.notices]),
    }


def _options(definition: SplitDefinition) -> dict[str, Any]:
    """The definition as recorded in the manifest. `normal_test_slices` is recorded only when it is on, so adding
    the option left the fingerprints (and the results keyed on them) of every existing split unchanged."""
    options = definition.model_dump(mode="json")
    if not options["normal_test_slices"]:
        del options["normal_test_slices"]
    return options


def evenly_spaced_frames(n_frames: int, count: int) -> list[int]:
    """`count` frames at the centres of `count` equal parts of the volume (all frames when it has fewer)."""
    if count >= n_frames:
        return list(range(n_frames))
    return sorted({int((i + 0.5) * n_frames / count) for i in range(count)})


def _spaced_normal_slices(builder: _Builder, split: str, excluded: set[str], count: int) -> list[dict[str, Any]]:
    """The opt-in volume-level protocol: N evenly spaced slices of each normal volume of `split`, no boxes, so
    false marks per volume are counted on normal volumes too (DBTex's 'all volumes')."""
    tables = builder.tables[split]
    normal, unclear = normal_keys(tables.labels)
    for key, reason in unclear:
        builder.skip(split, key, tables.files["labels"], reason)
    entries = []
    for key in sorted(k for k in normal if volume_key(*k) not in excluded):
        volume = builder.volume(split, split, key)
        if volume is None:
            continue
        name = volume_key(*key)
        entries += [{"id": slice_id(name, frame), "volume": name, "frame": frame, "boxes": []}
                    for frame in evenly_spaced_frames(volume.header.n_frames, count)]
    return entries


def _missing_table(tables: dict[str, SplitTables], split: str, kind: str) -> str | None:
    """Why `split` cannot supply its `kind` table (its file-paths table or that table is absent), else None."""
    if split not in tables:
        return f"no file-paths table for split {split!r} (looked for {looked_for('paths', split)})"
    if kind not in tables[split].files:
        return f"no {kind} table for split {split!r} (looked for {looked_for(kind, split)})"
    return None


def _sorted_records(records: list[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r["split"], r["volume"], r["file"], r["reason"]))


def manifest_fingerprint(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace): equal manifests, equal fingerprints."""
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def slice_id(volume: str, frame: int) -> str:
    return f"{volume}_f{frame:03d}"


def eligible_frame_range(n_frames: int, eligible: tuple[float, float]) -> range:
    """Frames a normal slice may be drawn from; never empty."""
    low = int(np.floor(eligible[0] * n_frames))
    high = max(low + 1, int(np.ceil(eligible[1] * n_frames)))
    return range(low, min(high, n_frames))


def _rng(seed: int, name: str, *stream: int) -> np.random.Generator:
    """A generator seeded by (seed, name): what is drawn for one name never depends on the other names."""
    return np.random.default_rng([seed, int.from_bytes(hashlib.sha256(name.encode()).digest()[:8]), *stream])


def draw_frames(key: str, n_frames: int, definition: SplitDefinition) -> list[int]:
    """k distinct frames of one volume; seeded by (seed, volume key) so volumes never influence each other."""
    frames = eligible_frame_range(n_frames, definition.eligible_frames)
    k = min(definition.slices_per_volume, len(frames))
    return sorted(int(frames[i]) for i in _rng(definition.seed, key).choice(len(frames), size=k, replace=False))


def pick_volumes_per_patient(keys: list[Key], per_patient: int, seed: int) -> list[Key]:
    """At most `per_patient` volumes of each patient (PICARD: one), chosen by a generator seeded with
    (seed, PatientID), so adding or removing a patient never changes another patient's choice."""
    by_patient: dict[str, list[Key]] = defaultdict(list)
    for key in sorted(keys):
        by_patient[key[0]].append(key)
    chosen = []
    for patient, volumes in by_patient.items():
        k = min(per_patient, len(volumes))
        picks = _rng(seed, patient, _PATIENT_STREAM).choice(len(volumes), size=k, replace=False)
        chosen += [volumes[i] for i in picks]
    return sorted(chosen)


def _normal_slices(builder: _Builder, split: str, excluded: set[str], limit: int | None) -> list[dict[str, Any]]:
    tables = builder.tables[split]
    normal, unclear = normal_keys(tables.labels)
    for key, reason in unclear:
        builder.skip(split, key, tables.files["labels"], reason)
    keys = sorted(k for k in normal if volume_key(*k) not in excluded)
    if builder.definition.volumes_per_patient is not None:
        keys = pick_volumes_per_patient(keys, builder.definition.volumes_per_patient, builder.definition.seed)
    if limit is not None and limit < len(keys):
        rng = np.random.default_rng(builder.definition.seed)
        keys = [keys[i] for i in sorted(rng.choice(len(keys), size=limit, replace=False))]
    entries = []
    for key in keys:
        volume = builder.volume(split, split, key)
        if volume is None:
            continue
        name = volume_key(*key)
        entries += [{"id": slice_id(name, frame), "volume": name, "frame": frame, "boxes": []}
                    for frame in draw_frames(name, volume.header.n_frames, builder.definition)]
    return entries


_BoxRow = tuple[Box, int]  # a box and its line in the boxes table


def _boxes_by_slice(tables: SplitTables, box_class: str, excluded: set[str]) -> dict[Key, dict[int, list[_BoxRow]]]:
    """{volume: {frame: [(box, row)]}} of one class."""
    out: dict[Key, dict[int, list[_BoxRow]]] = defaultdict(lambda: defaultdict(list))
    rows = tables.boxes[tables.boxes["Class"] == box_class]
    for row in rows.itertuples(index=False):
        key = (row.PatientID, row.StudyUID, row.View)
        if volume_key(*key) not in excluded:
            out[key][int(row.Slice)].append(((int(row.X), int(row.Y), int(row.Width), int(row.Height)), int(row.row)))
    return {key: dict(frames) for key, frames in out.items()}


def _box_slices(builder: _Builder, split: str, source_split: str,
                boxes: dict[Key, dict[int, list[_BoxRow]]]) -> list[dict[str, Any]]:
    table = builder.tables[source_split].files["boxes"]
    margin = builder.definition.edge_exclusion_px
    entries = []
    for key in sorted(boxes):
        volume = builder.volume(split, source_split, key)
        if volume is None:
            continue
        header, name = volume.header, volume_key(*key)
        for frame, frame_boxes in sorted(boxes[key].items()):
            kept = []
            for box, row in frame_boxes:
                if problem := _box_problem(box, frame, header):
                    builder.skip(split, key, table, f"volume {name} ({volume.source}): row {row}: {problem}; "
                                                    f"only this box is dropped")
                elif _clear_of_edges(box, header.shape, margin):
                    kept.append(box)
            if not kept:
                continue
            if key[2].startswith("r"):
                kept = list(mirror_boxes(kept, header.cols))
            entries.append({"id": slice_id(name, frame), "volume": name, "frame": frame,
                            "boxes": [list(b) for b in sorted(kept)]})
    return entries


def _box_problem(box: Box, frame: int, header: VolumeHeader) -> str:
    """Why one box cannot be scored against this volume ('' when it can)."""
    x, y, w, h = box
    described = f"box (X={x}, Y={y}, Width={w}, Height={h}) on Slice {frame}"
    if not 0 <= frame < header.n_frames:
        return f"{described}: Slice is beyond the volume's {header.n_frames} frames"
    if w <= 0 or h <= 0:
        return f"{described}: expected a positive Width and Height"
    if x < 0 or y < 0 or x + w > header.cols or y + h > header.rows:
        return f"{described} lies outside the {header.rows} x {header.cols} image"
    return ""


def _clear_of_edges(box: Box, shape: tuple[int, int], margin: int) -> bool:
    """Swiecicki et al. drop lesions within `margin` px of the image border (margin 0 keeps every box)."""
    x, y, w, h = box
    return x >= margin and y >= margin and x + w <= shape[1] - margin and y + h <= shape[0] - margin


def _volume_record(root: Path, volume: _Volume) -> dict[str, Any]:
    header = volume.header
    patient, study, view = volume.key
    return {"patient": patient, "study": study, "view": view, "source": volume.source,
            "file_size": (root / volume.source).stat().st_size, "sop_instance_uid": header.sop_instance_uid,
            "shape": [header.rows, header.cols], "n_frames": header.n_frames,
            "window": [header.window_center, header.window_width]}
