"""Synthetic DBT phantom written in the BCS-DBT layout (multi-frame DICOM + official tables).

Real BCS-DBT (1.6 TB) cannot be embedded, so the default dataset is generated here and read back through the same
reader as the real download.
"""
from adbench_dbt.data.phantom.generate import GENERATOR_VERSION, PhantomSummary, ensure_phantom, generate_phantom
from adbench_dbt.data.phantom.presets import PRESETS, Preset, SplitPlan, get_preset

__all__ = ["GENERATOR_VERSION", "PRESETS", "PhantomSummary", "Preset", "SplitPlan", "ensure_phantom",
           "generate_phantom", "get_preset"]
