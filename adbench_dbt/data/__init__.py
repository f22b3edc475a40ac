"""BCS-DBT data layer: reader, orientation, split, slice cache, phantom."""
from adbench_dbt.data.dataset import BCSDBT
from adbench_dbt.data.errors import DataError
from adbench_dbt.data.slices import Box, Slice, boxes_mask

__all__ = ["BCSDBT", "Box", "DataError", "Slice", "boxes_mask"]
