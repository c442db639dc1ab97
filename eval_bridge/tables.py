"""Number formatting and markdown tables, shared by the results report (`report.py`) and the trade-off report
(`tradeoff.py`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def fmt(x: float | None, digits: int = 2) -> str:
    """A score with `digits` decimals; "n/a" for a missing (None) or undefined (NaN) one."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def delta(x: float | None, base: float | None) -> float | None:
    """x - base, None if either is missing."""
    return None if x is None or base is None else x - base


def signed(x: float | None) -> str:
    """A difference with its sign: "+2.50", "-1.00"; "n/a" for a missing one."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.2f}"


def with_delta(x: float | None, d: float | None) -> str:
    """ "12.50 (+2.50)": a score and its signed delta; the delta is left out when unknown."""
    return fmt(x) if x is None or d is None else f"{fmt(x)} ({signed(d)})"


def column_label(key: str) -> str:
    """A column key as a table header: `over_refusal` -> `over-refusal`."""
    return key.replace("_", "-")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines
