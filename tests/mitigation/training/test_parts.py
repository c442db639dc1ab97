"""Model parts by family: the resolver, the `--model_parts` option, and a LoRA regex that stays in the LM."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModelForImageTextToText

from mitigation.training.parts import (
    ModelParts,
    ModelPartsError,
    freeze,
    get_submodule,
    lora_target_regex,
    parse_parts_option,
    part_parameters,
    resolve_parts,
    unfreeze,
)

LORA_NAMES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

EXPECTED = {
    "llava": ModelParts("model.language_model", "model.vision_tower", "model.multi_modal_projector"),
    "llava_next": ModelParts("model.language_model", "model.vision_tower", "model.multi_modal_projector"),
    "qwen2_vl": ModelParts("model.language_model", "model.visual", "model.visual.merger"),
    "idefics3": ModelParts("model.text_model", "model.vision_model", "model.connector"),
}
# Class names of each family's vision encoder stack (the blocks the vision tower must hold).
VISION_ENCODER = {"llava": "CLIPEncoder", "llava_next": "CLIPEncoder", "idefics3": "Idefics3Encoder"}


def _load(tiny_model_dirs, family):
    return AutoModelForImageTextToText.from_pretrained(tiny_model_dirs[family])


def _qwen2_5_vl():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = dict(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    )
    vision = dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32, patch_size=8)
    return Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision))


def _smolvlm():
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    vision = dict(
        hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    text = dict(
        model_type="llama",
        vocab_size=128,
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    return SmolVLMForConditionalGeneration(SmolVLMConfig(vision_config=vision, text_config=text, scale_factor=2))


class Custom(nn.Module):
    """A VLM-like model laid out under names no known family uses."""

    def __init__(self):
        super().__init__()
        self.decoder = nn.ModuleDict({"q_proj": nn.Linear(4, 4), "v_proj": nn.Linear(4, 4)})
        self.eyes = nn.ModuleDict({"q_proj": nn.Linear(4, 4)})
        self.bridge = nn.Linear(4, 4)


@pytest.mark.parametrize("family", list(EXPECTED))
def test_each_tiny_family_resolves_to_its_real_modules(tiny_model_dirs, family):
    model = _load(tiny_model_dirs, family)
    parts = resolve_parts(model)
    assert parts == EXPECTED[family]
    lm = get_submodule(model, parts.language_model)
    # The language model is the decoder stack that reads the input embeddings.
    assert isinstance(lm.layers, nn.ModuleList) and len(lm.layers) > 0
    assert lm.get_input_embeddings() is model.get_input_embeddings()
    tower = get_submodule(model, parts.vision_tower)
    if family == "qwen2_vl":
        assert isinstance(tower.blocks, nn.ModuleList) and len(tower.blocks) > 0
    else:
        assert any(type(m).__name__ == VISION_ENCODER[family] for m in tower.modules())
    # The projector maps vision features to the LM's width: its last linear layer outputs hidden_size.
    projector = get_submodule(model, parts.projector)
    last_linear = [m for m in projector.modules() if isinstance(m, nn.Linear)][-1]
    assert last_linear.out_features == model.config.get_text_config().hidden_size


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (_qwen2_5_vl, EXPECTED["qwen2_vl"]),
        (_smolvlm, EXPECTED["idefics3"]),
    ],
)
def test_qwen2_5_vl_and_smolvlm_share_their_siblings_layout(build, expected):
    model = build()
    assert resolve_parts(model) == expected
    # Qwen2.5-VL's vision MLP is also gate/up/down_proj: the regex must still leave it alone.
    regex = lora_target_regex(model, LORA_NAMES)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=regex))
    adapted = [n for n, m in peft_model.get_base_model().named_modules() if hasattr(m, "lora_A")]
    assert adapted and all(n.startswith(expected.language_model + ".") for n in adapted)


@pytest.mark.parametrize("family", list(EXPECTED))
def test_lora_regex_adapts_language_model_layers_only(tiny_model_dirs, family):
    model = _load(tiny_model_dirs, family)
    parts = resolve_parts(model)
    lm_linears = {
        n
        for n, m in model.named_modules()
        if n.startswith(parts.language_model + ".") and isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in LORA_NAMES
    }
    if family != "qwen2_vl":  # (Qwen2-VL's vision blocks use qkv/proj/fc1/fc2)
        # The vision tower's attention uses the same names, so a bare name list would adapt it too.
        assert any(
            n.rsplit(".", 1)[-1] in LORA_NAMES for n, _ in get_submodule(model, parts.vision_tower).named_modules()
        )

    regex = lora_target_regex(model, LORA_NAMES)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=regex))
    adapted = {n for n, m in peft_model.get_base_model().named_modules() if hasattr(m, "lora_A")}
    assert adapted == lm_linears
    # Paths stay those of the transformers model once wrapped.
    assert resolve_parts(peft_model) == parts
    assert get_submodule(peft_model, parts.vision_tower) is get_submodule(model, parts.vision_tower)


def test_lora_regex_errors_name_the_missing_layers(tiny_model_dirs):
    model = _load(tiny_model_dirs, "idefics3")
    with pytest.raises(ModelPartsError, match=r"\['qproj'\].*model\.text_model.*q_proj"):
        lora_target_regex(model, ["qproj", "v_proj"])
    with pytest.raises(ModelPartsError, match="no LoRA target"):
        lora_target_regex(model, [])
    # The LM named as a path that contains the vision tower: the regex would leak into it.
    leaky = ModelParts("model", "model.vision_model", "model.connector")
    with pytest.raises(ModelPartsError, match="vision tower or projector"):
        lora_target_regex(model, ["q_proj"], parts=leaky)


def test_overrides_replace_single_parts_and_must_exist(tiny_model_dirs):
    model = _load(tiny_model_dirs, "llava")
    parts = resolve_parts(model, {"projector": "model.multi_modal_projector.linear_2"})
    assert parts == ModelParts("model.language_model", "model.vision_tower", "model.multi_modal_projector.linear_2")
    with pytest.raises(ModelPartsError, match=r"projector='model\.connector'"):
        resolve_parts(model, {"projector": "model.connector"})
    with pytest.raises(ModelPartsError, match="projector=''"):
        resolve_parts(model, {"projector": ""})
    with pytest.raises(ModelPartsError, match=r"unknown model part 'lm'.*language_model, vision_tower, projector"):
        resolve_parts(model, {"lm": "model.language_model"})


def test_unknown_family_says_which_option_to_set():
    model = Custom()
    with pytest.raises(ModelPartsError) as err:
        resolve_parts(model)
    message = str(err.value)
    assert "Custom" in message and "--model_parts language_model=...,vision_tower=...,projector=..." in message
    assert "decoder" in message  # its own top modules, to pick from
    with pytest.raises(ModelPartsError, match="unknown model family Custom"):
        resolve_parts(model, {"language_model": "decoder"})  # one override is not enough

    parts = resolve_parts(model, parse_parts_option("language_model=decoder,vision_tower=eyes,projector=bridge"))
    assert parts == ModelParts("decoder", "eyes", "bridge")
    assert lora_target_regex(model, ["q_proj", "v_proj"], parts) == r"decoder\.(?:.*\.)?(?:q_proj|v_proj)"


def test_parse_parts_option():
    text = " language_model=model.text_model, vision_tower=model.vision_model ,projector=model.connector,"
    assert parse_parts_option(text) == {
        "language_model": "model.text_model",
        "vision_tower": "model.vision_model",
        "projector": "model.connector",
    }
    assert parse_parts_option("") == {} and parse_parts_option(None) == {}
    with pytest.raises(ModelPartsError, match="unknown model part 'text'; valid parts: language_model, vision_tower"):
        parse_parts_option("text=model.text_model")
    with pytest.raises(ModelPartsError, match=r"part=path.*'projector'"):
        parse_parts_option("projector")
    with pytest.raises(ModelPartsError, match="part=path"):
        parse_parts_option("projector=")
    with pytest.raises(ModelPartsError, match="'projector' is given twice"):
        parse_parts_option("projector=a,projector=b")


def test_get_submodule_names_the_missing_path(tiny_model_dirs):
    model = _load(tiny_model_dirs, "qwen2_vl")
    assert isinstance(get_submodule(model, "model.visual.merger"), nn.Module)
    with pytest.raises(ModelPartsError, match=r"Qwen2VLForConditionalGeneration has no submodule 'model\.text_model'"):
        get_submodule(model, "model.text_model")


def test_freezing_the_vision_tower_keeps_a_nested_projector_trainable(tiny_model_dirs):
    model = _load(tiny_model_dirs, "qwen2_vl")
    parts = resolve_parts(model)
    tower = dict(part_parameters(model, "vision_tower", parts))
    projector = dict(part_parameters(model, "projector", parts))
    assert tower and projector and not set(tower) & set(projector)
    assert all(n.startswith("model.visual.merger.") for n in projector)

    assert freeze(model, "vision_tower", parts) == len(tower)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    assert not any(grads[n] for n in tower)
    assert all(grads[n] for n in projector) and all(grads[n] for n in grads if n.startswith("model.language_model."))
    assert unfreeze(model, "vision_tower", parts) == len(tower)
    assert all(p.requires_grad for p in model.parameters())


def test_freezing_changes_what_an_optimizer_step_updates(tiny_model_dirs):
    model = _load(tiny_model_dirs, "llava")
    freeze(model, "language_model")
    freeze(model, "vision_tower")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=1.0)
    sum(p.sum() for p in trainable).backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n, _ in part_parameters(model, "projector")}
    # The output head counts as the language model's, so freezing the LM froze it too.
    assert "lm_head.weight" in dict(part_parameters(model, "language_model")) and "lm_head.weight" not in changed
