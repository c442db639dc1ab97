"""Wall-clock time of a job's phases (the recipe's RUN/timings.json, the base-model build's marker file)."""

from __future__ import annotations

import time
from collections.abc import Callable


class PhaseClock:
    """Seconds per named phase, each phase ending at `lap(name)`; `log` (if given) is told each lap."""

    def __init__(self, log: Callable[[str], object] | None = None):
        self.laps: dict[str, float] = {}
        self._log = log
        self._start = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._start, 1)
        self._start = now
        if self._log is not None:
            self._log(f"[{name}] {self.laps[name]:.1f}s")

    def summary(self) -> str:
        return ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.laps.items())
