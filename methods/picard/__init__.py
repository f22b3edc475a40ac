"""PICARD (Konz et al. 2023): pluralistic image completion for anomaly localization."""
from adbench_dbt.methods.picard.method import Picard

__all__ = ["Picard"]
