"""Which volumes the phantom holds: studies, ids, file paths, labels and lesion plans, all derived from the seed.

Every volume gets its own random stream, seeded by (seed, study, view), so a volume's pixels do not depend on how
many workers render it or in which order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adbench_dbt.data.layout import SPLITS
from adbench_dbt.data.phantom.lesions import LesionPlan, sample_plan
from adbench_dbt.data.phantom.presets import Preset
from adbench_dbt.data.phantom.volume import VolumeSpec

COLLECTION = "Breast-Cancer-Screening-DBT"
UID_ROOT = "1.2.826.0.1.3680043.8.498."
GROUPS = ("Normal", "Actionable", "Benign", "Cancer")
_ID_STREAM = 10_000_019  # stream of the id draw, apart from every study stream


@dataclass(frozen=True)
class VolumeJob:
    split: str
    patient: str
    study: str
    view: str
    group: str  # one of GROUPS
    spec: VolumeSpec
    entropy: tuple[int, ...]  # seed of the volume's random stream
    descriptive_path: str
    classic_path: str
    window: tuple[float, float]  # (center, width) written to the DICOM


@dataclass(frozen=True)
class _Study:
    split: str
    group: str
    views: tuple[str, ...]


def _studies(preset: Preset, rng: np.random.Generator) -> list[_Study]:
    """Normal volumes as four-view studies; the other groups as two views (CC + MLO) of one breast."""
    studies = []
    for split in SPLITS:
        plan = preset.splits.get(split)
        if plan is None:
            continue
        for group, count, per_study in (("Normal", plan.normal, 4), ("Actionable", plan.actionable, 2),
                                        ("Benign", plan.benign, 2), ("Cancer", plan.cancer, 2)):
            while count > 0:
                side = "l" if rng.random() < 0.5 else "r"
                views = ("lcc", "lmlo", "rcc", "rmlo") if per_study == 4 else (f"{side}cc", f"{side}mlo")
                studies.append(_Study(split, group, views[:count]))
                count -= per_study
    return studies


def _uid(rng: np.random.Generator) -> str:
    return UID_ROOT + "".join(str(d) for d in rng.integers(0, 10, 30)).lstrip("0")


def plan_volumes(preset: Preset, seed: int) -> list[VolumeJob]:
    """All volumes of the dataset, in a fixed order."""
    id_rng = np.random.default_rng([seed, _ID_STREAM])
    studies = _studies(preset, id_rng)
    patients = np.sort(id_rng.choice(np.arange(1, 5061), size=len(studies), replace=False))
    study_numbers = np.sort(id_rng.choice(np.arange(1, 5611), size=len(studies), replace=False))
    jobs = []
    for index, (study, patient_number, study_number) in enumerate(zip(studies, patients, study_numbers)):
        rng = np.random.default_rng([seed, index])
        patient, study_id = f"DBT-P{patient_number:05d}", f"DBT-S{study_number:05d}"
        study_folder = (f"01-01-2000-{study_id}-MAMMO screening digital bilateral-"
                        f"{int(rng.integers(10000, 99999))}")
        study_uid = _uid(rng)
        density = float(rng.beta(2.0, 2.0))
        lesions: tuple[LesionPlan, ...] = ()
        if study.group in ("Cancer", "Benign"):
            malignant = study.group == "Cancer"
            lesions = (sample_plan(rng, preset.lesion_area, malignant),)
            if malignant and rng.random() < preset.second_lesion_rate:
                lesions += (sample_plan(rng, preset.lesion_area, malignant),)
        for view_index, view in enumerate(study.views):
            series_folder = (f"{int(rng.integers(1000, 99999))}.000000-NA-{int(rng.integers(10000, 99999))}")
            spec = VolumeSpec(shape=(preset.rows, preset.cols), n_frames=preset.n_frames, view=view,
                              spacing_mm=preset.spacing_mm, density=density, lesions=lesions,
                              findings_rate=2.0 if study.group == "Actionable" else 1.0)
            jobs.append(VolumeJob(
                split=study.split, patient=patient, study=study_id, view=view, group=study.group, spec=spec,
                entropy=(seed, index, view_index),
                descriptive_path=f"{COLLECTION}/{patient}/{study_folder}/{series_folder}/1-1.dcm",
                classic_path=f"{COLLECTION}/{patient}/{study_uid}/{_uid(rng)}/1-1.dcm",
                window=(float(round(rng.uniform(480, 560))), float(round(rng.uniform(720, 860))))))
    return jobs
