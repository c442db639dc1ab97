"""The model adapter: batched generation equals one-by-one, log-probs are the model's, adapters load."""

import shutil

import pytest
import torch
import transformers

from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.models.tiny import FAMILIES
from eval_bridge.samples import Sample, SampleError

GREEDY = GenerationSettings(max_new_tokens=10, batch_size=5)


@pytest.fixture(scope="module", params=FAMILIES)
def vlm(request, tiny_model_dirs):
    return VLM.load(str(tiny_model_dirs[request.param]))


def test_loads_the_family_class(vlm):
    expected = {
        "llava": "LlavaForConditionalGeneration",
        "llava_next": "LlavaNextForConditionalGeneration",
        "qwen2_vl": "Qwen2VLForConditionalGeneration",
        "idefics3": "Idefics3ForConditionalGeneration",
    }[vlm.family]
    assert type(vlm.model).__name__ == expected
    assert vlm.tokenizer.padding_side == "left"


def test_batched_greedy_equals_one_by_one(vlm, mixed_samples):
    batched = vlm.generate(mixed_samples, GREEDY)
    single = [vlm.generate([s], GREEDY)[0] for s in mixed_samples]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert all(len(g.token_ids) > 0 for g in batched)


def test_batch_size_does_not_change_greedy_output(vlm, mixed_samples):
    by2 = vlm.generate(mixed_samples, GenerationSettings(max_new_tokens=10, batch_size=2))
    by5 = vlm.generate(mixed_samples, GREEDY)
    assert [g.text for g in by2] == [g.text for g in by5]


def test_padding_is_on_the_left(vlm, mixed_samples):
    inputs = vlm.prepare(mixed_samples[:2])
    mask = inputs["attention_mask"]
    assert mask.shape[0] == 2
    assert (mask[:, -1] == 1).all(), "every row must end with a real token"
    assert (mask[:, 0] == 0).any(), "the shorter row is padded at the start"


def _teacher_forced_logits(vlm, sample, token_ids):
    inputs = dict(vlm.prepare([sample]))
    gen = torch.tensor([token_ids])
    prompt_len = inputs["input_ids"].shape[1]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], gen], dim=1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(gen)], dim=1)
    if "mm_token_type_ids" in inputs:
        inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(gen)], dim=1)
    with torch.no_grad():
        logits = vlm.model(**inputs).logits[0].float()
    return logits[prompt_len - 1 : prompt_len - 1 + len(token_ids)]


@pytest.mark.parametrize("index", [0, 1], ids=["image", "text-only"])
def test_logprobs_match_a_teacher_forced_forward(vlm, mixed_samples, index):
    sample = mixed_samples[index]
    gen = vlm.generate([sample], GREEDY, return_logprobs=True)[0]
    logits = _teacher_forced_logits(vlm, sample, gen.token_ids)
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(gen.token_ids)[:, None]).squeeze(-1)
    assert torch.allclose(torch.tensor(gen.logprobs), expected, atol=1e-4)
    # Greedy: each token is the arg-max among the tokens the generation config allows.
    allowed = logits.clone()
    allowed[:, vlm.model.generation_config.suppress_tokens] = float("-inf")
    assert allowed.argmax(-1).tolist() == gen.token_ids


def test_sampling_is_seeded(vlm, mixed_samples):
    def run(seed):
        cfg = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=1.5, seed=seed, batch_size=5)
        return [g.text for g in vlm.generate(mixed_samples, cfg)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_greedy_cache_key_ignores_sampling_fields():
    a = GenerationSettings(temperature=0.3, seed=1, batch_size=4)
    b = GenerationSettings(temperature=0.9, seed=2, batch_size=16)
    assert a.cache_key() == b.cache_key()
    assert (
        GenerationSettings(do_sample=True, seed=1).cache_key() != GenerationSettings(do_sample=True, seed=2).cache_key()
    )


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_lora_adapter_loads_and_changes_outputs(family, tiny_model_dirs, mixed_samples, tmp_path):
    from peft import LoraConfig, get_peft_model

    base_dir = tiny_model_dirs[family]
    base = VLM.load(str(base_dir))
    before = base.generate(mixed_samples, GREEDY)

    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(VLM.load(str(base_dir)).model, lora)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.5)  # a visible change, as after real training
    peft_model.save_pretrained(tmp_path / "adapter")
    expected = VLM(peft_model.eval(), base.processor).generate(mixed_samples, GREEDY)

    adapted = VLM.load(str(base_dir), adapter=str(tmp_path / "adapter"))
    after = adapted.generate(mixed_samples, GREEDY)
    assert [g.text for g in after] == [g.text for g in expected]
    assert [g.text for g in after] != [g.text for g in before]
    assert adapted.fingerprint != base.fingerprint


def test_trust_remote_code_is_off_by_default(tiny_model_dirs, monkeypatch):
    seen = []
    for cls in (transformers.AutoConfig, transformers.AutoProcessor):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, **kwargs):
            seen.append(kwargs.get("trust_remote_code"))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    VLM.load(str(tiny_model_dirs["llava"]))
    assert len(seen) >= 2 and all(v is False for v in seen)
    seen.clear()
    VLM.load(str(tiny_model_dirs["llava"]), trust_remote_code=True)
    assert len(seen) >= 2 and all(v is True for v in seen)


def test_unknown_family_falls_back_to_auto_class():
    from eval_bridge.models.adapter import _model_class

    assert _model_class("some_new_vlm") is transformers.AutoModelForImageTextToText
    assert _model_class("qwen2_5_vl") is transformers.Qwen2_5_VLForConditionalGeneration


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises(OSError, match="cannot load model"):
        VLM.load(str(tmp_path / "nowhere"))


def test_adapter_dir_without_config_is_refused(tiny_model_dirs, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
        VLM.load(str(tiny_model_dirs["llava"]), adapter=str(tmp_path))


def test_unloadable_image_names_the_sample(tiny_model_dirs, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    vlm = VLM.load(str(tiny_model_dirs["llava"]))
    with pytest.raises(SampleError, match="sample s1"):
        vlm.generate([Sample("s1", "What is this?", (str(bad),))], GREEDY)


def test_fingerprint_follows_content_not_location(tiny_model_dirs, tmp_path):
    src = tiny_model_dirs["llava"]
    copy = shutil.copytree(src, tmp_path / "copy")
    assert VLM.load(str(copy)).fingerprint == VLM.load(str(src)).fingerprint
    other = shutil.copytree(src, tmp_path / "other")
    model = VLM.load(str(other)).model
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(other)
    assert VLM.load(str(other)).fingerprint != VLM.load(str(src)).fingerprint


def test_text_only_causal_lm_loads_and_generates(tiny_lm_dir, mixed_samples):
    lm = VLM.load(str(tiny_lm_dir))
    assert lm.text_only and type(lm.model).__name__ == "LlamaForCausalLM"
    text_samples = [s for s in mixed_samples if not s.images]
    batched = lm.generate(text_samples, GREEDY)
    assert [g.text for g in batched] == [lm.generate([s], GREEDY)[0].text for s in text_samples]
    with pytest.raises(SampleError, match="text-only model but the sample has images"):
        lm.generate(mixed_samples[:1], GREEDY)


def test_raw_prompts_skip_the_chat_template(tiny_lm_dir):
    templated = VLM.load(str(tiny_lm_dir))
    raw = VLM.load(str(tiny_lm_dir), raw_prompts=True)
    sample = Sample("r", "[INST] Is this harmful? [/INST]")
    assert raw.prompt_text(sample) == sample.prompt
    assert templated.prompt_text(sample).startswith("<|im_start|>user\n")
    ids = raw.prepare([sample])["input_ids"][0].tolist()
    assert raw.tokenizer.decode(ids) == sample.prompt
