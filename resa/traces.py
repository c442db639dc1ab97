"""RESA reasoning traces: construction (offline templates, or a teacher model), filters, and SFT rows.

METHODS.md section 5(b). A trace is `fmt.render(steps, answer)` with four titled steps (request, image, risk,
decision). Template mode grounds every step in the record's label and category; teacher mode sends the request,
the image description, the label and category and the format instruction to any judge-like object with
`.ask(prompts) -> list[JudgeResult]` (`eval_bridge.scorers.judges.OpenAIChatJudge` or `HFJudge`).

Filters run in order: format (well formed, lengths within bounds), label consistency (`is_refusal` on the
answer agrees with the label; Step 3 names the category and calls a harmful request harmful, and does not call a
benign one harmful), deduplication. A failing record is retried up to `max_retries` times, then dropped and
counted by reason.

Stand-ins never contain real harmful instructions: the compliance response is a fixed, non-operational
placeholder.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eval_bridge.reasoning import DEFAULT_FORMAT, ReasoningFormat
from eval_bridge.samples import load_image
from eval_bridge.tracks import is_refusal
from resa.data import CATEGORIES, ResaRecord

COMPLIANCE_PLACEHOLDER = "Sure, here are the steps: [withheld]"

# What each category risks (Step 3) and the safe alternative the refusal offers.
_HARM = {
    "violence": (
        "it could help someone hurt people",
        "I can share information on conflict de-escalation or where to find support.",
    ),
    "weapons": (
        "it could help someone build or use a weapon",
        "I can talk about weapon safety laws or the history of arms control.",
    ),
    "cybercrime": ("it could enable hacking or malware", "I can explain how to protect systems and accounts instead."),
    "fraud": ("it could help someone cheat or steal", "I can explain how to spot and report scams instead."),
    "drugs": (
        "it could facilitate illegal drug production or misuse",
        "I can share harm-reduction resources or facts about addiction support.",
    ),
    "hate": ("it targets people for who they are", "I can help write about the topic respectfully instead."),
    "self-harm": (
        "it could put someone's life at risk",
        "If you are struggling, please reach out to a crisis line or someone you trust.",
    ),
    "privacy": ("it could expose or track a private person", "I can explain how to protect personal data instead."),
    "sexual": (
        "it asks for sexual content that could harm people",
        "I can point you to respectful information on relationships and consent.",
    ),
    "misinformation": (
        "it would spread false or misleading claims",
        "I can help you find reliable sources on the topic.",
    ),
    "other": ("it could cause real harm", "I am glad to help with a safe version of the task."),
}
_REFUSALS = (
    "I can't help with that, because {harm}.",
    "I cannot assist with this request, because {harm}.",
    "I won't help with this, since {harm}.",
    "Sorry, but I can't do that: {harm}.",
)
_DECLINE_STEPS = ("Decline; offer a safe alternative.", "Refuse and suggest something safe.")
_BENIGN_STEP4 = ("Answer helpfully and briefly.", "Give the answer directly.", "Answer the question.")


def _lower_first(text: str) -> str:
    text = text.strip().rstrip(".?!")
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _gist(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (' ..."' if len(parts) > words and text.endswith('"') else "")


def _image_step(record: ResaRecord) -> str:
    if not record.images:
        return "No image is attached."
    if record.presentation == "unrelated_image" and record.image_description:
        return f"The image shows {record.image_description}, unrelated to the request."
    if record.image_description:
        return f"The image shows {_gist(record.image_description, _REQUEST_WORDS + 4)}."
    return "An image is attached; no caption is available."


_REQUEST_WORDS = 8  # traces stay short: a 135M model generates them on CPU at every evaluation


def _request_step(record: ResaRecord) -> str:
    if record.presentation == "typographic":
        return "Carry out the instruction written in the image."
    words = _lower_first(record.prompt).split()
    gist = " ".join(words[:_REQUEST_WORDS]) + (" ..." if len(words) > _REQUEST_WORDS else "")
    return f"The user asks: {gist}."


def refusal_answer(category: str | None, rng: random.Random) -> str:
    """A refusal that names why, plus a safe alternative (the strict `is_refusal` detects every wording)."""
    harm, alternative = _HARM[category if category in _HARM else "other"]
    return f"{rng.choice(_REFUSALS).format(harm=harm)} {alternative}"


def vqa_answer(question: str, answer: str, rng: random.Random) -> str:
    """A short sentence that contains the exact easy-VQA answer word."""
    if answer in ("yes", "no"):
        return f"{answer.capitalize()}."
    return rng.choice(("The answer is {a}.", "It is {a}.", "{A}.")).format(a=answer, A=answer.capitalize())


def template_trace(record: ResaRecord, fmt: ReasoningFormat = DEFAULT_FORMAT, *, rng: random.Random) -> str:
    """The template-mode trace of `record` (harmful: reasoned refusal; benign: no risk, reference answer)."""
    if record.harmful:
        category = record.category or "other"
        harm = _HARM.get(category, _HARM["other"])[0]
        steps = [
            f"Step 1 (request): {_request_step(record)}",
            f"Step 2 (image): {_image_step(record)}",
            f"Step 3 (risk): Harmful. Category: {category}; {harm}.",
            f"Step 4 (decision): {rng.choice(_DECLINE_STEPS)}",
        ]
        return fmt.render(steps, refusal_answer(category, rng))
    if not record.reference_answer:
        raise ValueError(f"benign record {record.id!r} has no reference_answer; template mode needs one")
    answer = (
        vqa_answer(record.prompt, record.reference_answer, rng)
        if record.presentation == "vqa"
        else record.reference_answer
    )
    topic = "question about the image" if record.presentation == "vqa" else "everyday request"
    steps = [
        f"Step 1 (request): {_request_step(record)}",
        f"Step 2 (image): {_image_step(record)}",
        f"Step 3 (risk): No risk. Category: none; an ordinary {topic}.",
        f"Step 4 (decision): {rng.choice(_BENIGN_STEP4)}",
    ]
    return fmt.render(steps, answer)


def over_refusal_trace(record: ResaRecord, fmt: ReasoningFormat = DEFAULT_FORMAT, *, rng: random.Random) -> str:
    """A benign record's wrong trace: the reasoning finds a risk that is not there, and the answer refuses."""
    steps = [
        f"Step 1 (request): {_request_step(record)}",
        f"Step 2 (image): {_image_step(record)}",
        "Step 3 (risk): Harmful. Category: other; it could cause real harm.",
        f"Step 4 (decision): {rng.choice(_DECLINE_STEPS)}",
    ]
    return fmt.render(steps, refusal_answer("other", rng))


def compliance_response(
    record: ResaRecord, fmt: ReasoningFormat = DEFAULT_FORMAT, *, rng: random.Random | None = None, wrap: bool = True
) -> str:
    """A harmful record's compliant response: the non-operational placeholder, never real instructions.

    With `wrap` (default) it is a well-formed trace whose reasoning wrongly finds no risk, so the DPO pair differs
    in the reasoning's conclusion and in the answer, not in the format (which SFT already taught); the answer is
    exactly `COMPLIANCE_PLACEHOLDER`. Without `wrap`, the bare placeholder.
    """
    if not wrap:
        return COMPLIANCE_PLACEHOLDER
    steps = [
        f"Step 1 (request): {_request_step(record)}",
        f"Step 2 (image): {_image_step(record)}",
        "Step 3 (risk): No risk. Category: none.",
        "Step 4 (decision): Comply.",
    ]
    return fmt.render(steps, COMPLIANCE_PLACEHOLDER)


# ---------------------------------------------------------------- builders


class TemplateTraceBuilder:
    """Template mode; attempt k of a record uses its own seeded generator, so a retry can change the wording."""

    def __init__(self, fmt: ReasoningFormat = DEFAULT_FORMAT, *, seed: int = 0):
        self.fmt, self.seed = fmt, seed

    def build(self, records: Sequence[ResaRecord], attempt: int, feedback: Sequence[str | None]) -> list[str | None]:
        """One trace per record (None on failure)."""
        return [template_trace(r, self.fmt, rng=random.Random(f"{self.seed}:{r.id}:{attempt}")) for r in records]


TEACHER_INSTRUCTION = """You write a short safety reasoning trace for a vision-language assistant.
Request: {prompt}
Image: {image}
Label: {label}
Category: {category}

Reason in four short steps, then answer. Use exactly this format and nothing else:
{open_r}
Step 1 (request): what is asked, and for what purpose.
Step 2 (image): what the image shows that bears on the request.
Step 3 (risk): {risk_rule}
Step 4 (decision): answer, answer safely, or decline, and why.
{close_r}
{open_a}
{answer_rule}
{close_a}
Keep the reasoning under 70 words."""


class TeacherTraceBuilder:
    """Teacher mode: a judge-like model (`.ask(prompts) -> list[JudgeResult]`) writes the traces.

    The teacher sees the request, the image description (or "no image"), the label and category, and the format
    instruction; the reply's trace is cut out of any surrounding chatter. On a retry, the prompt says why the
    previous reply was rejected.
    """

    def __init__(self, judge, fmt: ReasoningFormat = DEFAULT_FORMAT, *, instruction: str = TEACHER_INSTRUCTION):
        self.judge, self.fmt, self.instruction = judge, fmt, instruction

    def prompt(self, record: ResaRecord, feedback: str | None = None) -> str:
        """The instruction sent to the teacher for `record`."""
        if record.harmful:
            risk_rule = f"say the request is harmful and name its category ({record.category or 'other'})."
            answer_rule = 'A brief refusal that starts with "I can\'t help with that" and offers a safe alternative.'
        else:
            risk_rule = "say there is no risk (Category: none)."
            answer_rule = "The helpful answer" + (
                f" (correct answer: {record.reference_answer})." if record.reference_answer else "."
            )
        image = record.image_description or ("an attached image (no caption)" if record.images else "no image")
        text = self.instruction.format(
            prompt=record.prompt,
            image=image,
            label="harmful" if record.harmful else "benign",
            category=record.category or "none",
            risk_rule=risk_rule,
            answer_rule=answer_rule,
            open_r=self.fmt.reasoning_open,
            close_r=self.fmt.reasoning_close,
            open_a=self.fmt.answer_open,
            close_a=self.fmt.answer_close,
        )
        if feedback:
            text += f"\nYour previous reply was rejected ({feedback}); follow the format and the label exactly."
        return text

    def extract(self, reply: str) -> str:
        """The trace inside a reply: from the first reasoning tag to the last answer tag (whole reply if absent)."""
        start, end = reply.find(self.fmt.reasoning_open), reply.rfind(self.fmt.answer_close)
        if start < 0 or end < 0:
            return reply.strip()
        return reply[start : end + len(self.fmt.answer_close)].strip()

    def build(self, records: Sequence[ResaRecord], attempt: int, feedback: Sequence[str | None]) -> list[str | None]:
        """One trace per record; None where the teacher failed (its error counts as a `teacher_error` failure)."""
        results = self.judge.ask([self.prompt(r, f) for r, f in zip(records, feedback, strict=True)])
        return [self.extract(res.text) if res.ok else None for res in results]


# ---------------------------------------------------------------- filters


@dataclass(frozen=True)
class TraceFilter:
    """Bounds of the format filter (words, counted by whitespace)."""

    fmt: ReasoningFormat = DEFAULT_FORMAT
    min_reasoning_words: int = 12
    max_reasoning_words: int = 120
    max_answer_words: int = 100

    def format_problem(self, trace: str) -> str | None:
        """None if well formed and within bounds, else what is wrong."""
        parsed = self.fmt.parse(trace)
        if not parsed.well_formed:
            return "not well formed"
        n_reason, n_answer = len(parsed.reasoning.split()), len(parsed.answer.split())
        if not self.min_reasoning_words <= n_reason <= self.max_reasoning_words:
            return f"reasoning has {n_reason} words"
        if n_answer > self.max_answer_words:
            return f"answer has {n_answer} words"
        return None

    def consistency_problem(self, record: ResaRecord, trace: str) -> str | None:
        """None if the answer and Step 3 agree with the label (and, for harmful records, the category)."""
        parsed = self.fmt.parse(trace)
        refused = is_refusal(parsed.answer)
        if record.harmful and not refused:
            return "harmful request but the answer does not refuse"
        if not record.harmful and refused:
            return "benign request but the answer refuses"
        risk = self.fmt.steps(parsed.reasoning).get("risk")
        if risk is None:
            return "no Step 3 (risk)"
        says_harmful = bool(re.search(r"\bharmful\b", risk, re.I)) and not re.search(
            r"\b(?:not|no longer|isn't|is not)\s+harmful\b|\bno risk\b|\bharmless\b", risk, re.I
        )
        if record.harmful:
            if not says_harmful:
                return "Step 3 does not say the request is harmful"
            category = record.category or "other"
            if category != "other" and not _names_category(risk, category):
                return f"Step 3 does not name the category {category!r}"
        elif says_harmful:
            return "Step 3 calls a benign request harmful"
        return None


_CATEGORY_SYNONYMS = {
    "violence": ("violen",),
    "weapons": ("weapon",),
    "cybercrime": ("cyber", "hacking", "malware"),
    "fraud": ("fraud", "scam"),
    "drugs": ("drug",),
    "hate": ("hate", "hateful", "discriminat"),
    "self-harm": ("self-harm", "self harm", "suicid"),
    "privacy": ("privacy", "personal data"),
    "sexual": ("sexual",),
    "misinformation": ("misinformation", "disinformation"),
}


def _names_category(text: str, category: str) -> bool:
    text = text.lower()
    return category in text or any(s in text for s in _CATEGORY_SYNONYMS.get(category, ()))


def _dedup_key(record: ResaRecord, trace: str) -> tuple:
    norm = " ".join(trace.lower().split())
    return (" ".join(record.prompt.lower().split()), tuple(record.images), norm)


def build_traces(
    records: Sequence[ResaRecord],
    builder,
    *,
    max_retries: int = 2,
    trace_filter: TraceFilter | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, str], dict]:
    """Build, filter, retry and deduplicate traces for `records`.

    Args:
        builder: `TemplateTraceBuilder`, `TeacherTraceBuilder`, or any object with
            `.build(records, attempt, feedback) -> list[str | None]`.
        max_retries: extra attempts for a record that fails a filter; then it is dropped.
    Returns:
        (traces by record id, stats). stats: {"kept", "dropped", "dropped_by_reason": {reason: n},
        "failures_by_reason": {reason: n over all attempts}, "retried": records that needed a retry}.
        Reasons: "teacher_error", "format", "consistency", "duplicate".
    """
    checks = trace_filter or TraceFilter(fmt=getattr(builder, "fmt", DEFAULT_FORMAT))
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("record ids must be unique")
    traces: dict[str, str] = {}
    seen: set[tuple] = set()
    failures, last_reason = Counter(), {}
    feedback: dict[str, str | None] = {r.id: None for r in records}
    pending, retried = list(records), set()
    for attempt in range(max_retries + 1):
        if not pending:
            break
        outputs = builder.build(pending, attempt, [feedback[r.id] for r in pending])
        still = []
        for record, trace in zip(pending, outputs, strict=True):
            reason, detail = _check(record, trace, checks, seen)
            if reason is None:
                traces[record.id] = trace
                seen.add(_dedup_key(record, trace))
                continue
            failures[reason] += 1
            last_reason[record.id], feedback[record.id] = reason, detail
            still.append(record)
            if log:
                log(f"trace for {record.id} failed ({reason}: {detail}), attempt {attempt + 1}")
        if attempt < max_retries:
            retried.update(r.id for r in still)
        pending = still
    dropped = Counter(last_reason[r.id] for r in pending)
    stats = {
        "kept": len(traces),
        "dropped": len(pending),
        "dropped_by_reason": dict(dropped),
        "failures_by_reason": dict(failures),
        "retried": len(retried),
    }
    return {r.id: traces[r.id] for r in records if r.id in traces}, stats


def _check(record: ResaRecord, trace: str | None, checks: TraceFilter, seen: set) -> tuple[str | None, str | None]:
    if trace is None:
        return "teacher_error", "the teacher returned no reply"
    problem = checks.format_problem(trace)
    if problem:
        return "format", problem
    problem = checks.consistency_problem(record, trace)
    if problem:
        return "consistency", problem
    if _dedup_key(record, trace) in seen:
        return "duplicate", "same prompt, images and trace as a kept record"
    return None, None


# ---------------------------------------------------------------- SFT rows


def user_message(record: ResaRecord) -> dict:
    """The user turn in TRL's structured multimodal form: one image placeholder per image, then the text."""
    return {
        "role": "user",
        "content": [*({"type": "image"} for _ in record.images), {"type": "text", "text": record.prompt}],
    }


def sft_rows(
    records: Sequence[ResaRecord], traces: dict[str, str], fmt: ReasoningFormat = DEFAULT_FORMAT
) -> list[dict]:
    """Conversational rows for TRL's `SFTTrainer` on a VLM (records without a kept trace are skipped).

    Each row: {"messages": [user turn with image placeholders + text, assistant turn with the trace],
    "images": [PIL images]} (an empty list for text-only records; TRL's vision collator accepts batches that mix
    both, and passes `images=None` when a whole batch has none).
    """
    rows = []
    for record in records:
        trace = traces.get(record.id)
        if trace is None:
            continue
        if not fmt.parse(trace).well_formed:
            raise ValueError(f"trace of {record.id!r} is not well formed; filter traces with build_traces first")
        rows.append(
            {
                "messages": [user_message(record), {"role": "assistant", "content": [{"type": "text", "text": trace}]}],
                "images": [load_image(p) for p in record.images],
            }
        )
    return rows


__all__ = [
    "CATEGORIES",
    "COMPLIANCE_PLACEHOLDER",
    "TeacherTraceBuilder",
    "TemplateTraceBuilder",
    "TraceFilter",
    "build_traces",
    "compliance_response",
    "over_refusal_trace",
    "refusal_answer",
    "sft_rows",
    "template_trace",
    "user_message",
]
