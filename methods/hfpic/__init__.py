"""HFPIC (Wan et al. 2021, ICT) with PICARD's MCD scoring: the pluralistic backbone PICARD compared against."""
from adbench_dbt.methods.hfpic.method import Hfpic

__all__ = ["Hfpic"]
