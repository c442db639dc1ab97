"""RESA's SFT and DPO stages on a tiny VLM: real TRL training, parameters move, losses are finite, the DPO
margin grows on a fixed batch, and a resumed run ends where an uninterrupted one does."""

import json
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import TrainerCallback

from resa.config import ResaConfig
from resa.stages import run_dpo, run_sft

RED = Image.new("RGB", (32, 32), "red")


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


def user(text, image=True):
    return {"role": "user", "content": ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]}


def assistant(text):
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


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


def test_scoring_labelled_positions_only_keeps_the_loss(tiny_model_dirs, tmp_path, monkeypatch):
    import trl.trainer.utils as trl_utils

    import resa.stages

    cpu = torch.device("cpu")
    monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)  # the hook is undone after the test
    hook = resa.stages.score_labelled_positions_only

    def one_step(name):
        out = tmp_path / name
        run_sft(tiny_cfg(out, sft_max_steps=1), str(tiny_model_dirs["llava"]), SFT_ROWS, out / "sft")
        return first_logged(out / "sft"), first_logged(out / "sft", "grad_norm")

    monkeypatch.setattr(resa.stages, "score_labelled_positions_only", lambda: False)
    if getattr(trl_utils._use_triton, "_resa_compact", False):  # installed by an earlier test
        monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)
    assert not trl_utils._use_triton(cpu)
    every_position = one_step("full")
    monkeypatch.setattr(resa.stages, "score_labelled_positions_only", hook)
    labelled_only = one_step("compact")
    assert trl_utils._use_triton(cpu), "the hook was installed"
    assert labelled_only == pytest.approx(every_position, rel=1e-5)


def test_plain_lm_head_matches_trls_chunked_kernel():
    from trl.kernels import ChunkedLogProbFunction

    from resa.stages import plain_log_probs

    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=gen)
    weight, bias = torch.randn(300, 16, generator=gen), torch.randn(300, generator=gen)
    targets = torch.randint(0, 300, (37,), generator=gen)
    targets[:5] = (hidden[:5] @ weight.T + bias).argmax(-1)  # some targets are the top word (the transforms keep order)
    outputs = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
    results, grads = [], []
    for fn in (ChunkedLogProbFunction.apply, plain_log_probs):
        leaves = [t.clone().requires_grad_(True) for t in (hidden, weight, bias)]
        # temperature 0.7, a chunk of 128 words (3 tiles in TRL), softcap 5, logit scale 0.5
        out = fn(*leaves, targets, 0.7, 128, 5.0, 0.5, outputs)
        (out[0].sum() + 0.3 * out[1].sum()).backward()  # through the log-probs and the entropy
        results.append(out)
        grads.append([t.grad for t in leaves])
    (trl_log_probs, *trl_rest), (plain_log_probs_, *plain_rest) = results
    assert torch.allclose(plain_log_probs_, trl_log_probs, atol=1e-5)
    for trl_value, plain_value in zip(trl_rest, plain_rest, strict=True):
        if trl_value.dtype == torch.bool:
            assert torch.equal(plain_value, trl_value) and plain_value.any()
        else:
            assert torch.allclose(plain_value, trl_value, atol=1e-5)
    for trl_grad, plain_grad in zip(*grads, strict=True):
        assert torch.allclose(plain_grad, trl_grad, atol=1e-4)


def test_plain_lm_head_on_cpu_keeps_the_sft_step(tiny_model_dirs, tmp_path, monkeypatch):
    import trl.trainer.utils as trl_utils

    import resa.stages

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", trl_utils._ChunkedLogProbFunction)  # undone after
    hook = resa.stages.plain_lm_head_on_cpu

    def one_step(name):
        out = tmp_path / name
        run_sft(tiny_cfg(out, sft_max_steps=1), str(tiny_model_dirs["llava"]), SFT_ROWS, out / "sft")
        return [first_logged(out / "sft", key) for key in ("loss", "grad_norm", "entropy", "mean_token_accuracy")]

    monkeypatch.setattr(resa.stages, "plain_lm_head_on_cpu", lambda: False)
    if getattr(trl_utils._ChunkedLogProbFunction, "_resa_plain", False):  # installed by an earlier test
        from trl.kernels import ChunkedLogProbFunction

        monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", ChunkedLogProbFunction)
    chunked = one_step("chunked")
    monkeypatch.setattr(resa.stages, "plain_lm_head_on_cpu", hook)
    plain = one_step("plain")
    assert getattr(trl_utils._ChunkedLogProbFunction, "_resa_plain", False), "the hook was installed"
    assert plain == pytest.approx(chunked, rel=1e-5)


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
