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


def wilson_interval(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval (percent) of a rate given in percent over `n` samples.

    With p = k / n: (p + z^2 / 2n +- z * sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n). Unlike the normal
    approximation it stays inside [0, 100] and is not empty at 0 or 100 percent (0 of 10 -> [0, 27.8]).
    """
    if n <= 0:
        raise ValueError(f"a rate needs at least one sample, got n={n}")
    p = rate / 100.0
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, 100.0 * (centre - half) / scale), min(100.0, 100.0 * (centre + half) / scale)


def column_label(key: str) -> str:
    """A column key as a table header: `over_refusal` -> `over-refusal`."""
    return key.replace("_", "-")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines
