"""The typed results of a run: one record per scored slice and one summary per run.

Every writer (the runner) and every reader (leaderboard, CLI, tests) goes through these models, so a field has one
name, one unit and one meaning everywhere. A summary carries its schema name and version; reading an older or
foreign file is a clear error instead of a KeyError somewhere in a table.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adbench_dbt.detection import Detection, DetectionConfig
from adbench_dbt.errors import RunError
from adbench_dbt.io import write_json

SUMMARY_SCHEMA = "adbench-dbt/run-summary"
SUMMARY_VERSION = 3  # 3: AUPRO, hit rate, detection figures and config (format 2 upgrades with `adbench detect`)
METRIC_KEYS = ("auroc", "ap", "auroc_breast", "inout_ratio", "aupro", "hit")
MEAN_KEYS = ("auroc", "ap", "auroc_breast", "aupro", "hit")  # means over slices with a bootstrap CI

Interval = tuple[Optional[float], Optional[float]]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SliceMetrics(_Record):
    """Localisation metrics of one heatmap; None where the slice has a single class (noted)."""

    auroc: Optional[float] = Field(description="pixel AUROC over the scored pixels (whole slice or breast)")
    ap: Optional[float] = Field(description="pixel average precision over the same pixels")
    auroc_breast: Optional[float] = Field(description="pixel AUROC over breast pixels only")
    inout_ratio: Optional[float] = Field(description="mean heatmap inside boxes / outside, breast pixels")
    aupro: Optional[float] = Field(None, description="AUPRO up to FPR 0.3 over the scored pixels (boxes = regions)")
    hit: Optional[bool] = Field(None, description="heatmap maximum inside the breast falls inside a box")
    note: Optional[str] = None


class SliceRecord(_Record):
    """`slices/<id>.json`: written last for a slice, so its presence means the slice is finished (resume)."""

    id: str
    shape: tuple[int, int]
    boxes: list[tuple[int, int, int, int]]
    seconds: float = Field(description="wall seconds of score_map (device-synchronised)")
    windows: int = Field(ge=0, description="windows scored (0 for non-window methods)")
    batch_size: Optional[int] = Field(None, description="window batch that ran (after out-of-memory halving)")
    metrics: dict[str, SliceMetrics]
    detections: dict[str, list[Detection]] = Field(default_factory=dict,
                                                   description="scored boxes per variant (slice coordinates)")


class VariantSummary(_Record):
    """Means over slices of one score variant with bootstrap 95% CIs over slices."""

    auroc: Optional[float]
    auroc_ci: Interval
    ap: Optional[float]
    ap_ci: Interval
    auroc_breast: Optional[float]
    auroc_breast_ci: Interval
    inout_ratio: Optional[float]
    inout_ratio_std: Optional[float]
    aupro: Optional[float] = Field(description="mean AUPRO@0.3 over slices")
    aupro_ci: Interval
    hit_rate: Optional[float] = Field(description="fraction of slices with boxes whose heatmap maximum hits a box")
    hit_rate_ci: Interval
    slices_scored: int = Field(ge=0, description="slices with both classes (the others are left out of means)")
    detection: Optional["DetectionFigures"] = Field(description="official DBTex figures (None: not evaluated)")


class DetectionFigures(_Record):
    """The dataset authors' evaluation of the run's detections (names as in `duke_dbt_data.evaluate`).

    Only scored slices can produce marks: FPs per volume count the marks on the scored slices of each volume."""

    sensitivity_at_2_fps_all: float
    sensitivity_at_1_fps_positive: float
    sensitivity_at_2_fps_positive: float
    sensitivity_at_3_fps_positive: float
    sensitivity_at_4_fps_positive: float
    mean_sensitivity_positive: float
    volumes: int = Field(ge=0, description="volumes in labels.csv (all evaluated volumes)")
    positive_volumes: int = Field(ge=0, description="volumes with boxes")
    boxes: int = Field(ge=0)


class Timing(_Record):
    score_seconds: float = Field(description="sum of per-slice scoring wall seconds")
    s_per_slice: float = Field(description="mean scoring seconds per slice")
    windows: int = Field(ge=0, description="windows scored over all slices")
    ms_per_patch: Optional[float] = Field(description="milliseconds per window (None without windows)")
    windows_per_s: Optional[float]
    fit_seconds: Optional[float] = Field(description="training wall seconds (None: loaded, not trained)")


class RunSummary(_Record):
    """`summary.json` of a finished run: what ran, on what, and what it measured."""

    schema_name: Literal["adbench-dbt/run-summary"] = Field(SUMMARY_SCHEMA, alias="schema")
    schema_version: Literal[3] = SUMMARY_VERSION
    method: str
    profile: str
    overrides: dict[str, Any]
    dataset: str = Field(description="leaderboard tag: phantom-demo, phantom-tiny, bcs-dbt")
    fingerprint: str = Field(description="sha256 of the split manifest: results compare only when equal")
    split: str
    split_options: dict[str, Any]
    seed: int
    device: str
    precision: str = Field(description="dtype the scoring ran in (fp32, bf16, fp16)")
    batch_size: Optional[int] = Field(description="window batch that ran (None for non-window methods)")
    checkpoint: Optional[str]
    checkpoint_sha256: Optional[str] = Field(description="content hash of the loaded checkpoint files")
    breast_only: bool
    harness_revision: str
    slices: int = Field(ge=1)
    variants: dict[str, VariantSummary]
    detection: DetectionConfig = Field(description="the heatmap -> boxes rule the detection figures used")
    timing: Timing
    date: str
    run_dir: str

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def write(self, path: str | Path) -> None:
        write_json(path, self.model_dump(mode="json", by_alias=True))

    @classmethod
    def read(cls, path: str | Path) -> "RunSummary":
        """Load a summary; an older format or a file that is not a run summary is a RunError naming the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise RunError(f"{path}: not a readable run summary ({err})") from None
        if not isinstance(data, dict) or data.get("schema") != SUMMARY_SCHEMA:
            raise RunError(f"{path}: not an adbench-dbt run summary (no \"schema\": \"{SUMMARY_SCHEMA}\"); "
                           "summaries written before format 2 must be regenerated by rerunning the run")
        if data.get("schema_version") != SUMMARY_VERSION:
            hint = ("run `adbench detect " + str(path.parent) + "` to upgrade it from its saved heatmaps"
                    if data.get("schema_version") == 2 else "rerun the run to regenerate it")
            raise RunError(f"{path}: run summary format {data.get('schema_version')!r}, this harness reads "
                           f"format {SUMMARY_VERSION}; {hint}")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RunError(f"{path}: invalid run summary: field {where!r}: {first['msg']}") from None


VariantSummary.model_rebuild()


def read_slice_record(path: Path) -> SliceRecord:
    try:
        return SliceRecord.model_validate_json(path.read_text())
    except (OSError, ValidationError) as err:
        raise RunError(f"{path}: unreadable slice record ({str(err).splitlines()[0]}); delete it to rescore "
                       "that slice") from None
