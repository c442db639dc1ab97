"""The dense connector recipe's model side (mitigation/architecture/dense_connector.py): widening a LLaVA model with
the warm start, what each stage trains, the data, and the errors for models and settings it cannot take."""

import copy

import pytest
import torch
from dense_connector_tiny import N_PATCHES, WIDTH, chat_inputs, tiny_llava

from eval_bridge.models.dense_connector import DenseConnectorError, LlavaDenseConnectorForConditionalGeneration
from eval_bridge.models.tiny import build_tiny_vlm
from mitigation.architecture.dense_connector import (
    UnsupportedModelError,
    caption_rows,
    connector_trainer,
    freeze_for_stage,
    to_dense_connector,
    trainable_summary,
)
from mitigation.architecture.dense_connector_config import DenseConnectorConfig, parse_groups, parse_layers


def widened(variant="dci", **settings):
    base, processor = tiny_llava()
    settings.setdefault("sparse_layers", [1, 2])
    dense, dense_processor = to_dense_connector(copy.deepcopy(base), processor, variant=variant, **settings)
    return base, processor, dense.eval(), dense_processor


@pytest.mark.parametrize("variant", ["sci", "dci"])
def test_the_warm_start_reproduces_the_base_logits_exactly(variant):
    base, processor, dense, dense_processor = widened(variant)
    assert type(dense) is LlavaDenseConnectorForConditionalGeneration
    weight = dense.model.multi_modal_projector.linear_1.weight
    assert weight.shape == (32, 3 * WIDTH)
    assert torch.equal(weight[:, :WIDTH], base.model.multi_modal_projector.linear_1.weight)
    assert not weight[:, WIDTH:].any()  # the columns reading the new features start at zero
    inputs = chat_inputs(processor)
    with torch.no_grad():
        assert torch.equal(dense(**chat_inputs(dense_processor)).logits, base(**inputs).logits)


def test_sti_keeps_the_projector_and_adds_the_pooled_tokens():
    _, _, dense, processor = widened("sti")
    assert dense.model.multi_modal_projector.linear_1.in_features == WIDTH
    assert dense.config.image_seq_length == N_PATCHES + 2 * (N_PATCHES // 8) == 20
    inputs = chat_inputs(processor)
    assert int((inputs["input_ids"] == dense.config.image_token_id).sum()) == 20
    with torch.no_grad():
        assert dense(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]


def test_the_dense_model_shares_the_base_modules_instead_of_copying_them():
    base, processor = tiny_llava()
    tower, lm = base.model.vision_tower, base.model.language_model
    dense, _ = to_dense_connector(base, processor, variant="dci")
    assert dense.model.vision_tower is tower and dense.model.language_model is lm
    assert not any(p.is_meta for p in dense.parameters()) and not any(b.is_meta for b in dense.buffers())


def test_freezing_leaves_only_the_projector_trainable_then_the_lm_too():
    _, _, dense, _ = widened("dci")
    projector = sum(p.numel() for p in dense.model.multi_modal_projector.parameters())
    counts = freeze_for_stage(dense, train_language_model=False)
    assert counts == {"language_model": 0, "vision_tower": 0, "projector": projector, "lora": 0, "other": 0}
    trainable = {n for n, p in dense.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in dense.named_parameters() if n.startswith("model.multi_modal_projector.")}
    lm = sum(p.numel() for p in dense.model.language_model.parameters()) + dense.lm_head.weight.numel()
    counts = freeze_for_stage(dense, train_language_model=True)
    assert counts["vision_tower"] == 0 and counts["projector"] == projector and counts["language_model"] == lm


@pytest.fixture(scope="module")
def lora_step(tmp_path_factory):
    """One connector-stage step with LoRA on the language model, through the trainer the recipe uses."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig

    from mitigation.training.parts import lora_target_regex

    _, _, dense, processor = widened("dci")
    before = {n: p.detach().clone() for n, p in dense.named_parameters()}
    rows = caption_rows(4)
    args = SFTConfig(
        output_dir=str(tmp_path_factory.mktemp("lora-step")),
        max_steps=1,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to="none",
        max_length=None,
        assistant_only_loss=True,
        save_strategy="no",
        bf16=False,
        use_cpu=True,
    )
    peft = LoraConfig(r=4, lora_alpha=8, target_modules=lora_target_regex(dense, ["q_proj", "v_proj"]))
    trainer_cls = connector_trainer(train_language_model=False)
    trainer = trainer_cls(
        model=dense, args=args, train_dataset=Dataset.from_list(rows), processing_class=processor, peft_config=peft
    )
    counts = trainable_summary(trainer.model)
    trainer.train()
    return trainer, before, counts


def test_lora_trains_the_projector_and_lora_only_and_they_change(lora_step):
    trainer, before, counts = lora_step
    assert counts["lora"] > 0 and counts["projector"] > 0
    assert counts["language_model"] == 0 and counts["vision_tower"] == 0 and counts["other"] == 0
    merged = copy.deepcopy(trainer.model).merge_and_unload()
    after = dict(merged.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p, before[n])}
    assert "model.multi_modal_projector.linear_1.weight" in changed  # the trained copy is merged back
    assert any(n.startswith("model.language_model.") and "q_proj" in n for n in changed)  # LoRA merged
    assert not [n for n in changed if n.startswith("model.vision_tower.")]
    assert not [n for n in changed if "mlp" in n or "embed_tokens" in n]  # untargeted LM weights stay


def test_captions_name_the_shape_and_colour_of_easy_vqa_train_images():
    rows = caption_rows(5, seed=3)
    assert len(rows) == 5 and all(len(r["images"]) == 1 for r in rows)
    answer = rows[0]["messages"][1]["content"][0]["text"]
    assert answer.startswith("A ") and answer.endswith(".") and len(answer.split()) == 3
    assert caption_rows(5, seed=3)[0]["messages"] == rows[0]["messages"]
    with pytest.raises(ValueError, match="lower captions"):
        caption_rows(10**6)


@pytest.mark.parametrize("family", ["qwen2_vl", "idefics3", "llava_next"])
def test_an_unsupported_family_is_refused_naming_what_is_supported(family):
    model, processor = build_tiny_vlm(family)
    with pytest.raises(UnsupportedModelError, match=r"Supported: LLaVA-1\.5-style LlavaForConditionalGeneration"):
        to_dense_connector(model, processor)
    if family == "qwen2_vl":
        with pytest.raises(UnsupportedModelError, match=r"hooks on visual\.blocks"):
            to_dense_connector(model, processor)


def test_a_dense_model_or_a_multi_layer_llava_is_refused():
    _, _, dense, processor = widened("dci")
    with pytest.raises(UnsupportedModelError, match="already has a dense connector"):
        to_dense_connector(dense, processor)
    native, processor = tiny_llava(vision_feature_layer=[-2, 1])
    with pytest.raises(UnsupportedModelError, match="already reads several vision layers"):
        to_dense_connector(native, processor)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(variant="sci", sparse_layers=[1, 5]), "index 5 is out of range for a vision tower of 4 blocks"),
        (dict(variant="sti", sparse_layers=[1, 2], pool_stride=17), "STI pools 16 image tokens with stride 17"),
        (dict(variant="concat"), "unknown dense connector variant 'concat'"),
        (dict(variant="dci", feature_layer=7), "vision_feature_layer \\[7\\]: index 7 is out of range"),
    ],
)
def test_settings_that_do_not_fit_the_tower_are_clear_errors(settings, message):
    base, processor = tiny_llava()
    with pytest.raises(DenseConnectorError, match=message):
        to_dense_connector(base, processor, **settings)


def test_the_config_parses_layers_and_groups_and_refuses_bad_ones():
    assert parse_layers("7, 15") == [7, 15] and parse_layers(None) is None
    assert parse_groups("0..2;3,5") == [[0, 1, 2], [3, 5]] and parse_groups("") is None
    with pytest.raises(ValueError, match=r"'a\.\.b'"):
        parse_groups("0..x")
    with pytest.raises(ValueError, match="comma-separated layer indices"):
        parse_layers("seven")
    with pytest.raises(ValueError, match="choose one of sti, sci, dci"):
        DenseConnectorConfig(variant="mean")
    with pytest.raises(ValueError, match="'connector,finetune'"):
        DenseConnectorConfig(stages="finetune,connector,finetune")
    assert DenseConnectorConfig(stages="connector, finetune").stage_names() == ["connector", "finetune"]
