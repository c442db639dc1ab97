"""Apply a dataset's chain of checks to its responses, with whatever judges and classifiers are configured.

Each check records how its values were produced: `rule:<name>`, `judge:<judge id>`, `classifier:<model id>`,
`fallback:<name> (...)` when the judge or classifier it needs is not configured, or `unavailable:<name>` when
there is no offline stand-in (its terms then drop out of the task formula, and the results say so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval_bridge.cache import JudgeCache
from eval_bridge.samples import Sample, SampleError
from eval_bridge.tasks.spec import Check, DatasetScores


@dataclass
class Scorers:
    """The external scorers of a run; each is optional (None = offline).

    Attributes:
        judge: LLM judge for MultiTrust's GPT-judged checks (anything with `.id` and `.ask(prompts)`).
        harmbench: judge for jailbreak success (the HarmBench classifier prompt); e.g. a local
            cais/HarmBench-Llama-2-13b-cls or a server hosting it.
        refusal_classifier: sequence classifier for MultiTrust's `classifer_reject_eval` (LibrAI/longformer-action-ro).
        toxicity_classifier: sequence classifier standing in for Perspective API / OpenAI moderation.
    """

    judge: object | None = None
    harmbench: object | None = None
    refusal_classifier: object | None = None
    toxicity_classifier: object | None = None

    @classmethod
    def from_specs(
        cls,
        judge: str | None = None,
        harmbench: str | None = None,
        refusal_classifier: str | None = None,
        toxicity_classifier: str | None = None,
        toxicity_labels: Sequence[str] = ("toxic",),
    ) -> Scorers:
        """Build the scorers from command-line specs (see `scripts/evaluate.py --help`); None = not configured.

        A classifier not named (None) is the offline stand-in (`eval_bridge.scorers.standin`, built on first use;
        none if `$VLM_TRUST_STANDIN=off`); "none" leaves the role empty; anything else is a local classifier.
        The HarmBench classifier reads its own `[INST]` prompt, so a local one gets it raw and answers in one token.
        """
        from eval_bridge.scorers.judges import judge_from_spec

        hb_options = {"raw_prompts": True, "max_new_tokens": 1} if (harmbench or "").startswith("hf:") else {}
        return cls(
            judge=judge_from_spec(judge) if judge else None,
            harmbench=judge_from_spec(harmbench, **(hb_options or {"max_tokens": 1})) if harmbench else None,
            refusal_classifier=_classifier("refusal", refusal_classifier, ("LABEL_0", "LABEL_4")),
            toxicity_classifier=_classifier("toxicity", toxicity_classifier, tuple(toxicity_labels)),
        )

    def for_judge_role(self, role: str):
        return {"default": self.judge, "harmbench": self.harmbench}[role]

    def for_model(self, kind: str):
        return {"refusal": self.refusal_classifier, "toxicity": self.toxicity_classifier}[kind]

    def ids(self) -> dict[str, str | None]:
        """Which scorer filled each role, for provenance."""
        return {
            name: getattr(getattr(self, name), "id", None)
            for name in ("judge", "harmbench", "refusal_classifier", "toxicity_classifier")
        }


def _classifier(kind: str, spec: str | None, positive_labels: tuple[str, ...]):
    """The classifier of role `kind` for a command-line spec: None or "" -> the stand-in, "none" -> None, else a
    local classifier directory or hub id."""
    if not spec:
        from eval_bridge.scorers.standin import default_standin

        return default_standin(kind)
    if spec.strip().lower() == "none":
        return None
    from eval_bridge.scorers.classifier import ClassifierScorer

    return ClassifierScorer(spec, positive_labels)


def _ask_cached(judge, prompts: list[str], cache_dir: str | Path) -> list[str | None]:
    cache = JudgeCache(cache_dir, getattr(judge, "cache_id", judge.id))  # the full identity, when the judge has one
    replies: list[str | None] = [cache.get(p) for p in prompts]
    missing = sorted({p for p, r in zip(prompts, replies, strict=True) if r is None})
    if missing:
        answers = dict(zip(missing, judge.ask(missing), strict=True))
        cache.put_many((p, a.text) for p, a in answers.items() if a.ok)
        replies = [
            r if r is not None else (answers[p].text if answers[p].ok else None)
            for p, r in zip(prompts, replies, strict=True)
        ]
    return replies


def _judge_values(check: Check, judge, samples, responses, cache_dir) -> list[float | None]:
    step = check.judge
    pairs = list(zip(responses, samples, strict=True))
    try:
        replies = [step.shortcut(r, s) if step.shortcut else None for r, s in pairs]
        asked = [i for i, rep in enumerate(replies) if rep is None]
        prompts = [step.prompt(*pairs[i]) for i in asked]
        seconds = [step.second(*pairs[i]) for i in asked] if step.second else []
    except KeyError as err:
        where = next((s.source or s.id for s in samples), "?")
        raise SampleError(
            f"the {check.name} judge prompt needs a field the sample lacks: {err}", source=where
        ) from None
    answers = _ask_cached(judge, prompts + seconds, cache_dir)
    first, second = answers[: len(prompts)], answers[len(prompts) :]
    for k, i in enumerate(asked):
        reply = first[k]
        if reply is not None and step.combine is not None:
            reply = None if second[k] is None else step.combine(reply, second[k])
        replies[i] = reply
    return [None if rep is None else step.parse(rep, s) for rep, s in zip(replies, samples, strict=True)]


def _run_check(check: Check, samples: Sequence[Sample], responses: Sequence[str], scorers: Scorers, cache_dir):
    """(values, how) for one check."""
    if check.rule is not None:
        return [check.rule(r, s) for r, s in zip(responses, samples, strict=True)], f"rule:{check.name}"
    if check.judge is not None:
        judge = scorers.for_judge_role(check.judge_role)
        if judge is not None:
            return _judge_values(check, judge, samples, responses, cache_dir), f"judge:{judge.id}"
        role = "harmbench judge" if check.judge_role == "harmbench" else "judge"
    else:
        classifier = scorers.for_model(check.model)
        if classifier is not None:
            if not responses:  # every generation of the dataset failed: nothing to classify
                hits = []
            elif check.positive_labels:
                positive = set(check.positive_labels)
                hits = [int(label in positive) for label in classifier.top_labels(list(responses))]
            else:
                hits = classifier.predict(list(responses))
            values = [float(h) if len(r) >= check.min_length else 0.0 for h, r in zip(hits, responses, strict=True)]
            return values, f"classifier:{classifier.id}"
        role = f"{check.model} classifier"
    if check.fallback is not None:
        values = [check.fallback(r, s) for r, s in zip(responses, samples, strict=True)]
        return values, f"fallback:{check.name} (no {role} configured; offline rule used)"
    return None, f"unavailable:{check.name} (no {role} configured; term left out)"


def score_dataset(
    checks: Sequence[Check],
    dataset_id: str,
    samples: Sequence[Sample],
    responses: Sequence[str | None],
    scorers: Scorers,
    cache_dir: str | Path,
) -> tuple[DatasetScores, dict[str, str]]:
    """Run every check of a dataset; returns the scores and, per check, how its values were produced.

    A None response (a generation that failed) is never scored: every check's value for it is None, so it is
    left out of the task's terms like a sample whose judge failed.
    """
    scores = DatasetScores(dataset_id, samples, responses)
    present = [i for i, r in enumerate(responses) if r is not None]
    used = {}
    for check in checks:
        values, how = _run_check(
            check, [samples[i] for i in present], [responses[i] for i in present], scorers, cache_dir
        )
        used[check.name] = how
        if values is not None:
            full: list[float | None] = [None] * len(responses)
            for i, v in zip(present, values, strict=True):
                full[i] = v
            scores.values[check.name] = full
    return scores, used
