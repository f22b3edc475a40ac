"""Markdown tables: the one renderer behind the leaderboards, benchmark and fidelity tables and the README tables."""
from __future__ import annotations

from typing import Any, Iterable


def table_lines(headers: Iterable[Any], rows: Iterable[Iterable[Any]]) -> list[str]:
    """Header, separator and one line per row; cells are written with str() (format them first)."""
    headers = [str(h) for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
