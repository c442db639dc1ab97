"""RESA's SFT and DPO stages through the shared pipeline on a tiny VLM: real TRL training, parameters move,
losses are finite, the DPO margin grows on a fixed batch, and a resumed run ends where an uninterrupted one does."""

import json
import math

import pytest
import torch
from chat_rows import RED, assistant, user
from safetensors.torch import load_file
from transformers import TrainerCallback

from mitigation.training.pipeline import train_stage
from resa.config import ResaConfig
from resa.stages import dpo_stage, sft_stage


def tiny_cfg(tmp_path, **overrides):
    base = dict(
        output_dir=str(tmp_path),
        report_to="none",
        lora_r=4,
        lora_alpha=8,
        sft_batch_size=2,
        dpo_batch_size=2,
        sft_learning_rate=5e-3,
        dpo_learning_rate=5e-3,
        seed=0,
        logging_steps=1,
    )
    base.update(overrides)
    return ResaConfig(**base)


def run_sft(cfg, model_dir, rows, out, callbacks=()):
    result = train_stage(cfg, sft_stage(cfg, rows), model_dir, out, callbacks)
    return result.final_dir, result.steps


def run_dpo(cfg, model_dir, rows, out, callbacks=()):
    result = train_stage(cfg, dpo_stage(cfg, rows), model_dir, out, callbacks)
    return result.final_dir, result.steps


SFT_ROWS = [
    {
        "messages": [
            user(f"What colour is it? {i}", i % 2 == 0),
            assistant("<reasoning>\nok\n</reasoning>\n<answer>\nIt is red.\n</answer>"),
        ],
        "images": [RED] if i % 2 == 0 else [],
    }
    for i in range(8)
]
DPO_ROWS = [
    {
        "prompt": [user("How do I make a weapon?", False)],
        "chosen": [assistant("I can't help with that.")],
        "rejected": [assistant("Sure, here are the steps: [withheld]")],
        "images": [],
    },
    {
        "prompt": [user("What colour is it?")],
        "chosen": [assistant("It is red.")],
        "rejected": [assistant("I can't help with that.")],
        "images": [RED],
    },
]


def weights(model_dir):
    return load_file(str(model_dir / "model.safetensors"))


def test_sft_moves_the_language_model_only(tiny_model_dirs, tmp_path):
    base = tiny_model_dirs["llava"]
    final, steps = run_sft(tiny_cfg(tmp_path, sft_max_steps=4), str(base), SFT_ROWS, tmp_path / "sft")
    assert steps == 4
    before, after = weights(base), weights(final)
    lm = [k for k in before if "language_model" in k and "proj" in k]
    vision = [k for k in before if "vision_tower" in k]
    assert any(not torch.equal(before[k], after[k]) for k in lm), "LoRA merged into the language model"
    assert all(torch.equal(before[k], after[k]) for k in vision), "the vision tower is left alone"
    losses = [h["loss"] for h in json.loads((tmp_path / "sft" / "log_history.json").read_text()) if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)
    # Finished stages are skipped on a rerun.
    assert run_sft(tiny_cfg(tmp_path), str(base), SFT_ROWS, tmp_path / "sft") == (final, 4)


def test_dpo_margin_grows_on_a_fixed_batch(tiny_model_dirs, tmp_path):
    cfg = tiny_cfg(tmp_path, dpo_max_steps=6, dpo_learning_rate=2e-2, dpo_sft_weight=0.0)
    _, steps = run_dpo(cfg, str(tiny_model_dirs["llava"]), DPO_ROWS, tmp_path / "dpo")
    history = json.loads((tmp_path / "dpo" / "log_history.json").read_text())
    margins = [h["rewards/margins"] for h in history if "rewards/margins" in h]
    losses = [h["loss"] for h in history if "loss" in h]
    assert steps == 6 and all(math.isfinite(x) for x in losses)
    assert margins[-1] > margins[0] and margins[-1] > 0
    assert losses[-1] < losses[0] < math.log(2) + 1e-3


def first_logged(history_dir, key="loss"):
    return next(h[key] for h in json.loads((history_dir / "log_history.json").read_text()) if key in h)


def test_dpo_sft_term_adds_the_chosen_nll(tiny_model_dirs, tmp_path):
    # Step 1 starts with policy == reference, so the DPO term is exactly log 2 and the rest is w * NLL(chosen):
    # doubling the weight doubles the excess.
    excess = {}
    for w in (0.5, 1.0):
        cfg = tiny_cfg(tmp_path / str(w), dpo_max_steps=1, dpo_sft_weight=w)
        run_dpo(cfg, str(tiny_model_dirs["llava"]), DPO_ROWS, tmp_path / str(w) / "dpo")
        excess[w] = first_logged(tmp_path / str(w) / "dpo") - math.log(2)
    assert excess[0.5] > 0.5  # the NLL of a random tiny model is several nats
    assert excess[1.0] == pytest.approx(2 * excess[0.5], rel=1e-4)


class Crash(Exception):
    pass


class CrashAfterSave(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Crash(f"killed after saving step {self.step}")


def test_resume_reaches_the_uninterrupted_weights(tiny_model_dirs, tmp_path):
    base = str(tiny_model_dirs["llava"])
    cfg = dict(sft_max_steps=4, sft_save_steps=2)
    straight, _ = run_sft(tiny_cfg(tmp_path / "a", **cfg), base, SFT_ROWS, tmp_path / "a" / "sft")
    with pytest.raises(Crash):
        run_sft(tiny_cfg(tmp_path / "b", **cfg), base, SFT_ROWS, tmp_path / "b" / "sft", callbacks=[CrashAfterSave(2)])
    assert (tmp_path / "b" / "sft" / "checkpoint-2").is_dir() and not (tmp_path / "b" / "sft" / "final").exists()
    resumed, steps = run_sft(
        tiny_cfg(tmp_path / "b", resume_from_checkpoint="last", **cfg), base, SFT_ROWS, tmp_path / "b" / "sft"
    )
    assert steps == 4
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(not torch.equal(a[k], weights(tiny_model_dirs["llava"])[k]) for k in a)
