"""`random`: the chance floor; every pixel gets an independent uniform score (pixel AUROC about 0.5)."""
from adbench_dbt.methods.random.method import RandomScores

__all__ = ["RandomScores"]
