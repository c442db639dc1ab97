"""robust_vision (METHODS.md 3.3): FARE's loss and PGD on hand-made and tiny-tower inputs, the Trainer step (frozen
copy fixed, tower moving), FARE lowering the PGD distance on held-out images, the tower swap (resolution, image
tokens, reload), and the errors for bad inputs."""

import dataclasses

import pytest
import torch

from eval_bridge.models.adapter import VLM, load_pretrained
from eval_bridge.models.tiny import build_tiny_vlm
from eval_bridge.samples import Sample
from mitigation.architecture.robust_vision import (
    attack,
    build_objective,
    check_supported,
    fare_loss,
    finetune,
    heldout_pixels,
    measure,
    pgd,
    training_images,
)
from mitigation.architecture.robust_vision_config import RobustVisionConfig
from mitigation.architecture.robust_vision_swap import image_token_counts, load_clip_vision, swap_tower


def tiny_cfg(tmp_path=None, **changes) -> RobustVisionConfig:
    fields = dict(n_train_images=32, n_heldout_images=16, batch_size=8, train_steps=2, measure_pgd_steps=5)
    if tmp_path is not None:
        fields.update(output_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), report_to="none")
    return RobustVisionConfig(**{**fields, **changes})


@pytest.fixture
def tiny():
    """A tiny LLaVA (32 px, patch 8, width 32, vision_feature_layer -2) and the FARE objective on its tower."""
    model, processor = build_tiny_vlm("llava")
    return model, processor, build_objective(model, processor, tiny_cfg())


def pixels(n=4, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- the loss


def test_fare_loss_is_the_squared_error_summed_over_features_and_averaged_over_the_rest():
    a = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 0.0], [1.0, 1.0]]])  # [B=2, T=2, D=2]
    b = torch.tensor([[[0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 3.0]]])
    # per (image, token): (1 + 4), (0 + 1), (4 + 0), (0 + 4) -> mean 14 / 4
    assert fare_loss(a, b).item() == pytest.approx(3.5)
    assert fare_loss(a[:, 0], b[:, 0]).item() == pytest.approx((5 + 4) / 2)  # a pooled [B, D] embedding


def test_inner_loss_is_zero_at_the_original_tower_on_clean_images(tiny):
    _, _, objective = tiny
    x = pixels()
    assert objective.inner_loss(x, objective.target(x, None)).item() == 0.0


def test_features_are_what_the_projector_reads(tiny):
    model, processor, objective = tiny
    images = (pixels(2) * 255).round().to(torch.uint8)
    x = images / 255.0
    normalised = processor.image_processor([im.permute(1, 2, 0).numpy() for im in images], return_tensors="pt")
    out = model.model.vision_tower(normalised["pixel_values"], output_hidden_states=True)
    expected = out.hidden_states[-2][:, 1:]  # the tiny LLaVA: penultimate layer, CLS dropped
    assert objective.features(x).shape == (2, 16, 32)
    torch.testing.assert_close(objective.features(x), expected, atol=1e-5, rtol=1e-5)


def test_tecoa_logits_and_loss_are_scaled_cosines_and_their_cross_entropy():
    model, processor = build_tiny_vlm("llava")
    cfg = tiny_cfg(loss="tecoa")
    objective = build_objective(model, processor, cfg, ["circle", "rectangle", "triangle"])
    x, y = pixels(3), torch.tensor([0, 2, 1])
    features = objective.features(x)
    image = model.model.multi_modal_projector(features).mean(1)
    text = objective.class_text
    cos = torch.stack(
        [torch.stack([torch.cosine_similarity(image[i], text[c], dim=0) for c in range(3)]) for i in range(3)]
    )
    torch.testing.assert_close(objective.logits(features), 100 * cos, atol=1e-4, rtol=1e-4)
    by_hand = -torch.log_softmax(100 * cos, -1)[torch.arange(3), y].mean()
    torch.testing.assert_close(objective.inner_loss(x, y), by_hand, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- PGD


def test_pgd_stays_in_the_eps_ball_and_in_the_image_range(tiny):
    _, _, objective = tiny
    x = pixels(4)
    x[0] = 0.0  # saturated images: the [0, 1] clamp must bind
    x[1] = 1.0
    cfg = tiny_cfg(epsilon=8.0, pgd_step_size=3.0, pgd_steps=6)
    z = attack(objective, x, objective.target(x, None), cfg)
    assert (z - x).abs().max().item() <= 8 / 255 + 1e-6
    assert z.min().item() >= 0.0 and z.max().item() <= 1.0
    assert (z - x).abs().max().item() > 7 / 255  # sign steps reach the boundary: the radius is not 8/255 of /255


def test_the_attack_raises_the_inner_loss_above_its_random_start(tiny):
    _, _, objective = tiny
    x = pixels(8)
    target = objective.target(x, None)
    settings = dict(eps=4 / 255, step_size=1 / 255, momentum=0.9, tower=objective.tower)

    def loss(z):
        return objective.inner_loss(z, target)

    start = pgd(loss, x, steps=0, generator=torch.Generator().manual_seed(1), **settings)
    attacked = pgd(loss, x, steps=10, generator=torch.Generator().manual_seed(1), **settings)
    assert loss(attacked).item() > 3 * loss(start).item() > 0


def test_the_tower_is_in_eval_mode_during_the_attack_and_restored_after(tiny):
    _, _, objective = tiny
    modes = []
    objective.train()

    def loss(z):
        modes.append(objective.tower.training)
        return objective.features(z).sum()

    pgd(loss, pixels(2), eps=2 / 255, step_size=1 / 255, steps=3, tower=objective.tower)
    assert modes == [False, False, False] and objective.tower.training and not objective.frozen.training


def test_epsilon_and_step_are_read_in_255_units():
    cfg = RobustVisionConfig(epsilon=4.0, pgd_step_size=1.0)
    assert (cfg.eps(), cfg.step_size()) == (4 / 255, 1 / 255)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(epsilon=0.0), "must be > 0, in pixel units /255"),
        (dict(epsilon=-2.0), "must be > 0"),
        (dict(pgd_step_size=0.0), "must be > 0"),
        (dict(epsilon=4 / 255), "already divided by 255"),
        (dict(mode="swap"), "needs swap_from"),
        (dict(use_lora=True), "use_lora=false"),
        (dict(pgd_steps=0), "at least 1"),
    ],
)
def test_bad_config_values_are_refused_with_what_to_change(changes, message):
    with pytest.raises(ValueError, match=message):
        RobustVisionConfig(**changes)


# ---------------------------------------------------------------- training


def test_a_trainer_step_moves_the_tower_and_leaves_the_frozen_copy(tmp_path, tiny_model_dirs):
    from mitigation.architecture.robust_vision import ImageDataset, _trainer_class, training_arguments

    model, processor = load_pretrained(str(tiny_model_dirs["llava"]))
    cfg = tiny_cfg(tmp_path, train_steps=1, learning_rate=1e-3, warmup_ratio=0.0)
    objective = build_objective(model, processor, cfg)
    frozen_before = {k: v.clone() for k, v in objective.frozen.state_dict().items()}
    tower_before = {k: v.clone() for k, v in objective.tower.state_dict().items()}
    paths, labels, _ = training_images(cfg)
    trainer = _trainer_class()(
        model=objective,
        args=training_arguments(cfg, tmp_path / "fare"),
        train_dataset=ImageDataset(paths, labels, 32),
        vlm=model,
        vlm_processor=processor,
        cfg=cfg,
    )
    trainer.train()
    frozen_after, tower_after = objective.frozen.state_dict(), objective.tower.state_dict()
    assert all(torch.equal(frozen_before[k], frozen_after[k]) for k in frozen_before)
    changed = [k for k in tower_before if not torch.equal(tower_before[k], tower_after[k])]
    assert "embeddings.patch_embedding.weight" in changed and len(changed) > len(tower_before) // 2
    # The VLM holds the trained tower itself; its projector and LM did not move.
    assert model.model.vision_tower is objective.tower
    reloaded, _ = load_pretrained(str(tiny_model_dirs["llava"]))
    for name in ("multi_modal_projector", "language_model"):
        ours, theirs = getattr(model.model, name).state_dict(), getattr(reloaded.model, name).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.fixture
def one_thread():
    """A tiny tower's ops are so small that thread hand-offs cost more than they save (5x on 2 busy cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_fare_lowers_the_pgd_distance_on_held_out_images(tmp_path, tiny_model_dirs, one_thread):
    cfg = tiny_cfg(
        tmp_path,
        epsilon=8.0,
        pgd_step_size=2.0,
        train_steps=60,
        batch_size=16,
        n_train_images=256,
        n_heldout_images=32,
        measure_pgd_steps=10,
        learning_rate=3e-4,
        warmup_ratio=0.0,
    )
    final, steps, robustness = finetune(cfg, str(tiny_model_dirs["llava"]), tmp_path / "fare")
    before, after = robustness["before"], robustness["after"]
    assert steps == 60 and before["clean_distance"] == 0.0
    # The held-out images are easy-VQA test images, disjoint from the train split trained on.
    assert after["pgd_distance"] < 0.85 * before["pgd_distance"], robustness
    # The saved VLM holds the trained tower: the same distance measured again from the reloaded directory.
    model, processor = load_pretrained(str(final))
    base, _ = load_pretrained(str(tiny_model_dirs["llava"]))
    objective = build_objective(model, processor, cfg)
    objective.frozen.load_state_dict(base.model.vision_tower.state_dict())
    again = measure(objective, *heldout_pixels(cfg, 32), cfg)
    assert again["pgd_distance"] == pytest.approx(after["pgd_distance"], rel=1e-5)


def test_the_saved_model_reloads_with_identical_logits(tmp_path, tiny_model_dirs, image_dir):
    from mitigation.architecture.robust_vision import save_vlm

    model, processor = load_pretrained(str(tiny_model_dirs["llava"]))
    cfg = tiny_cfg()
    objective = build_objective(model, processor, cfg)
    x = pixels(4)
    loss = objective(attack(objective, x, objective.target(x, None), cfg), objective.target(x, None))["loss"]
    loss.backward()
    with torch.no_grad():
        for p in objective.tower.parameters():
            if p.grad is not None:  # the last block is not read at vision_feature_layer -2
                p -= 1e-2 * p.grad
    save_vlm(model, processor, tmp_path / "vlm")
    reloaded, reloaded_processor = load_pretrained(str(tmp_path / "vlm"))
    sample = Sample("s", "What shape is it?", (str(image_dir / "img0.png"),))
    a, b = VLM(model.eval(), processor), VLM(reloaded.eval(), reloaded_processor)
    inputs = a.prepare([sample])
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, reloaded(**b.prepare([sample])).logits, atol=0, rtol=0)
    base, _ = load_pretrained(str(tiny_model_dirs["llava"]))
    key = "embeddings.patch_embedding.weight"
    assert not torch.equal(reloaded.model.vision_tower.state_dict()[key], base.model.vision_tower.state_dict()[key])


# ---------------------------------------------------------------- swap


def save_clip(path, *, image_size=48, hidden_size=32, full=False, seed=1):
    """A tiny CLIP vision model (width 32 fits the tiny LLaVA's projector) saved at another resolution."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel

    vision = dict(
        hidden_size=hidden_size,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=8,
    )
    torch.manual_seed(seed)
    if full:
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=99)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    else:
        model = CLIPVisionModel(CLIPVisionConfig(**vision))
    model.save_pretrained(path)
    return path


@pytest.mark.parametrize("full", [False, True], ids=["clip-vision", "full-clip"])
def test_a_swapped_tower_at_another_resolution_keeps_the_model_running(tmp_path, image_dir, full):
    model, processor = build_tiny_vlm("llava")
    robust = load_clip_vision(str(save_clip(tmp_path / "clip", full=full)))
    summary = swap_tower(model, processor, robust)
    assert summary == {"image_size": (32, 48), "image_tokens": (16, 36)}  # (48 / 8)^2 patches, CLS dropped
    assert model.model.vision_tower is robust and model.config.vision_config.image_size == 48
    assert image_token_counts(model, processor) == (36, 36)
    assert processor.image_processor.crop_size["height"] == 48 and model.config.image_seq_length == 36
    vlm = VLM(model, processor)
    sample = Sample("s", "What shape is it?", (str(image_dir / "img1.png"),))
    inputs = vlm.prepare([sample])
    assert inputs["pixel_values"].shape[-2:] == (48, 48)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 36
    assert vlm.generate([sample])[0].text is not None
    # Saved and reloaded: the new resolution, the same counts, identical logits.
    model.save_pretrained(tmp_path / "vlm")
    processor.save_pretrained(tmp_path / "vlm")
    reloaded, reloaded_processor = load_pretrained(str(tmp_path / "vlm"))
    assert image_token_counts(reloaded, reloaded_processor) == (36, 36)
    with torch.no_grad():
        expected = model(**inputs).logits
        got = reloaded(**VLM(reloaded, reloaded_processor).prepare([sample])).logits
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_a_swap_can_keep_the_resolution_by_interpolating_position_embeddings(tmp_path):
    model, processor = build_tiny_vlm("llava")
    robust = load_clip_vision(str(save_clip(tmp_path / "clip", image_size=48)))
    grid = robust.embeddings.position_embedding.weight[1:].detach().clone().view(6, 6, 32)
    summary = swap_tower(model, processor, robust, image_size=32)
    assert summary == {"image_size": (32, 32), "image_tokens": (16, 16)}
    embeddings = robust.embeddings
    assert embeddings.position_embedding.weight.shape == (17, 32) and embeddings.position_ids.shape == (1, 17)
    expected = torch.nn.functional.interpolate(grid.permute(2, 0, 1)[None], size=(4, 4), mode="bicubic")
    torch.testing.assert_close(embeddings.position_embedding.weight[1:].view(4, 4, 32), expected[0].permute(1, 2, 0))
    assert image_token_counts(model, processor) == (16, 16)


def test_swap_refuses_a_model_that_is_not_a_clip_vision_model(tiny_model_dirs):
    with pytest.raises(ValueError, match="is a 'llava' model, not a CLIP vision model"):
        load_clip_vision(str(tiny_model_dirs["llava"]))


def test_swap_refuses_a_tower_whose_width_does_not_match_the_projector(tmp_path):
    model, processor = build_tiny_vlm("llava")
    wide = load_clip_vision(str(save_clip(tmp_path / "clip", hidden_size=48)))
    with pytest.raises(ValueError, match=r"width 48 .* does not match the projector's input width 32"):
        swap_tower(model, processor, wide)
    assert model.model.vision_tower is not wide  # the VLM is left as it was


def test_swap_refuses_a_directory_without_clip_weights(tmp_path):
    from transformers import CLIPVisionConfig

    CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2).save_pretrained(
        tmp_path / "empty"
    )
    with pytest.raises(ValueError, match=r"swap_from=.*no CLIP weights could be loaded"):
        load_clip_vision(str(tmp_path / "empty"))


def test_families_without_a_llava_tower_are_refused():
    model, _ = build_tiny_vlm("qwen2_vl")
    with pytest.raises(ValueError, match="supports LLaVA-style VLMs"):
        check_supported(model)


def test_the_measurement_is_seeded(tiny):
    _, _, objective = tiny
    cfg = tiny_cfg()
    x, y = heldout_pixels(cfg, 32)
    assert measure(objective, x, y, cfg) == measure(objective, x, y, dataclasses.replace(cfg))


def test_tecoa_trains_on_easy_vqa_shapes_and_reports_zero_shot_accuracy(tmp_path, tiny_model_dirs, one_thread):
    cfg = tiny_cfg(tmp_path, loss="tecoa", train_steps=2, batch_size=4, n_heldout_images=12)
    _, steps, robustness = finetune(cfg, str(tiny_model_dirs["llava"]), tmp_path / "tecoa")
    after = robustness["after"]
    assert steps == 2 and robustness["loss"] == "tecoa"
    for share in (after["clean_accuracy"], after["pgd_accuracy"]):  # shares of the 12 held-out images
        assert 0 <= share <= 1 and abs(share * 12 - round(share * 12)) < 1e-9
    assert after["pgd_accuracy"] <= after["clean_accuracy"] + 1 / 12  # the attack does not help the classifier
