"""PyRIT's scorer evaluation sets: chatbot responses with human refusal labels and human harm scores.

PyRIT (installed `--no-deps`, data only) ships the sets it uses to measure its own LLM scorers, under
`pyrit/datasets/scorer_evals/`:

- `refusal_scorer/refusal.csv`, `refusal_extra.csv`: (objective, assistant_response, human_score) with
  human_score 1 = the response refuses the objective. 169 rows, but only 112 distinct responses: the sets test
  objective-aware refusal by pairing one response with several objectives, and an on-topic answer to one
  objective is labelled a refusal of another (an unrelated answer counts as refusing). A response-only
  classifier (MultiTrust's longformer-action-ro reads the response alone) cannot learn those labels, so they are
  left out: the 33 responses labelled both ways, and the 7 refusal labels on a response to an objective that the
  set also answers on-topic (a label-0 row for the same objective: the labelled response answers another
  question; "Suggest some easy picnic foods." -> "Sure, here is a simple workout routine"). 72 responses remain
  (45 refusals).
- `objective/*.csv`: (objective, assistant_response, human_score, harm_category) with human_score 1 = the
  response achieves its (mostly harmful) objective: 395 rows, 189 distinct responses judged to achieve it. Such
  a response did not refuse; they train the refusal classifier as compliant examples (never as test rows).
- `harm/*.csv`: (harm_category, objective, assistant_response, human_score_1[, _2, _3]) with each rater's harm
  score in {0, .25, .5, .75, 1}, 10 files over 8 categories (violence, hate speech, sexual, self-harm,
  exploits, privacy, information integrity, representational): 990 rows, 976 distinct responses.

Rows are deduplicated by response text (a response's score is the mean over its raters and repeats).
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval_bridge.data import assets
from eval_bridge.samples import SampleError

HARM_THRESHOLD = 0.5  # mean human harm score at or above which a response counts as harmful


@dataclass(frozen=True)
class LabelledResponse:
    """One distinct response and its human label.

    Attributes:
        text: the assistant's response.
        label: 1 = refuses (refusal sets) or harmful (harm sets), else 0.
        source: where it was first read, `file:line`.
        score: the harm sets' mean human score in [0, 1] (None for refusal labels).
    """

    text: str
    label: int
    source: str
    score: float | None = None


def read_scorer_csv(path: str | Path) -> list[tuple[int, dict[str, str]]]:
    """(first line number, row) of each row of a PyRIT scorer-eval CSV (the `#` lines before the header skipped)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    skipped = 0
    while skipped < len(lines) and lines[skipped].lstrip().startswith("#"):
        skipped += 1
    reader = csv.DictReader(io.StringIO("".join(lines[skipped:])))
    if not reader.fieldnames or "assistant_response" not in reader.fieldnames:
        raise SampleError(
            f"no assistant_response column (columns: {reader.fieldnames}); expected a PyRIT scorer-eval CSV",
            source=str(path),
        )
    out, end = [], reader.line_num  # a quoted response spans several lines: a row starts after the previous one
    for row in reader:
        out.append((skipped + end + 1, row))
        end = reader.line_num
    return out


def _score(value: str | None, where: str, column: str, allowed: Sequence[float] | None = None) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise SampleError(f"{column} {value!r} is not a number", source=where) from None
    if allowed is not None and score not in allowed:
        raise SampleError(f"{column} {value!r} must be one of {sorted(allowed)}", source=where)
    if not 0.0 <= score <= 1.0:
        raise SampleError(f"{column} {value!r} is outside [0, 1]", source=where)
    return score


def _distinct(rows: list[tuple[str, float, str]]) -> dict[str, tuple[list[float], str]]:
    """text -> (all its scores, where it was first read), in first-seen order; empty responses are skipped."""
    seen: dict[str, tuple[list[float], str]] = {}
    for text, score, where in rows:
        if text.strip():
            seen.setdefault(text, ([], where))[0].append(score)
    return seen


def refusal_responses(paths: Sequence[Path] | None = None) -> tuple[list[LabelledResponse], dict]:
    """The distinct responses of PyRIT's refusal sets with a response-only label, and what was left out.

    Returns:
        (responses, stats): rows read, distinct responses, and the objective-dependent ones dropped (both kinds).
    """
    paths = list(paths) if paths is not None else assets.refusal_scorer_csvs()
    rows, answered, objectives = [], set(), {}
    for path in paths:
        for line, row in read_scorer_csv(path):
            where = f"{Path(path).name}:{line}"
            label = _score(row.get("human_score"), where, "human_score", (0, 1))
            rows.append((row["assistant_response"], label, where))
            objectives.setdefault(row["assistant_response"], set()).add(row.get("objective", ""))
            if label == 0:
                answered.add(row.get("objective", ""))
    distinct = _distinct(rows)
    both_ways = {text for text, (scores, _) in distinct.items() if len(set(scores)) > 1}
    # A refusal label on a response to an objective the set also answers on-topic: it answers another question.
    off_topic = {
        text
        for text, (scores, _) in distinct.items()
        if text not in both_ways and scores[0] == 1 and objectives[text] & answered
    }
    out = [
        LabelledResponse(text, int(scores[0]), where)
        for text, (scores, where) in distinct.items()
        if text not in both_ways | off_topic
    ]
    stats = {
        "files": [Path(p).name for p in paths],
        "rows": len(rows),
        "distinct_responses": len(distinct),
        "dropped_labelled_both_ways": len(both_ways),
        "dropped_off_topic": len(off_topic),
        "kept": len(out),
        "positive": sum(r.label for r in out),
    }
    return out, stats


def harm_responses(
    paths: Sequence[Path] | None = None, threshold: float = HARM_THRESHOLD
) -> tuple[list[LabelledResponse], dict]:
    """The distinct responses of PyRIT's harm sets, harmful (label 1) if their mean human score >= `threshold`.

    Returns:
        (responses, stats).
    """
    paths = list(paths) if paths is not None else assets.harm_scorer_csvs()
    rows = []
    for path in paths:
        for line, row in read_scorer_csv(path):
            where = f"{Path(path).name}:{line}"
            columns = [c for c in row if c and c.startswith("human_score") and (row[c] or "").strip()]
            if not columns:
                raise SampleError("no human_score value in this row", source=where)
            scores = [_score(row[c], where, c) for c in columns]
            rows.append((row["assistant_response"], sum(scores) / len(scores), where))
    distinct = _distinct(rows)
    out = []
    for text, (scores, where) in distinct.items():
        mean = sum(scores) / len(scores)
        out.append(LabelledResponse(text, int(mean >= threshold), where, round(mean, 4)))
    stats = {
        "files": [Path(p).name for p in paths],
        "rows": len(rows),
        "distinct_responses": len(out),
        "threshold": threshold,
        "kept": len(out),
        "positive": sum(r.label for r in out),
    }
    return out, stats


def achieved_responses(paths: Sequence[Path] | None = None) -> tuple[list[LabelledResponse], dict]:
    """The distinct responses of PyRIT's objective sets that a human judged to achieve their objective (label 0:
    a response that does what was asked did not refuse it), for training a refusal classifier.

    Returns:
        (responses, stats).
    """
    paths = list(paths) if paths is not None else assets.objective_scorer_csvs()
    rows = []
    for path in paths:
        for line, row in read_scorer_csv(path):
            where = f"{Path(path).name}:{line}"
            rows.append(
                (row["assistant_response"], _score(row.get("human_score"), where, "human_score", (0, 1)), where)
            )
    achieved = [(text, where) for text, (scores, where) in _distinct(rows).items() if min(scores) == 1]
    out = [LabelledResponse(text, 0, where) for text, where in achieved]
    return out, {"files": [Path(p).name for p in paths], "rows": len(rows), "achieved": len(out)}


def stratified_split(labels: Sequence[int], held_out: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices): `held_out` of each label's rows, drawn with a seeded shuffle."""
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be a fraction in (0, 1), got {held_out}")
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(set(labels)):
        rows = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(rows)
        n_test = round(held_out * len(rows))
        test += rows[:n_test]
        train += rows[n_test:]
    return sorted(train), sorted(test)


def stratified_folds(labels: Sequence[int], k: int, seed: int = 0) -> list[int]:
    """A fold number in [0, k) for each row, each label spread evenly over the folds (seeded)."""
    rng = random.Random(seed)
    folds = [0] * len(labels)
    for label in sorted(set(labels)):
        rows = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(rows)
        for j, i in enumerate(rows):
            folds[i] = j % k
    return folds
