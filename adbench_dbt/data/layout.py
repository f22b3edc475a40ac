"""BCS-DBT on-disk layout: file names and columns of the official tables.

Both the reader and the phantom writer use these constants, so the phantom is written exactly in the layout that
the reader expects from the real download (the tables and their columns are described in the dataset card,
datasets/README.md, "The tables").
"""
from __future__ import annotations

SPLITS = ("train", "validation", "test")
VIEWS = ("lcc", "lmlo", "rcc", "rmlo")
KEY_COLUMNS = ("PatientID", "StudyUID", "View")

PATHS_COLUMNS = KEY_COLUMNS + ("descriptive_path", "classic_path")
FLAG_COLUMNS = ("Normal", "Actionable", "Benign", "Cancer")  # 0/1; exactly one is 1 in the official tables
LABELS_COLUMNS = KEY_COLUMNS + FLAG_COLUMNS
BOXES_COLUMNS = KEY_COLUMNS + ("Subject", "Slice", "X", "Y", "Width", "Height", "Class", "AD", "VolumeSlices")
BOX_CLASSES = ("benign", "cancer")

# Current names first; the reader accepts the first one present on disk. The phantom writes the first name.
TABLE_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "paths": {
        "train": ("BCS-DBT-file-paths-train-v2.csv", "BCS-DBT file-paths-train.csv", "BCS-DBT-file-paths-train.csv"),
        "validation": ("BCS-DBT-file-paths-validation-v2.csv", "BCS-DBT file-paths-validation.csv",
                       "BCS-DBT-file-paths-validation.csv"),
        "test": ("BCS-DBT-file-paths-test-v2.csv", "BCS-DBT file-paths-test.csv", "BCS-DBT-file-paths-test.csv"),
    },
    "labels": {
        "train": ("BCS-DBT-labels-train-v2.csv", "BCS-DBT labels-train.csv", "BCS-DBT-labels-train.csv"),
        "validation": ("BCS-DBT-labels-validation-PHASE-2-Jan-2024.csv", "BCS-DBT labels-validation.csv",
                       "BCS-DBT-labels-validation.csv"),
        "test": ("BCS-DBT-labels-test-PHASE-2.csv", "BCS-DBT labels-test.csv", "BCS-DBT-labels-test.csv"),
    },
    "boxes": {
        "train": ("BCS-DBT-boxes-train-v2.csv", "BCS-DBT boxes-train.csv", "BCS-DBT-boxes-train.csv"),
        "validation": ("BCS-DBT-boxes-validation-v2-PHASE-2-Jan-2024.csv", "BCS-DBT boxes-validation.csv",
                       "BCS-DBT-boxes-validation.csv"),
        "test": ("BCS-DBT-boxes-test-v2-PHASE-2-Jan-2024.csv", "BCS-DBT boxes-test.csv", "BCS-DBT-boxes-test.csv"),
    },
}

BREAST_TOMOSYNTHESIS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.13.1.3"
