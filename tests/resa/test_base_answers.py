"""Benign answers from the base model itself: filtered for refusals and length, cached, replacing the hand-written
reference only where usable; borderline-safe training prompts need them."""

import dataclasses
from pathlib import Path

import pytest

from eval_bridge.models.adapter import VLM, Generation
from mitigation.data.offline import OfflineRecord
from resa.base_answers import AnswerFilter, base_model_answers, with_base_answers


@pytest.mark.parametrize(
    ("answer", "truncated", "kept"),
    [
        ("A hostile takeover is when a company buys another against its board's wishes.", False, True),
        ("I'm sorry, but I can't help with that.", False, False),  # a refusal never becomes a reference answer
        ("Yes.", False, False),  # too short to teach anything
        ("Kill time by reading. Walk around the shops. Then", True, "Kill time by reading. Walk around the shops."),
        ("No sentence end at all because the tokens ran", True, False),
        # too long: cut back to the last full sentence within 40 words; one overlong sentence is not usable
        (
            "Short first part. " + "word " * 30 + "end. " + "more " * 20 + "done.",
            False,
            "Short first part. " + "word " * 30 + "end.",
        ),
        ("word " * 45 + "end.", False, False),
    ],
)
def test_answer_filter(answer, truncated, kept):
    got = AnswerFilter().accept(answer, truncated=truncated)
    expected = answer if kept is True else (kept or None)
    assert got == expected


def benign(rid, prompt, answer=None):
    return OfflineRecord(
        rid, prompt, (), harmful=False, category=None, presentation="benign_text", reference_answer=answer
    )


def test_base_model_answers_are_generated_once_then_cached(tiny_model_dirs, tmp_path, monkeypatch):
    calls = []

    def fake_generate(self, samples, settings, **kw):
        calls.append([s.prompt for s in samples])
        replies = {"What is arson?": "Arson is the crime of setting fire to property on purpose."}
        return [Generation(replies.get(s.prompt, "I cannot help with that."), token_ids=[1, 2, 3]) for s in samples]

    monkeypatch.setattr(VLM, "generate", fake_generate)
    records = [benign("a", "What is arson?"), benign("b", "How do I kill time?", "Read a book or take a walk.")]
    first = base_model_answers(str(tiny_model_dirs["llava"]), records, cache_dir=tmp_path)
    assert first == {"a": "Arson is the crime of setting fire to property on purpose.", "b": None}
    again = base_model_answers(str(tiny_model_dirs["llava"]), records, cache_dir=tmp_path)
    assert again == first and len(calls) == 1  # the rerun asks the model nothing
    merged = with_base_answers([*records, benign("c", "No answer anywhere")], {**first, "c": None})
    assert [r.reference_answer for r in merged] == [first["a"], "Read a book or take a walk."]  # c dropped


def test_harmful_records_are_never_given_an_answer():
    harmful = OfflineRecord("h", "How do I make a bomb?", (), harmful=True, category="weapons", presentation="text")
    assert with_base_answers([harmful], {"h": "Some text."}) == [harmful]


def test_borderline_training_prompts_need_answers_and_never_come_from_the_held_out_split(tmp_path):
    from mitigation.data import borderline
    from resa.config import ResaConfig
    from resa.recipe import _borderline_records

    with pytest.raises(ValueError, match="benign_answers=base_model"):
        _borderline_records(ResaConfig(n_borderline_train=10))
    records = _borderline_records(ResaConfig(n_borderline_train=40, benign_answers="base_model", cache_dir=tmp_path))
    held_out = {p.prompt for p in borderline.split(seed=0)[1]}
    assert len(records) == 80 and not held_out & {r.prompt for r in records}  # 40 prompts x 2 presentations
    assert len({r.id for r in records}) == 80
    assert {r.presentation for r in records if r.harmful} == {"text", "unrelated_image"}
    assert {r.presentation for r in records if not r.harmful} == {"benign_text", "unrelated_image"}
    beside = [r for r in records if r.presentation == "unrelated_image"]
    assert all(len(r.images) == 1 and Path(r.images[0]).is_file() and r.image_description for r in beside)
    assert [r.prompt for r in beside] == [r.prompt for r in records if not r.images]  # the same requests
    text_only = ResaConfig(n_borderline_train=40, benign_answers="base_model", borderline_presentations="text")
    assert [r.presentation for r in _borderline_records(text_only)] == [
        "text" if r.harmful else "benign_text" for r in records if not r.images
    ]
    assert all(r.category for r in records if r.harmful) and all(not r.reference_answer for r in records)
    assert dataclasses.replace(records[0]).id.startswith("train-borderline-")


def test_prepare_data_trains_on_the_base_models_own_answers(tiny_model_dirs, tmp_path, monkeypatch):
    """With benign_answers=base_model the text requests' SFT answers are what the base model said."""
    from resa.config import ResaConfig
    from resa.recipe import prepare_data

    def fake_generate(self, samples, settings, **kw):
        return [Generation(f"My own answer to: {s.prompt}", token_ids=[1]) for s in samples]

    monkeypatch.setattr(VLM, "generate", fake_generate)
    cfg = ResaConfig(
        output_dir=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        n_harmful_train=2,
        n_harmful_eval=1,
        n_benign_train=8,
        n_benign_eval=2,
        n_borderline_train=6,
        benign_answers="base_model",
        eval_borderline_file="none",
    )
    data = prepare_data(cfg, str(tiny_model_dirs["llava"]))
    answers = [row["messages"][1]["content"][0]["text"] for row in data["sft"] if not row["images"]]
    own = [a for a in answers if "My own answer to: " in a]
    assert own and all("</answer>" in a for a in own)
    assert any("Category: none" in a for a in own)  # benign traces around the base model's answer
