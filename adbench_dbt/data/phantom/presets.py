"""Phantom sizes as data: `tiny` for tests, `demo` for the CPU demo job, `full` (native frames) for GPU speed runs."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SplitPlan:
    """How many volumes of each label group one split holds."""

    normal: int = 0  # written as studies of four views
    actionable: int = 0  # recalled but not biopsied: two views of one breast, benign findings, no box
    benign: int = 0  # biopsied benign: two views of one breast, a benign box in each
    cancer: int = 0  # two views of one breast, a cancer box in each (sometimes two lesions)


@dataclass(frozen=True)
class Preset:
    name: str
    rows: int
    cols: int
    n_frames: int
    splits: dict[str, SplitPlan]
    lesion_area: tuple[float, float] = (0.001, 0.03)  # box area as a fraction of the slice, log-uniform
    second_lesion_rate: float = 0.25  # cancer views with a second (multifocal) lesion
    spacing_mm: float = 3.0  # depth between written frames
    description: str = field(default="", compare=False)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny", rows=128, cols=96, n_frames=5, lesion_area=(0.006, 0.03), second_lesion_rate=0.0,
        splits={"train": SplitPlan(normal=6), "validation": SplitPlan(normal=2), "test": SplitPlan(cancer=4, benign=1)},
        description="unit tests: a dozen 128 x 96 volumes, seconds"),
    "demo": Preset(
        name="demo", rows=512, cols=400, n_frames=9,
        # PICARD's split keeps one normal volume per patient and normal studies are four views: 160 normal train
        # volumes = 40 patients = 40 training slices. 120 cancer test volumes (60 two-view studies, a quarter with
        # a second lesion) give ~150 test slices: a bootstrap 95% CI of a mean pixel AUROC about +-0.03.
        splits={"train": SplitPlan(normal=160, actionable=2, benign=2),
                "validation": SplitPlan(normal=8, cancer=2),
                "test": SplitPlan(normal=4, benign=2, cancer=120)},
        description="default embedded dataset: 512 x 400 frames, 40 normal training patients, ~150 test slices"),
    "full": Preset(
        name="full", rows=2457, cols=1996, n_frames=10,
        splits={"train": SplitPlan(normal=4), "validation": SplitPlan(normal=1), "test": SplitPlan(cancer=2)},
        description="native 2457 x 1996 frames, a handful of volumes, for GPU speed benchmarks"),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown phantom preset {name!r}: expected one of {', '.join(PRESETS)}")
    return PRESETS[name]
