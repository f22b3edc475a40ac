"""DMSE (Swiecicki et al. 2021): inpainting error x critic disagreement."""
from adbench_dbt.methods.dmse.method import Dmse

__all__ = ["Dmse"]
