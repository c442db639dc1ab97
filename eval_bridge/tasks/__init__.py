"""The registry of MultiTrust's 32 tasks: `TASKS` (id -> TaskSpec), `get_task`, `select_tasks`, `list_tasks`,
and `aggregate` (task scores -> sub-aspects, aspects, risk types, overall)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eval_bridge.tables import markdown_table
from eval_bridge.tasks import fairness, privacy, robustness, rollup, safety, truthfulness
from eval_bridge.tasks.spec import ASPECTS, SUB_ASPECTS, TaskSpec

TASKS: dict[str, TaskSpec] = {
    t.id: t for module in (truthfulness, safety, robustness, fairness, privacy) for t in module.TASKS
}


def get_task(task_id: str) -> TaskSpec:
    """The task with this id (e.g. "T1"), or a ValueError listing the valid ids."""
    try:
        return TASKS[task_id.upper()]
    except KeyError:
        raise ValueError(f"unknown task {task_id!r}; valid ids: {', '.join(TASKS)}") from None


def select_tasks(spec: str | None) -> list[TaskSpec]:
    """Tasks named by a comma-separated list of task ids and/or aspects ("T1,S4", "safety"); all if None or
    "all"; none for "none" (tracks only)."""
    if not spec or spec.strip().lower() == "all":
        return list(TASKS.values())
    if spec.strip().lower() == "none":
        return []
    chosen: dict[str, TaskSpec] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part.lower() in ASPECTS:
            chosen.update({t.id: t for t in TASKS.values() if t.aspect == part.lower()})
        else:
            task = get_task(part)
            chosen[task.id] = task
    return list(chosen.values())


def list_tasks() -> str:
    """A markdown table of the 32 tasks: id, name, aspect / sub-aspect, risk type, datasets, scoring."""
    rows = [
        [
            t.id,
            t.name,
            f"{t.aspect} / {t.sub_aspect}",
            ", ".join(t.risk),
            len(t.datasets),
            t.formula + (" (LLM judge)" if t.needs_judge else ""),
        ]
        for t in TASKS.values()
    ]
    return "\n".join(markdown_table(["id", "task", "aspect / sub-aspect", "risk type", "datasets", "score"], rows))


def aggregate(task_scores: Mapping[str, float | None]) -> dict[str, Any]:
    """MultiTrust's roll-up of task scores, with each task's risk tags (see `rollup.aggregate`)."""
    return rollup.aggregate(task_scores, {t.id: t.risk for t in TASKS.values()})


__all__ = ["ASPECTS", "SUB_ASPECTS", "TASKS", "TaskSpec", "aggregate", "get_task", "list_tasks", "select_tasks"]
