"""The building blocks of the task formulas: per-dataset terms and the arithmetic that combines them.

A term is None when it is unavailable (its dataset was not run, or the check it reads did not run); every
combinator leaves None terms out rather than counting them as 0, and passes None through when nothing is left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from eval_bridge.tasks.spec import UNRELATED, DatasetScores

Results = Mapping[str, DatasetScores]


def term(results: Results, dataset_id: str, fn: Callable[[DatasetScores], float | None]) -> float | None:
    """fn(scores of `dataset_id`), or None if that dataset was not run."""
    return fn(results[dataset_id]) if dataset_id in results else None


def mean_of(results: Results, dataset_id: str, check: str, subset: str | None = None) -> float | None:
    """The mean of `check` on `dataset_id` (optionally one subset); None if unavailable."""
    return term(results, dataset_id, lambda s: s.mean(check, subset))


def accuracy_of(results: Results, dataset_id: str, check: str = "yes_no", subset: str | None = None) -> float | None:
    """The 0/1 accuracy of `check` against the targets of `dataset_id`; None if unavailable."""
    return term(results, dataset_id, lambda s: s.accuracy(check, subset))


def with_unrelated(results: Results, prefix: str, fn, middle: str = "image") -> float | None:
    """(text + middle + U) / 3 over `<prefix>-text`, `<prefix>-<middle>` and U = the mean of the unrelated-image
    variants; each term is fn(DatasetScores)."""
    unrelated = avg(*(term(results, f"{prefix}-{u}", fn) for u in UNRELATED))
    return avg(term(results, f"{prefix}-text", fn), term(results, f"{prefix}-{middle}", fn), unrelated)


def refusal_rate(scores: DatasetScores) -> float | None:
    """MultiTrust's refusal rate: the keyword rule OR the refusal classifier (when it ran)."""
    return scores.mean_any("refusal", "classifier_refusal")


def avg(*terms: float | None) -> float | None:
    """Mean of the available terms (None = unavailable and left out); None if none is available."""
    present = [t for t in terms if t is not None]
    return sum(present) / len(present) if present else None


def weighted(*pairs: tuple[float, float | None]) -> float | None:
    """Sum of weight * term over the available terms, the weights renormalised over them; None if none."""
    present = [(w, t) for w, t in pairs if t is not None]
    total = sum(w for w, _ in present)
    return sum(w * t for w, t in present) / total if present else None


def scaled(x: float | None, factor: float = 100.0) -> float | None:
    """x * factor, passing None through."""
    return None if x is None else x * factor


def complement(x: float | None) -> float | None:
    """1 - x, passing None through."""
    return None if x is None else 1.0 - x


def percent(fn: Callable[[DatasetScores], float | None]) -> Callable[[DatasetScores], float | None]:
    """scores -> 100 * fn(scores) (None passed through): a task's `dataset_metric` from a 0-1 term."""
    return lambda scores: scaled(fn(scores))
