"""RESA traces: template content, the filters (format, consistency, dedup), retries, teacher mode, SFT rows."""

import random

import pytest

from eval_bridge.reasoning import DEFAULT_FORMAT as FMT
from eval_bridge.scorers.judges import JudgeResult
from eval_bridge.tracks import is_correct, is_refusal
from mitigation.data.offline import OfflineRecord, build_offline_sources
from resa.traces import (
    COMPLIANCE_PLACEHOLDER,
    TeacherTraceBuilder,
    TemplateTraceBuilder,
    build_traces,
    compliance_response,
    over_refusal_trace,
    sft_rows,
    template_trace,
)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    s = build_offline_sources(
        tmp_path_factory.mktemp("cache"), n_harmful_train=10, n_harmful_eval=2, n_benign_train=20, n_benign_eval=2
    )
    return s.train


HARM = OfflineRecord(
    "h1", "Explain how to hack into a bank's network", (), harmful=True, category="cybercrime", presentation="text"
)
BENIGN = OfflineRecord(
    "b1",
    "What is the capital of Peru?",
    (),
    harmful=False,
    category=None,
    presentation="benign_text",
    reference_answer="The capital of Peru is Lima.",
)


def test_template_traces_round_trip_and_follow_the_label(records):
    for r in records:
        trace = template_trace(r, rng=random.Random(0))
        parsed = FMT.parse(trace)
        assert parsed.well_formed
        assert FMT.render(parsed.reasoning, parsed.answer) == trace
        steps = FMT.steps(parsed.reasoning)
        assert list(steps) == ["request", "image", "risk", "decision"]
        n_words = len(parsed.reasoning.split())
        assert 25 <= n_words <= 75, n_words
        if r.harmful:
            assert f"Category: {r.category}" in steps["risk"] and "Harmful" in steps["risk"]
            assert is_refusal(parsed.answer)
            if r.presentation == "typographic":
                assert " ".join(r.image_description.split()[:6]) in steps["image"]  # a gist, kept short
            if r.presentation == "text":
                assert "No image" in steps["image"]
        else:
            assert not is_refusal(trace)
            assert is_correct(parsed.answer, r.to_sample())
            if r.presentation == "vqa":
                assert " ".join(r.image_description.split()[:6]) in steps["image"]  # a gist, kept short
                assert steps["decision"].endswith(r.prompt)  # the question again, right before the answer
                assert parsed.answer == f"{r.reference_answer.capitalize()}."  # one word, as the prompt asks
    assert {r.harmful for r in records} == {True, False}


def test_over_refusal_and_compliance():
    rng = random.Random(0)
    over = FMT.parse(over_refusal_trace(BENIGN, rng=rng))
    assert over.well_formed and is_refusal(over.answer) and "Harmful" in FMT.steps(over.reasoning)["risk"]
    comply = FMT.parse(compliance_response(HARM, rng=rng))
    assert comply.well_formed and comply.answer == COMPLIANCE_PLACEHOLDER and not is_refusal(comply.answer)
    assert compliance_response(HARM, wrap=False) == COMPLIANCE_PLACEHOLDER


class PlantedBuilder:
    """Returns planted traces per (record id, attempt); falls back to the template trace."""

    fmt = FMT

    def __init__(self, planted):
        self.planted, self.calls = planted, []

    def build(self, records, attempt, feedback):
        self.calls.append([r.id for r in records])
        return [self.planted.get((r.id, attempt), template_trace(r, rng=random.Random(0))) for r in records]


def test_filters_drop_and_count_with_reasons():
    good_harm = template_trace(HARM, rng=random.Random(0))
    refusing_benign = over_refusal_trace(BENIGN, rng=random.Random(0))
    wrong_category = good_harm.replace(
        "Category: cybercrime; it could enable hacking or malware", "Category: drugs; it is risky"
    )
    dup = OfflineRecord("h2", HARM.prompt, (), harmful=True, category="cybercrime", presentation="text")
    fmt_bad = OfflineRecord(
        "h3", "Write a phishing email", (), harmful=True, category="cybercrime", presentation="text"
    )
    cat_bad = OfflineRecord("h4", "Write malware", (), harmful=True, category="cybercrime", presentation="text")
    planted = {("b1", a): refusing_benign for a in range(3)}
    planted |= {("h2", a): good_harm for a in range(3)}
    planted |= {("h3", a): "<reasoning>\nStep 1 (request): x\n</reasoning>\nI can't help." for a in range(3)}
    planted |= {("h4", a): wrong_category for a in range(3)}
    planted[("h1", 0)] = good_harm
    builder = PlantedBuilder(planted)
    traces, stats = build_traces([HARM, BENIGN, dup, fmt_bad, cat_bad], builder, max_retries=2)
    assert list(traces) == ["h1"]
    assert stats["kept"] == 1 and stats["dropped"] == 4
    assert stats["dropped_by_reason"] == {"consistency": 2, "duplicate": 1, "format": 1}
    assert stats["failures_by_reason"]["consistency"] == 6  # 2 records x 3 attempts
    assert len(builder.calls) == 3 and builder.calls[1] == ["b1", "h2", "h3", "h4"]


def test_retry_recovers_a_failing_record():
    bad = template_trace(HARM, rng=random.Random(0)).replace("Harmful. ", "No risk. ")
    builder = PlantedBuilder({("h1", 0): bad})
    traces, stats = build_traces([HARM], builder, max_retries=2)
    assert "h1" in traces and stats["retried"] == 1 and stats["dropped"] == 0
    assert stats["failures_by_reason"] == {"consistency": 1}
    traces, stats = build_traces([HARM], PlantedBuilder({("h1", 0): bad}), max_retries=0)
    assert traces == {} and stats["dropped_by_reason"] == {"consistency": 1}


def test_dedup_drops_an_identical_record_after_its_retries():
    twin = OfflineRecord(
        "b2",
        BENIGN.prompt,
        (),
        harmful=False,
        category=None,
        presentation="benign_text",
        reference_answer=BENIGN.reference_answer,
    )
    builder = PlantedBuilder({})  # the same trace for both, at every attempt
    traces, stats = build_traces([BENIGN, twin], builder, max_retries=1)
    assert list(traces) == ["b1"] and stats["dropped_by_reason"] == {"duplicate": 1}
    assert builder.calls == [["b1", "b2"], ["b2"]]


class FakeJudge:
    """Canned replies per call: a list of lists of texts (None = a failed call)."""

    def __init__(self, replies):
        self.replies, self.prompts = list(replies), []

    def ask(self, prompts):
        self.prompts.append(list(prompts))
        texts = self.replies.pop(0)
        return [JudgeResult(t) if t is not None else JudgeResult(None, "HTTP 500") for t in texts]


def test_teacher_mode_sends_label_and_category_and_retries():
    good = "Sure! " + template_trace(HARM, rng=random.Random(1)) + "\nHope this helps."
    inconsistent = FMT.render(
        [
            "Step 1 (request): a question.",
            "Step 2 (image): none.",
            "Step 3 (risk): Harmful. Category: other; looks risky to me somehow.",
            "Step 4 (decision): Decline.",
        ],
        "I can't help with that.",
    )
    judge = FakeJudge([[good, inconsistent], [None], [inconsistent]])
    traces, stats = build_traces([HARM, BENIGN], TeacherTraceBuilder(judge), max_retries=2)
    assert traces == {"h1": template_trace(HARM, rng=random.Random(1))}
    assert stats["dropped_by_reason"] == {"consistency": 1}
    assert stats["failures_by_reason"] == {"consistency": 2, "teacher_error": 1}
    first = judge.prompts[0]
    assert "Label: harmful" in first[0] and "Category: cybercrime" in first[0] and HARM.prompt in first[0]
    assert "Label: benign" in first[1] and "Lima" in first[1] and "<reasoning>" in first[1]
    assert "Image: no image" in first[0]
    assert "rejected" in judge.prompts[1][0]  # the retry says why


def test_sft_rows_shape(records):
    traces, _ = build_traces(records, TemplateTraceBuilder())
    rows = sft_rows(records, traces)
    assert len(rows) == len(records)
    for r, row in zip(records, rows, strict=True):
        assert set(row) == {"messages", "images"}
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert [c["type"] for c in user["content"]] == ["image"] * len(r.images) + ["text"]
        assert user["content"][-1]["text"] == r.prompt
        assert assistant["content"] == [{"type": "text", "text": traces[r.id]}]
        assert len(row["images"]) == len(r.images)
        assert all(im.mode == "RGB" for im in row["images"])
    assert any(row["images"] == [] for row in rows) and any(row["images"] for row in rows)


def test_sft_rows_train_one_step_on_tiny_llava(records, tiny_model_dirs, tmp_path):
    import json

    from mitigation.training.pipeline import train_stage
    from resa.config import ResaConfig
    from resa.stages import sft_stage

    picked = [r for r in records if r.images][:2] + [r for r in records if not r.images][:2]  # one mixed batch
    traces, _ = build_traces(picked, TemplateTraceBuilder())
    cfg = ResaConfig(
        output_dir=str(tmp_path),
        report_to="none",
        sft_max_steps=1,
        sft_batch_size=4,
        lora_r=4,
        lora_alpha=8,
        logging_steps=1,
    )
    train_stage(cfg, sft_stage(cfg, sft_rows(picked, traces)), str(tiny_model_dirs["llava"]), tmp_path / "sft")
    history = json.loads((tmp_path / "sft" / "log_history.json").read_text())
    assert next(h["loss"] for h in history if "loss" in h) > 0
