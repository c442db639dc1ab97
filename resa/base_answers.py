"""Benign answers that are the base model's own (issue: RESA's SFT must not teach that text requests get canned text).

For each benign text request (and each safe borderline request), the base model answers the plain request
greedily; an answer is kept as the record's reference answer when it does not refuse and its length is within
bounds (cut back to its last full sentence when generation ran out of tokens). Requests whose answer fails the
filter keep their hand-written answer, or are dropped when they have none. Answers are cached by the base model's
fingerprint and the generation settings, so a rerun of the recipe costs nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval_bridge.cache import stable_hash
from eval_bridge.files import write_atomically
from eval_bridge.tracks import is_refusal
from mitigation.data.offline import OfflineRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnswerFilter:
    """What a base-model answer must be to become a reference answer.

    An answer longer than `max_words` is cut back to its last full sentence within `max_words` (a reference answer
    sits after four reasoning steps, and the whole response must fit the evaluations' token budget: long answers
    end in cut-off responses that fail the format)."""

    min_words: int = 3
    max_words: int = 40

    def accept(self, answer: str, *, truncated: bool) -> str | None:
        """The answer to keep (cut at its last full sentence if `truncated` or too long), or None if not usable."""
        text = answer.strip()
        ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
        if truncated:
            text = text[: ends[-1]] if ends else ""
        if len(text.split()) > self.max_words:
            fitting = [e for e in ends if len(text[:e].split()) <= self.max_words]
            text = text[: fitting[-1]] if fitting else ""
        words = len(text.split())
        if not text or is_refusal(text) or not self.min_words <= words <= self.max_words:
            return None
        return text


def base_model_answers(
    base: str,
    records: Sequence[OfflineRecord],
    *,
    cache_dir: str | Path,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    answer_filter: AnswerFilter = AnswerFilter(),
) -> dict[str, str | None]:
    """The base model's filtered greedy answer to each record's plain request: {record id: answer or None}."""
    from eval_bridge.models.adapter import VLM, GenerationSettings
    from eval_bridge.samples import Sample

    vlm = VLM.load(base)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)
    key = stable_hash({"model": vlm.cache_identity(), "settings": settings.cache_key()})
    path = Path(cache_dir) / "base_answers" / f"{key}.json"
    cached: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}
    todo = list({r.prompt: r for r in records if r.prompt not in cached}.values())  # one answer per prompt
    if todo:
        # The plain request, without any image the record carries: answers are cached by prompt text.
        samples = [Sample(id=r.id, prompt=r.prompt, images=()) for r in todo]
        for record, gen in zip(todo, vlm.generate(samples, settings), strict=True):
            if gen.error is None:
                cached[record.prompt] = {"text": gen.text, "tokens": len(gen.token_ids or ())}
        write_atomically(path, lambda tmp: tmp.write_text(json.dumps(cached, indent=1, sort_keys=True)))
    out = {}
    for record in records:
        got = cached.get(record.prompt)
        truncated = got is not None and got["tokens"] >= max_new_tokens
        out[record.id] = None if got is None else answer_filter.accept(got["text"], truncated=truncated)
    return out


def with_base_answers(records: Sequence[OfflineRecord], answers: dict[str, str | None]) -> list[OfflineRecord]:
    """`records` with each answered benign record's reference answer replaced by the base model's; records with no
    usable answer keep their own, and are dropped when they have none. Logs how many of each."""
    out, kept, fallback, dropped = [], 0, 0, 0
    for record in records:
        answer = answers.get(record.id)
        if record.harmful or record.id not in answers:
            out.append(record)
        elif answer is not None:
            out.append(dataclasses.replace(record, reference_answer=answer))
            kept += 1
        elif record.reference_answer:
            out.append(record)
            fallback += 1
        else:
            dropped += 1
    log.info(
        "benign answers: %d from the base model, %d hand-written (its answer refused or was out of bounds), "
        "%d requests dropped (no usable answer)",
        kept,
        fallback,
        dropped,
    )
    return out
