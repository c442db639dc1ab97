"""The dense connector's model class (eval_bridge/models/dense_connector.py) on a tiny CLIP of 4 blocks, width 32,
N = 16 patches, sparse_layers (1, 2): shapes per variant, DCI's group means, the native list-layer path, the save
and reload through the Auto classes, and decoding through the toolkit's loop."""

import json

import pytest
import torch
from dense_connector_tiny import DEPTH, N_PATCHES, WIDTH, chat_inputs, striped_image, tiny_llava
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from eval_bridge.models import decode
from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.models.dense_connector import (
    MODEL_TYPE,
    DenseConnectorError,
    LlavaDenseConnectorConfig,
    LlavaDenseConnectorForConditionalGeneration,
    default_dense_groups,
    default_sparse_layers,
    dense_features,
    sti_processor_tokens,
)
from eval_bridge.samples import Sample


def dense_model(variant: str, seed: int = 1, **settings):
    """A random dense-connector model shaped like `tiny_llava`, and the tiny processor (STI-adjusted)."""
    base, processor = tiny_llava()
    values = base.config.to_dict()
    for key in ("model_type", "architectures", "transformers_version"):
        values.pop(key, None)
    settings.setdefault("dense_sparse_layers", [1, 2])
    config = LlavaDenseConnectorConfig(**values, dense_connector_type=variant, **settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaDenseConnectorForConditionalGeneration(config).eval()
    model.generation_config = base.generation_config
    if variant == "sti":
        processor.num_additional_image_tokens = sti_processor_tokens(processor, config)
    return model, processor


def pixels(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 56, 56, generator=torch.Generator().manual_seed(0))


def tower_states(model, px):
    with torch.no_grad():
        return model.model.vision_tower(px, output_hidden_states=True).hidden_states


def test_defaults_follow_the_tower_depth_as_upstream_on_24_blocks():
    assert default_sparse_layers(24) == [7, 15]
    assert default_dense_groups(24) == [list(range(12)), list(range(12, 24))]
    assert default_sparse_layers(DEPTH) == [0, 1] and default_dense_groups(DEPTH) == [[0, 1], [2, 3]]


@pytest.mark.parametrize(
    "variant, tokens, channels",
    [("sti", N_PATCHES + 2 * (N_PATCHES // 8), WIDTH), ("sci", N_PATCHES, 3 * WIDTH), ("dci", N_PATCHES, 3 * WIDTH)],
)
def test_shapes_per_variant(variant, tokens, channels):
    model, processor = dense_model(variant)
    px = pixels()
    features = dense_features(tower_states(model, px), model.config)
    assert tuple(features.shape) == (2, tokens, channels)
    assert model.model.multi_modal_projector.linear_1.in_features == channels
    assert model.config.image_tokens() == tokens
    with torch.no_grad():
        projected = model.model.get_image_features(px).pooler_output
    assert [tuple(p.shape) for p in projected] == [(tokens, 32)] * 2
    inputs = chat_inputs(processor)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == tokens
    if variant == "sti":
        assert model.config.image_seq_length == 20
    with torch.no_grad():
        logits = model(**inputs).logits  # the processor's placeholders and the features agree
    assert logits.shape[1] == inputs["input_ids"].shape[1]


def test_sti_appends_the_pooled_tokens_of_each_sparse_layer_in_raster_order():
    model, _ = dense_model("sti")
    states = tower_states(model, pixels())
    features = dense_features(states, model.config)
    v = states[-2][:, 1:]
    torch.testing.assert_close(features[:, :N_PATCHES], v)
    for k, layer in enumerate((1, 2)):
        patches = states[layer][:, 1:]
        pooled = torch.stack([patches[:, 0:8].mean(1), patches[:, 8:16].mean(1)], dim=1)
        torch.testing.assert_close(features[:, N_PATCHES + 2 * k : N_PATCHES + 2 * k + 2], pooled)


def test_dci_group_means_equal_a_manual_computation():
    model, _ = dense_model("dci", dense_groups=[[0, 1], [2, 3]])
    states = tower_states(model, pixels())
    features = dense_features(states, model.config)
    g1 = (states[0][:, 1:] + states[1][:, 1:]) / 2
    g2 = (states[2][:, 1:] + states[3][:, 1:]) / 2
    torch.testing.assert_close(features, torch.cat([states[-2][:, 1:], g1, g2], dim=-1))
    # The embedding output (hidden_states[0]) is in the first group: upstream's off-by-one
    assert not torch.allclose(features[..., WIDTH : 2 * WIDTH], (states[1][:, 1:] + states[2][:, 1:]) / 2)


def test_bfloat16_features_reach_the_projector_in_its_dtype():
    model, _ = dense_model("dci")
    model.to(torch.bfloat16)
    with torch.no_grad():
        out = model.model.get_image_features(pixels().to(torch.bfloat16)).pooler_output
    assert out[0].dtype == torch.bfloat16


@pytest.mark.parametrize("variant", ["sti", "sci"])
def test_changing_sparse_layers_changes_the_output(variant):
    a, _ = dense_model(variant, dense_sparse_layers=[1, 2])
    b, _ = dense_model(variant, dense_sparse_layers=[1, 3])
    b.load_state_dict(a.state_dict())  # same weights: only the layer choice differs
    px = pixels()
    with torch.no_grad():
        out_a = torch.stack(a.model.get_image_features(px).pooler_output)
        out_b = torch.stack(b.model.get_image_features(px).pooler_output)
    assert not torch.allclose(out_a, out_b)


def test_the_native_list_layer_path_equals_the_projects_sci():
    native, processor = tiny_llava(vision_feature_layer=[-2, 1, 2])
    sci, _ = dense_model("sci", dense_sparse_layers=[1, 2])
    sci.load_state_dict(native.state_dict())  # same parameter names: the widened projector has LLaVA's keys
    inputs = chat_inputs(processor)
    with torch.no_grad():
        torch.testing.assert_close(sci(**inputs).logits, native(**inputs).logits, rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["sti", "dci"])
def test_save_and_auto_reload_gives_identical_logits_without_remote_code(variant, tmp_path):
    model, processor = dense_model(variant)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == MODEL_TYPE and "auto_map" not in saved  # nothing for trust_remote_code to run
    assert AutoConfig.from_pretrained(tmp_path).dense_connector_type == variant
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path, trust_remote_code=False).eval()
    assert type(reloaded) is LlavaDenseConnectorForConditionalGeneration
    processor2 = AutoProcessor.from_pretrained(tmp_path)
    inputs = chat_inputs(processor2)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == model.config.image_tokens()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)


def test_vlm_load_decodes_through_the_loop_as_one_at_a_time_generate(tmp_path):
    model, processor = dense_model("dci")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    vlm = VLM.load(str(tmp_path))
    assert vlm.family == MODEL_TYPE and isinstance(vlm.fingerprint, str) and vlm.fingerprint
    settings = GenerationSettings(max_new_tokens=6, batch_size=4)
    assert decode.unsupported_reason(vlm.model, vlm._generation_config(settings, False)) is None
    image = tmp_path / "img.png"
    striped_image("blue").save(image)
    samples = [
        Sample("a", "What colour is it?", (str(image),)),
        Sample("b", "Hi"),
        Sample("c", "Describe the picture in detail, every shape and colour.", (str(image),)),
    ]
    looped = vlm.generate(samples, settings)
    plain = [vlm.generate([s], settings, continuous=False)[0] for s in samples]
    assert [g.token_ids for g in looped] == [g.token_ids for g in plain]
    assert all(g.token_ids for g in looped)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(dense_connector_type="xyz"), "unknown dense connector variant 'xyz'; choose one of sti, sci, dci"),
        (
            dict(dense_connector_type="sci", dense_sparse_layers=[1, 9]),
            "index 9 is out of range for a vision tower of 4",
        ),
        (dict(dense_connector_type="dci", dense_groups=[[0], [-6]]), "index -6 is out of range"),
        (dict(dense_connector_type="dci", dense_groups=[[0], []]), "every group needs at least one layer"),
        (dict(dense_connector_type="sti", dense_pool_stride=32), "STI pools 16 image tokens with stride 32"),
        (dict(vision_feature_layer=[-2, 1]), "takes one main layer"),
    ],
)
def test_bad_settings_are_clear_errors(settings, message):
    base, _ = tiny_llava()
    values = base.config.to_dict()
    for key in ("model_type", "architectures", "transformers_version"):
        values.pop(key, None)
    values.update(settings)
    with pytest.raises(DenseConnectorError, match=message.replace("(", r"\(").replace("[", r"\[")):
        LlavaDenseConnectorConfig(**values)
