"""hallucination_dpo's mechanism: the mDPO loss on hand-set log-probs (METHODS 3.6, beta 0.1), the image corruption,
the DDPO token diff and weights, and `MdpoTrainer` on a tiny LLaVA (shared corruption, parameters move, margin
grows)."""

import math

import pytest
import torch
from chat_rows import assistant, user
from datasets import Dataset
from PIL import Image
from trl import DPOConfig

from mitigation.training.config import TrainingConfig
from mitigation.training.hallucination_dpo import (
    MdpoSettings,
    MdpoTrainer,
    SequenceLogps,
    changed_tokens,
    corrupt_images,
    crop_box,
    ddpo_weights,
    mdpo_loss,
    summed_logps,
    with_corrupted_chosen,
)
from mitigation.training.pipeline import load_for_training, lora_config

BETA = 0.1


def logps(chosen, rejected, corrupted, **weighted):
    t = lambda v: torch.tensor([float(v)])  # noqa: E731
    return SequenceLogps(t(chosen), t(rejected), t(corrupted), **{k: t(v) for k, v in weighted.items()})


# ---------------------------------------------------------------- the loss on hand-set log-probs


def test_worked_example_of_methods_3_6():
    """Policy (-10, -14, -13), reference (-11, -12, -12): margins 3, 2, 1 -> 0.5544 + 0.5981 + 0.6444 = 1.7969."""
    loss, parts = mdpo_loss(logps(-10, -14, -13), logps(-11, -12, -12), BETA)
    assert parts["dpo"].item() == pytest.approx(0.5544, abs=1e-4)
    assert parts["image"].item() == pytest.approx(0.5981, abs=1e-4)
    assert parts["anchor"].item() == pytest.approx(0.6444, abs=1e-4)
    assert loss.item() == pytest.approx(1.7969, abs=1e-4)
    # rewards: beta * log-ratios; imageless = the chosen response's on m'
    assert parts["chosen_rewards"].item() == pytest.approx(0.1)
    assert parts["rejected_rewards"].item() == pytest.approx(-0.2)
    assert parts["imageless_rewards"].item() == pytest.approx(-0.1)


def test_policy_equal_to_reference_gives_three_log_two():
    same = logps(-7.5, -9.0, -8.25)
    loss, _ = mdpo_loss(same, same, BETA)
    assert loss.item() == pytest.approx(3 * math.log(2))


def test_terms_can_be_dropped():
    """Without L_img and L_anc what is left is DPO: -log s(0.3)."""
    loss, _ = mdpo_loss(logps(-10, -14, -13), logps(-11, -12, -12), BETA, image_term=False, anchor_term=False)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.3))))


def test_raising_the_chosen_logp_on_the_corrupted_image_raises_the_loss():
    ref = logps(-11, -12, -12)
    low, _ = mdpo_loss(logps(-10, -14, -13), ref, BETA)
    high, _ = mdpo_loss(logps(-10, -14, -11), ref, BETA)
    assert high.item() > low.item()


def test_gradient_raises_chosen_and_lowers_rejected_and_corrupted():
    chosen, rejected, corrupted = (torch.tensor([v], requires_grad=True) for v in (-10.0, -14.0, -13.0))
    loss, _ = mdpo_loss(SequenceLogps(chosen, rejected, corrupted), logps(-11, -12, -12), BETA)
    loss.backward()
    assert chosen.grad.item() < 0 < rejected.grad.item() and corrupted.grad.item() > 0


def test_token_weighted_dpo_term_equals_a_hand_computation():
    """Per-token log-probs of one pair, 4 positions, the last one padding; gamma 3 on position 1 of both.

    policy chosen (-1, -2, -3 | pad), rejected (-1, -4, -3 | pad); reference chosen (-1, -3, -3), rejected
    (-1, -3, -3). Weighted sums: policy 1*-1 + 3*-2 + 1*-3 = -10 and -1 - 12 - 3 = -16; reference -13 and -13.
    DPO margin (-10 + 13) - (-16 + 13) = 6 -> -log s(0.6) = 0.43748."""
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 1, 0]])
    weights = torch.tensor([[1.0, 3, 1, 1], [1, 3, 1, 1]])
    policy_tok = torch.tensor([[-1.0, -2, -3, -9], [-1, -4, -3, -9]])
    ref_tok = torch.tensor([[-1.0, -3, -3, -9], [-1, -3, -3, -9]])
    pw, rw = summed_logps(policy_tok, mask, weights), summed_logps(ref_tok, mask, weights)
    assert pw.tolist() == [-10.0, -16.0] and rw.tolist() == [-13.0, -13.0]
    plain_p, plain_r = summed_logps(policy_tok, mask), summed_logps(ref_tok, mask)
    policy = SequenceLogps(plain_p[:1], plain_p[1:], plain_p[:1], chosen_dpo=pw[:1], rejected_dpo=pw[1:])
    reference = SequenceLogps(plain_r[:1], plain_r[1:], plain_r[:1], chosen_dpo=rw[:1], rejected_dpo=rw[1:])
    _, parts = mdpo_loss(policy, reference, BETA)
    assert parts["dpo"].item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.6))), abs=1e-6)
    # the other terms use the plain sums: chosen ratio (-6) - (-7) = 1 -> anchor -log s(0.1)
    assert parts["anchor"].item() == pytest.approx(0.6444, abs=1e-4)


# ---------------------------------------------------------------- DDPO's token diff


def test_diff_marks_exactly_the_edited_tokens():
    chosen = [5, 6, 7, 8, 20, 9, 10, 11]
    rejected = [5, 6, 7, 8, 21, 22, 9, 10, 11]
    changed_c, changed_r = changed_tokens(chosen, rejected)
    assert [t for t, c in zip(chosen, changed_c, strict=True) if c] == [20]
    assert [t for t, c in zip(rejected, changed_r, strict=True) if c] == [21, 22]


def test_shared_runs_shorter_than_three_count_as_changed():
    """The common "30" between two edits is a run of 1: changed too (and with min_match 1 it is kept)."""
    chosen, rejected = [1, 2, 3, 40, 30, 41, 4, 5, 6], [1, 2, 3, 50, 30, 51, 4, 5, 6]
    assert changed_tokens(chosen, rejected)[0] == [False] * 3 + [True] * 3 + [False] * 3
    assert changed_tokens(chosen, rejected, min_match=1)[0] == [False] * 3 + [True, False, True] + [False] * 3


def test_ddpo_weights_align_with_the_shifted_completion_tokens():
    """Rows [chosen; rejected] of one pair: 2 prompt tokens (90, 91), then the completion; weights index the
    shifted log-probs (position t scores token t + 1)."""
    input_ids = torch.tensor([[90, 91, 5, 6, 7, 20, 9, 10, 11, 0], [90, 91, 5, 6, 7, 21, 22, 9, 10, 11]])
    completion = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]])
    weights = ddpo_weights(input_ids, completion, gamma=3.0)
    assert weights.shape == (2, 9)
    assert (weights[0] == 3).nonzero().squeeze(1).tolist() == [4]  # scores token 5 (id 20)
    assert (weights[1] == 3).nonzero().squeeze(1).tolist() == [4, 5]  # ids 21, 22
    assert ddpo_weights(input_ids, completion, gamma=1.0).eq(1).all()


# ---------------------------------------------------------------- corruption


def test_crop_box_area_share_lies_in_the_scale_and_spans_it():
    g = torch.Generator().manual_seed(0)
    shares = []
    for _ in range(400):
        top, left, h, w = crop_box(336, 336, (0.01, 0.2), g)
        assert top >= 0 and top + h <= 336 and left >= 0 and left + w <= 336
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
        shares.append(h * w / 336**2)
    assert 0.01 - 0.002 <= min(shares) < 0.03 and 0.18 < max(shares) <= 0.2 + 0.005


def test_corruption_keeps_the_shape_and_is_redrawn_every_call():
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(3, 3, 24, 24)
    a, b = corrupt_images(pixels, (0.01, 0.2), g), corrupt_images(pixels, (0.01, 0.2), g)
    assert a.shape == b.shape == pixels.shape and a.dtype == pixels.dtype
    assert not torch.allclose(a, pixels) and not torch.allclose(a, b)
    five_d = torch.randn(2, 2, 3, 16, 16)  # LLaVA-NeXT patches / Idefics3 rows
    assert corrupt_images(five_d, (0.01, 0.2), g).shape == five_d.shape


def test_flattened_patches_are_a_clear_error():
    with pytest.raises(ValueError, match=r"Qwen2-VL.*PIL image before processing"):
        corrupt_images(torch.randn(32, 384), (0.01, 0.2), torch.Generator())


def test_corrupted_rows_repeat_the_chosen_rows_and_their_images():
    batch = {
        "input_ids": torch.arange(8).view(4, 2),
        "attention_mask": torch.ones(4, 2),
        "completion_mask": torch.ones(4, 2),
        "pixel_values": torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2),
    }
    fake = torch.full((2, 3, 2, 2), -1.0)
    rows = with_corrupted_chosen(batch, fake)
    assert rows["input_ids"].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [0, 1], [2, 3]]
    assert rows["pixel_values"][:, 0, 0, 0].tolist() == [0, 1, 2, 3, -1, -1]
    with pytest.raises(ValueError, match="'image_grid_thw'"):
        with_corrupted_chosen({**batch, "image_grid_thw": torch.ones(4, 3)}, fake)


# ---------------------------------------------------------------- the trainer on a tiny LLaVA


def noise_image(seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(32, 32, 3, generator=g) * 255).byte().numpy())


PAIRS = [
    {
        "prompt": [user(f"What colour is the shape? {i}")],
        "chosen": [assistant("Red. The image shows a red circle.")],
        "rejected": [assistant("Blue. The image shows a blue circle.")],
        "images": [noise_image(i)],
    }
    for i in range(4)
]


def make_trainer(model_dir, tmp_path, settings=MdpoSettings(), *, lora=True, **args):
    model, processor = load_for_training(TrainingConfig(), str(model_dir))
    base = dict(output_dir=str(tmp_path / "out"), max_length=None, report_to="none", per_device_train_batch_size=4)
    base.update(max_steps=4, logging_steps=1, learning_rate=5e-3, bf16=False, beta=BETA, save_strategy="no")
    peft = lora_config(TrainingConfig(lora_r=4, lora_alpha=8), model) if lora else None
    return MdpoTrainer.configured(settings)(
        model=model,
        args=DPOConfig(**{**base, **args}),
        train_dataset=Dataset.from_list(PAIRS),
        processing_class=processor,
        peft_config=peft,
    )


def collate(trainer):
    return trainer._prepare_inputs(trainer.data_collator([dict(r) for r in trainer.train_dataset]))


@pytest.fixture(scope="module")
def llava(tiny_model_dirs):
    return tiny_model_dirs["llava"]


def spy_forwards(trainer):
    """Record the pixel values each forward (policy / reference) was given."""
    seen = {"policy": [], "reference": []}
    original = trainer._per_token_logps

    def spy(model, rows, *, reference):
        seen["reference" if reference else "policy"].append(rows["pixel_values"].clone())
        return original(model, rows, reference=reference)

    trainer._per_token_logps = spy
    return seen


def test_fresh_lora_policy_equals_reference_so_the_trainer_loss_is_three_log_two(llava, tmp_path):
    trainer = make_trainer(llava, tmp_path)
    seen = spy_forwards(trainer)
    loss = trainer.compute_loss(trainer.model, collate(trainer))
    assert loss.item() == pytest.approx(3 * math.log(2), abs=1e-5)
    (policy,), (reference,) = seen["policy"], seen["reference"]
    assert torch.equal(policy, reference)  # shared corruption: the same m'
    assert policy.shape[0] == 12  # 4 chosen + 4 rejected images, then the 4 chosen corrupted
    assert torch.equal(policy[:4], policy[4:8]) and not torch.allclose(policy[8:], policy[:4])


def test_independent_corruption_gives_the_reference_its_own_crop(llava, tmp_path):
    trainer = make_trainer(llava, tmp_path, MdpoSettings(share_corruption=False))
    seen = spy_forwards(trainer)
    trainer.compute_loss(trainer.model, collate(trainer))
    (policy,), (reference,) = seen["policy"], seen["reference"]
    assert torch.equal(policy[:8], reference[:8]) and not torch.allclose(policy[8:], reference[8:])


def test_the_corrupted_image_is_redrawn_every_step(llava, tmp_path):
    trainer = make_trainer(llava, tmp_path)
    batch = collate(trainer)
    first, second = trainer.corrupted_pixels(batch), trainer.corrupted_pixels(batch)
    assert first.shape == batch["pixel_values"][:4].shape and not torch.allclose(first, second)


def test_ddpo_with_gamma_one_equals_mdpo_and_gamma_three_differs(llava, tmp_path):
    trainer = make_trainer(llava, tmp_path)
    batch = collate(trainer)
    rows = with_corrupted_chosen(batch, trainer.corrupted_pixels(batch))
    with torch.no_grad():
        policy_tok = trainer._per_token_logps(trainer.model, rows, reference=False)
    ref_tok = policy_tok - 0.05 * torch.arange(policy_tok.shape[1])  # a reference that differs token by token

    def loss(weights):
        policy = trainer.sequence_logps(policy_tok, rows, weights)
        return mdpo_loss(policy, trainer.sequence_logps(ref_tok, rows, weights), BETA)[0].item()

    ids, mask = batch["input_ids"], batch["completion_mask"]
    assert loss(ddpo_weights(ids, mask, gamma=1.0)) == pytest.approx(loss(None), abs=1e-6)
    assert loss(ddpo_weights(ids, mask, gamma=3.0)) != pytest.approx(loss(None), abs=1e-4)


def test_training_moves_the_parameters_and_grows_the_margin_on_a_fixed_batch(llava, tmp_path):
    trainer = make_trainer(llava, tmp_path, MdpoSettings(ddpo_weight=3.0))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)
    logs = [h for h in trainer.state.log_history if "rewards/margins" in h]
    assert len(logs) == 4 and logs[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert logs[-1]["rewards/margins"] > logs[1]["rewards/margins"] > 0
    assert logs[-1]["loss"] < logs[0]["loss"]
    assert {"rewards/imageless_chosen", "rewards/imageless_margins", "loss/image", "loss/anchor"} <= set(logs[-1])


def test_full_fine_tuning_keeps_a_reference_model(llava, tmp_path):
    trainer = make_trainer(llava, tmp_path, lora=False)
    assert trainer.ref_model is not None and not trainer.precompute_ref_logps
    with pytest.raises(ValueError, match="precompute_ref_log_probs"):
        make_trainer(llava, tmp_path, lora=False, precompute_ref_log_probs=True)


def test_a_family_with_flattened_patches_fails_before_training(tiny_model_dirs, tmp_path):
    with pytest.raises(ValueError, match="Qwen2-VL"):
        make_trainer(tiny_model_dirs["qwen2_vl"], tmp_path)
