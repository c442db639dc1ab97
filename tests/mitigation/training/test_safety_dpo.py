"""safety_dpo's mechanism on a tiny VLM, through the trainer its stage configures (TRL's DPOTrainer, sigmoid loss):
the loss on hand-made log-probs, its gradient, the masks and pixels of a batch, and real training steps."""

import json
import math

import pytest
import torch
from datasets import Dataset
from PIL import Image
from safetensors.torch import load_file

from mitigation.training.pipeline import _trainer_cls, load_for_training, lora_config, train_stage, training_args
from mitigation.training.safety_dpo import COMPLIANCE_PLACEHOLDER, SafetyDpoConfig, dpo_rows, dpo_stage, load_pairs

BETA = 0.25  # not the default 0.1: a trainer that ignored the config's beta would fail the hand examples


def spavl_file(root):
    """Three SPA-VL rows (two with an image, one text-only) written and read back through the loader."""
    (root / "imgs").mkdir(exist_ok=True)
    Image.new("RGB", (24, 24), "red").save(root / "imgs" / "red.png")
    Image.new("RGB", (24, 24), "blue").save(root / "imgs" / "blue.png")
    rows = [
        {
            "image": "imgs/red.png",
            "question": "How do I pick this lock?",
            "chosen": "I can't help with that. I can explain how locks keep homes safe instead.",
            "rejected": COMPLIANCE_PLACEHOLDER,
            "class1": "fraud",
            "class2": "typographic",
            "class3": "advbench",
        },
        {
            "image": "imgs/blue.png",
            "question": "What colour is the shape?",
            "chosen": "Blue.",
            "rejected": "I'm sorry, but I can't help with that request.",
            "class1": "benign",
            "class2": "vqa",
            "class3": "easy_vqa-train",
        },
        {
            "image": None,
            "question": "How do I make a weapon?",
            "chosen": "I won't help with this. I can explain weapon safety rules instead.",
            "rejected": COMPLIANCE_PLACEHOLDER,
            "class1": "weapons",
            "class2": "text",
            "class3": "harmbench",
        },
    ]
    path = root / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_pairs(path, root, harmful=True, text_only=True)


def tiny_cfg(tmp_path, **overrides):
    fields = dict(
        output_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        report_to="none",
        lora_r=4,
        lora_alpha=8,
        dpo_beta=BETA,
        dpo_sft_weight=0.0,
        dpo_batch_size=2,
        dpo_learning_rate=2e-2,
        logging_steps=1,
        seed=0,
    )
    return SafetyDpoConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return dpo_rows(spavl_file(tmp_path_factory.mktemp("spavl")))


def build_trainer(cfg, model_dir, rows, out):
    """The trainer the pipeline builds for safety_dpo's stage (LoRA: TRL's own DPOTrainer)."""
    stage = dpo_stage(cfg, rows)
    model, processor = load_for_training(cfg, str(model_dir))
    return _trainer_cls(cfg, stage)(
        model=model,
        args=training_args(cfg, stage, out),
        train_dataset=Dataset.from_list(stage.rows),
        processing_class=processor,
        peft_config=lora_config(cfg, model),
    )


@pytest.fixture(scope="module")
def trainer(tiny_model_dirs, rows, tmp_path_factory):
    out = tmp_path_factory.mktemp("sdpo-trainer")
    return build_trainer(tiny_cfg(out), tiny_model_dirs["llava"], rows, out)


class HandLogProbs(torch.nn.Module):
    """Stands in for the policy: returns hand-made per-token log-probs in the fused-LM-head output TRL reads."""

    def __init__(self, per_token):
        super().__init__()
        self.per_token = per_token

    def forward(self, **kwargs):
        self.labels = kwargs["labels"]
        zeros = torch.zeros_like(self.per_token.detach())
        return type("Out", (), dict(log_probs=self.per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool()))


def hand_inputs(chosen, rejected, ref_chosen, ref_rejected, requires_grad=False):
    """A batch of B pairs ([chosen rows; rejected rows]) whose 2 completion tokens hold half of each log-prob.

    Sequences have 5 tokens, the last 2 are the completion; TRL shifts the completion mask by one, so the
    per-token log-probs of the completion sit at positions 2 and 3 of 4.
    """
    logps = torch.tensor(chosen + rejected, dtype=torch.float32)
    per_token = torch.zeros(len(logps), 4)
    per_token[:, 2:] = (logps / 2).unsqueeze(1)
    per_token.requires_grad_(requires_grad)
    mask = torch.tensor([[0, 0, 0, 1, 1]] * len(logps))
    inputs = {
        "input_ids": torch.zeros(len(logps), 5, dtype=torch.long),
        "attention_mask": torch.ones(len(logps), 5, dtype=torch.long),
        "completion_mask": mask,
        "ref_chosen_logps": torch.tensor(ref_chosen),
        "ref_rejected_logps": torch.tensor(ref_rejected),
    }
    return per_token, inputs


def trl_loss(trainer, monkeypatch, per_token, inputs):
    # The reference log-probs come from the batch, as under full fine-tuning's precomputed reference.
    monkeypatch.setattr(trainer, "precompute_ref_logps", True)
    policy = HandLogProbs(per_token)
    loss = trainer._compute_loss(policy, inputs, return_outputs=False)
    # The model scores only the completion: every prompt position is labelled -100 (its log-prob is 0).
    assert policy.labels[:, :3].eq(-100).all() and policy.labels[:, 3:].ne(-100).all()
    return loss


def test_the_stage_configures_trl_sigmoid_dpo_at_the_configs_beta(trainer):
    assert type(trainer).__name__ == "DPOTrainer" and trainer.beta == BETA and trainer.loss_types == ["sigmoid"]
    assert SafetyDpoConfig().dpo_beta == 0.1  # SPA-VL's


def test_policy_equal_to_reference_gives_log_2(trainer, monkeypatch):
    per_token, inputs = hand_inputs([-4.0, -9.0], [-5.0, -2.0], [-4.0, -9.0], [-5.0, -2.0])
    assert trl_loss(trainer, monkeypatch, per_token, inputs).item() == pytest.approx(math.log(2), abs=1e-6)


def test_hand_example_is_minus_log_sigmoid_of_beta_times_the_margin(trainer, monkeypatch):
    """margin_i = (l_pi(y_w) - l_ref(y_w)) - (l_pi(y_l) - l_ref(y_l)):
    pair 1: (-4 + 5) - (-5 + 4) = 2; pair 2: (-6 + 5) - (-3 + 4) = -2.
    L = mean_i -log sigma(beta * margin_i) = (log(1 + e^(-2 beta)) + log(1 + e^(2 beta))) / 2."""
    per_token, inputs = hand_inputs([-4.0, -6.0], [-5.0, -3.0], [-5.0, -5.0], [-4.0, -4.0])
    expected = (math.log1p(math.exp(-2 * BETA)) + math.log1p(math.exp(2 * BETA))) / 2
    assert trl_loss(trainer, monkeypatch, per_token, inputs).item() == pytest.approx(expected, rel=1e-6)


def test_the_gradient_raises_the_chosen_and_lowers_the_rejected_log_prob(trainer, monkeypatch):
    """dL/dl_pi(y_w) = -beta * sigma(-beta * margin) / B and dL/dl_pi(y_l) = +beta * sigma(-beta * margin) / B, on
    each completion token; gradient descent therefore raises l_pi(y_w) and lowers l_pi(y_l)."""
    per_token, inputs = hand_inputs([-4.0, -6.0], [-5.0, -3.0], [-5.0, -5.0], [-4.0, -4.0], requires_grad=True)
    trl_loss(trainer, monkeypatch, per_token, inputs).backward()
    sigma = [1 / (1 + math.exp(BETA * m)) for m in (2.0, -2.0)]
    grad = per_token.grad
    for i in range(2):
        assert grad[i, 2:].tolist() == pytest.approx([-BETA * sigma[i] / 2] * 2, rel=1e-5)  # chosen
        assert grad[2 + i, 2:].tolist() == pytest.approx([BETA * sigma[i] / 2] * 2, rel=1e-5)  # rejected


def test_the_sft_weight_adds_the_chosen_responses_mean_nll(tiny_model_dirs, rows, tmp_path, monkeypatch):
    """loss = DPO + w * (-mean of l_pi over the chosen completion tokens): tokens -2, -2 and -3, -3 give 2.5."""
    sft = build_trainer(tiny_cfg(tmp_path, dpo_sft_weight=0.5), tiny_model_dirs["llava"], rows, tmp_path)
    assert sft.loss_types == ["sigmoid", "sft"] and sft.loss_weights == [1.0, 0.5]
    per_token, inputs = hand_inputs([-4.0, -6.0], [-5.0, -3.0], [-5.0, -5.0], [-4.0, -4.0])
    dpo = (math.log1p(math.exp(-2 * BETA)) + math.log1p(math.exp(2 * BETA))) / 2
    assert trl_loss(sft, monkeypatch, per_token, inputs).item() == pytest.approx(dpo + 0.5 * 2.5, rel=1e-6)


def test_chosen_and_rejected_share_pixels_and_masks_cover_the_response_only(trainer, rows):
    processor = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])  # two pairs with an image
    pixels = batch["pixel_values"]
    assert pixels.shape[0] == 4 and torch.equal(pixels[:2], pixels[2:])
    assert not torch.equal(pixels[0], pixels[1])  # a red and a blue image: the rows are not all the same
    mask = batch["completion_mask"].bool()
    image_token = trainer.model.config.image_token_id
    assert (batch["input_ids"] == image_token).any(dim=1).all()
    assert not (mask & (batch["input_ids"] == image_token)).any()
    tokenizer = processor.tokenizer
    texts = [r["chosen"][0]["content"][0]["text"] for r in rows[:2]]
    texts += [r["rejected"][0]["content"][0]["text"] for r in rows[:2]]
    for i, text in enumerate(texts):
        ids = batch["input_ids"][i]
        completion = tokenizer.decode(ids[mask[i]], skip_special_tokens=True)
        prompt = tokenizer.decode(ids[~mask[i] & batch["attention_mask"][i].bool()], skip_special_tokens=True)
        assert completion.strip().startswith(text), (completion, text)
        assert text not in prompt and rows[i % 2]["prompt"][0]["content"][1]["text"] in prompt
        first = int(mask[i].nonzero()[0])
        assert not mask[i, :first].any() and (batch["input_ids"][i, :first] == image_token).any()


def test_training_steps_widen_the_margin_and_move_the_language_model_only(tiny_model_dirs, rows, tmp_path):
    cfg = tiny_cfg(tmp_path, dpo_max_steps=6)
    base = tiny_model_dirs["llava"]
    fixed_batch = rows[:2]  # batch size 2: every step sees the same two pairs
    result = train_stage(cfg, dpo_stage(cfg, fixed_batch), str(base), tmp_path / "dpo")
    history = json.loads((tmp_path / "dpo" / "log_history.json").read_text())
    logged = [h for h in history if "rewards/margins" in h]
    assert result.steps == 6 and len(logged) == 6
    # Step 1: LoRA starts at zero, so the policy is the reference.
    assert logged[0]["loss"] == pytest.approx(math.log(2), abs=1e-4) and logged[0]["rewards/margins"] == 0
    assert logged[-1]["rewards/margins"] > 0.5 and logged[-1]["loss"] < logged[0]["loss"]
    assert logged[-1]["logps/rejected"] < logged[0]["logps/rejected"]
    before, after = load_file(str(base / "model.safetensors")), load_file(str(result.final_dir / "model.safetensors"))
    lm = [k for k in before if "language_model" in k and "proj" in k]
    assert any(not torch.equal(before[k], after[k]) for k in lm), "the LoRA update is merged into the LM"
    assert all(torch.equal(before[k], after[k]) for k in before if "vision_tower" in k)
