"""`telea`: classical (no-learning) inpainting of the centred hole, scored by MSE inside the hole."""
from adbench_dbt.methods.telea.method import TeleaInpainting

__all__ = ["TeleaInpainting"]
