"""One error type for bad dataset input, so the CLI and `prepare` can report it without a traceback."""
from __future__ import annotations


class DataError(ValueError):
    """The dataset on disk is not what BCS-DBT looks like; the message names the file and the problem."""
