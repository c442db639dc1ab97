"""The tiny VLM factory: deterministic, small, reloadable offline with the Auto classes, TRL-ready template."""

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from eval_bridge.models.tiny import FAMILIES, build_tiny_vlm


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_same_model_other_seed_other_model():
    m1, p1 = build_tiny_vlm("llava", seed=0)
    m2, p2 = build_tiny_vlm("llava", seed=0)
    m3, _ = build_tiny_vlm("llava", seed=1)
    assert _same_weights(m1, m2)
    assert p1.tokenizer.get_vocab() == p2.tokenizer.get_vocab()
    assert not _same_weights(m1, m3)


@pytest.mark.parametrize("family", FAMILIES)
def test_reloads_offline_with_auto_classes(family, tiny_model_dirs):
    path = tiny_model_dirs[family]
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    built, _ = build_tiny_vlm(family, seed=0)
    assert type(model) is type(built)
    assert _same_weights(model, built)
    assert processor.tokenizer.chat_template is not None or processor.chat_template is not None
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size < 2_000_000, f"a tiny model should stay tiny, got {size} bytes"
    assert any(f.suffix == ".safetensors" for f in path.iterdir())


@pytest.mark.parametrize("family", FAMILIES)
def test_chat_template_marks_exactly_the_assistant_reply(family, tiny_model_dirs):
    processor = AutoProcessor.from_pretrained(tiny_model_dirs[family])
    conversation = [
        {"role": "user", "content": [{"type": "text", "text": "What shape is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A red circle."}]},
    ]
    out = processor.tokenizer.apply_chat_template(
        conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert processor.tokenizer.decode(ids) == "A red circle.<|im_end|>"


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        build_tiny_vlm("gpt2")
