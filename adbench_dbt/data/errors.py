"""Bad dataset input: `DataError` is part of the harness's one error policy (`adbench_dbt.errors`)."""
from __future__ import annotations

from adbench_dbt.errors import DataError

__all__ = ["DataError"]
