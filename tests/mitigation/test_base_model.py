"""The embedded default base model: assembly, chat template, alignment phases, cache marker (tier 1, with a tiny
Llama standing in for SmolLM2), and the real build's easy-VQA accuracy (tier 2, `-m slow`)."""

import json

import pytest
import torch
from PIL import Image

from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.models.tiny import build_tiny_lm
from eval_bridge.samples import Sample
from mitigation import base_model
from mitigation.base_model import MARKER, assemble_vlm, ensure_base_model, is_built, prepare_tokenizer
from mitigation.base_model_train import (
    LORA_TARGETS,
    QA,
    image_tokens,
    initial_concept_table,
    train_vision,
    tune_concept_tokens,
)

TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


@pytest.fixture(scope="module")
def tiny_lm():
    lm, tokenizer = build_tiny_lm(seed=0)
    return lm, prepare_tokenizer(tokenizer)


@pytest.fixture(scope="module")
def tiny_base(tiny_lm, tmp_path_factory):
    """A tiny stand-in of the default model, saved: (directory, in-memory model, processor, the LM it wraps)."""
    lm, tokenizer = tiny_lm
    model, processor = assemble_vlm(lm, tokenizer, seed=0, vision=TINY_VISION)
    path = tmp_path_factory.mktemp("tiny-base")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path, model, processor, lm


def test_assembly_keeps_the_language_model_weights_unchanged(tiny_base):
    _, model, processor, lm = tiny_base
    lm_state = lm.model.state_dict()
    for name, tensor in model.model.language_model.state_dict().items():
        if name == "embed_tokens.weight":
            assert torch.equal(tensor[: lm_state[name].shape[0]], lm_state[name])
        else:
            assert torch.equal(tensor, lm_state[name]), name
    assert model.get_input_embeddings().weight.shape[0] == len(processor.tokenizer)
    assert model.lm_head.weight.shape[0] == len(processor.tokenizer)  # the output head follows the resize


def test_a_64px_image_becomes_four_image_tokens(tiny_base):
    _, model, processor, _ = tiny_base
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape?"}]}],
        add_generation_prompt=True,
    )
    inputs = processor(text=[text], images=[Image.new("RGB", (64, 64), "red")], return_tensors="pt")
    assert (inputs["input_ids"] == model.config.image_token_id).sum().item() == 4
    assert inputs["pixel_values"].shape == (1, 3, 64, 64)
    assert text.endswith("<|im_start|>assistant\n")


def test_chat_template_masks_exactly_the_assistant_turns(tiny_base):
    _, _, processor, _ = tiny_base
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Is it red?"}]},
        {"role": "assistant", "content": "Yes"},
        {"role": "user", "content": "And the shape?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Circle"}]},
    ]
    out = processor.tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    assistant_text = processor.tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert assistant_text == "Yes<|im_end|>Circle<|im_end|>"
    assert processor.tokenizer.decode(ids).startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_pad_token_is_not_the_end_of_turn_token(tiny_base):
    tokenizer = tiny_base[2].tokenizer
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_reload_and_batched_generation_equals_one_by_one(tiny_base, mixed_samples):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = tiny_base[0]
    assert type(AutoModelForImageTextToText.from_pretrained(path)).__name__ == "LlavaForConditionalGeneration"
    assert AutoProcessor.from_pretrained(path).tokenizer.chat_template == tiny_base[2].tokenizer.chat_template
    vlm = VLM.load(str(path))
    settings = GenerationSettings(max_new_tokens=6, batch_size=8)
    batched = vlm.generate(mixed_samples, settings)
    alone = [vlm.generate([s], settings)[0] for s in mixed_samples]
    assert [g.token_ids for g in batched] == [g.token_ids for g in alone]


def test_concept_tokens_start_at_the_word_embeddings_and_learn(tiny_lm):
    lm, tokenizer = tiny_lm
    embed = lm.get_input_embeddings().weight
    table = initial_concept_table(embed, tokenizer)
    red = tokenizer(" red", add_special_tokens=False).input_ids[0]
    assert torch.equal(image_tokens(table, "red", "circle")[0], embed[red])
    qa = [QA("is there a red shape?", "yes", "red", "circle"), QA("what shape is this?", "circle", "red", "circle")]
    before = [p.clone() for p in lm.parameters()]
    trained, same = tune_concept_tokens(
        lm, tokenizer, qa * 4, steps=3, batch_size=4, lr=0.05, seed=0, log=lambda _: None
    )
    assert not torch.equal(trained, table) and same is lm
    assert all(torch.equal(a, b) for a, b in zip(before, lm.parameters(), strict=True))  # no LoRA: the LM stays frozen


def test_the_lora_is_merged_into_exactly_the_attention_projections_as_a_low_rank_change():
    lm, tokenizer = build_tiny_lm(seed=0)  # its own copy: the merge changes the LM in place
    prepare_tokenizer(tokenizer)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    qa = [QA("is there a red shape?", "yes", "red", "circle"), QA("is there a blue shape?", "no", "red", "circle")]
    _, merged = tune_concept_tokens(
        lm,
        tokenizer,
        qa * 4,
        steps=4,
        batch_size=4,
        lr=0.05,
        seed=0,
        lora_rank=2,
        lora_lr=0.02,
        replay=2,
        log=lambda _: None,
    )
    assert type(merged) is type(lm) and not any("lora" in k for k in merged.state_dict())  # a plain model again
    after = merged.state_dict()
    assert after.keys() == before.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(tuple(f"{t}.weight" for t in LORA_TARGETS)) for k in changed), changed
    for k in changed:
        assert torch.linalg.matrix_rank(after[k] - before[k], atol=1e-6) <= 2, k


def test_vision_phase_trains_tower_and_projector_toward_the_concept_tokens(tiny_lm):
    pytest.importorskip("easy_vqa", reason="needs the easy-vqa asset package")
    lm, tokenizer = tiny_lm
    model, processor = assemble_vlm(lm, tokenizer, seed=0, vision=TINY_VISION)
    table = initial_concept_table(lm.get_input_embeddings().weight, tokenizer)
    tower_before = next(model.model.vision_tower.parameters()).clone()
    stats = train_vision(
        model, processor.image_processor, table, epochs=3, batch_size=64, lr=3e-3, seed=0, log=lambda _: None
    )
    assert not torch.equal(tower_before, next(model.model.vision_tower.parameters()))
    assert stats["color_accuracy"] > 0.25  # 8 colours: chance is 1/8


def test_image_features_match_what_llava_feeds_the_language_model(tiny_base):
    from mitigation.base_model_train import _image_features

    model = tiny_base[1]
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = _image_features(model, pixels)[1]
        llava = model.model.get_image_features(pixel_values=pixels)
    llava = llava.pooler_output if hasattr(llava, "pooler_output") else llava
    llava = torch.stack(list(llava)) if isinstance(llava, list | tuple) else llava
    assert torch.allclose(ours, llava.reshape(ours.shape), atol=1e-5)


def _fake_build(calls):
    def build(out_dir, **kwargs):
        calls.append(out_dir)
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        (out_dir / MARKER).write_text(json.dumps({"recipe": "fake"}))
        return out_dir

    return build


def test_ensure_base_model_builds_once_and_then_reuses_the_cache(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(base_model, "build_base_model", _fake_build(calls))
    out = tmp_path / "base"
    assert ensure_base_model(out, log=lambda _: None) == out and is_built(out)
    assert ensure_base_model(out, log=lambda _: None) == out
    assert len(calls) == 1
    assert not list(tmp_path.glob("*.partial-*"))


def test_ensure_base_model_replaces_an_unfinished_build(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(base_model, "build_base_model", _fake_build(calls))
    out = tmp_path / "base"
    out.mkdir()
    (out / "model.safetensors").write_text("half-written")  # no marker: an interrupted build
    ensure_base_model(out, log=lambda _: None)
    assert len(calls) == 1 and not (out / "model.safetensors").exists() and is_built(out)


def test_a_failed_build_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    def broken(out_dir, **kwargs):
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("killed")

    monkeypatch.setattr(base_model, "build_base_model", broken)
    with pytest.raises(RuntimeError):
        ensure_base_model(tmp_path / "base", log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_the_cache_directory_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(base_model.BASE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert base_model.default_base_dir() == tmp_path / "elsewhere"


def test_easy_vqa_samples_are_asked_like_the_mini_suite():
    pytest.importorskip("easy_vqa", reason="needs the easy-vqa asset package")
    samples = base_model.easy_vqa_samples(5, seed=0)
    assert samples == base_model.easy_vqa_samples(5, seed=0)
    assert all(isinstance(s, Sample) and s.prompt.endswith(" Answer in one word.") for s in samples)
    assert all(s.prompt[0].isupper() and len(s.images) == 1 for s in samples)


@pytest.mark.slow
def test_the_real_default_model_answers_easy_vqa_well_above_the_majority_answer(tmp_path):
    path = ensure_base_model(tmp_path / "base")
    result = base_model.evaluate_easy_vqa(VLM.load(str(path)), n=200)
    assert result["accuracy"] > result["majority_baseline"] + 0.20, result


def test_the_build_runs_on_fixed_threads_and_deterministic_kernels_then_restores_them():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as under `accelerate launch` (OMP_NUM_THREADS=1)
    try:
        with base_model.deterministic_build():
            assert torch.get_num_threads() == base_model.BUILD_THREADS
            assert torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == 1 and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(before)


def _weights_digest(path) -> str:
    import hashlib

    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow
def test_two_builds_with_the_same_seed_give_identical_weights(tmp_path):
    """Issue 15: the same seed on the same machine, launched with different thread settings, same weights."""
    import torch

    first = base_model.build_base_model(tmp_path / "a", seed=0, log=lambda _: None)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the second build starts from another thread setting; the build fixes its own
    try:
        second = base_model.build_base_model(tmp_path / "b", seed=0, log=lambda _: None)
    finally:
        torch.set_num_threads(before)
    assert _weights_digest(first) == _weights_digest(second)
    marker = json.loads((first / base_model.MARKER).read_text())
    assert marker["environment"]["threads"] == base_model.BUILD_THREADS
