"""The CPU speed-ups of TRL's fused LM head: the same losses and gradients as TRL's own kernel, installed only
inside the `with` block, TRL's originals back afterwards (so no test depends on another's order)."""

import json

import pytest
import torch
import trl.trainer.utils as trl_utils
from chat_rows import RED
from trl.kernels import ChunkedLogProbFunction

from mitigation.training import trl_hooks
from mitigation.training.pipeline import Stage, train_stage
from mitigation.training.trl_hooks import cpu_lm_head_speedups, plain_log_probs
from resa.config import ResaConfig

ROWS = [
    {
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"What colour is it? {i}"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "It is red."}]},
        ],
        "images": [RED],
    }
    for i in range(4)
]


def test_plain_lm_head_matches_trls_chunked_kernel():
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


def test_the_hooks_exist_only_inside_the_block():
    originals = (trl_utils._use_triton, trl_utils._ChunkedLogProbFunction)
    cpu = torch.device("cpu")
    assert not originals[0](cpu), "TRL 1.16 scores every position off Triton devices"
    with cpu_lm_head_speedups() as installed:
        assert installed == ["_ChunkedLogProbFunction", "_use_triton"]
        assert trl_utils._use_triton(cpu)
        assert trl_utils._ChunkedLogProbFunction is not originals[1]
    assert (trl_utils._use_triton, trl_utils._ChunkedLogProbFunction) == originals
    with pytest.raises(RuntimeError), cpu_lm_head_speedups():
        raise RuntimeError("a failing train() restores TRL too")
    assert (trl_utils._use_triton, trl_utils._ChunkedLogProbFunction) == originals


def test_another_trl_version_is_left_alone(monkeypatch, caplog):
    import trl

    monkeypatch.setattr(trl, "__version__", "9.0.0")
    with caplog.at_level("INFO"), cpu_lm_head_speedups() as installed:
        assert installed == []
        assert trl_utils._ChunkedLogProbFunction is ChunkedLogProbFunction
    assert "written for TRL 1.16" in caplog.text


def test_large_logits_go_through_trls_tiled_kernel(monkeypatch):
    calls = []

    class Recorder:
        @staticmethod
        def apply(*args):
            calls.append(args[0].shape)
            return ChunkedLogProbFunction.apply(*args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Recorder)
    monkeypatch.setattr(trl_hooks, "MAX_PLAIN_ELEMENTS", 10 * 300)  # 10 rows x 300 words
    weight = torch.randn(300, 8)

    def head(rows):
        targets = torch.zeros(rows, dtype=torch.long)
        trl_utils._ChunkedLogProbFunction.apply(torch.randn(rows, 8), weight, None, targets, 1.0, 128, None, 1.0, ())

    with cpu_lm_head_speedups():
        head(10)
        assert calls == []  # small: the plain path
        head(11)
        assert calls == [torch.Size([11, 8])]  # rows x vocabulary above the bound: TRL's tiles


def one_sft_step(model_dir, out):
    cfg = ResaConfig(output_dir=str(out), report_to="none", lora_r=4, lora_alpha=8, logging_steps=1, seed=0)
    stage = Stage("sft", "sft", ROWS, learning_rate=5e-3, max_steps=1, batch_size=2, args={"assistant_only_loss": True})
    train_stage(cfg, stage, str(model_dir), out / "sft")
    history = json.loads((out / "sft" / "log_history.json").read_text())
    first = next(h for h in history if "loss" in h)
    return [first[k] for k in ("loss", "grad_norm", "entropy", "mean_token_accuracy")]


def test_a_real_sft_step_is_unchanged_by_the_speedups(tiny_model_dirs, tmp_path, monkeypatch):
    with_speedups = one_sft_step(tiny_model_dirs["llava"], tmp_path / "fast")
    real = trl_hooks.cpu_lm_head_speedups
    monkeypatch.setattr(trl_hooks, "cpu_lm_head_speedups", lambda enabled=True: real(False))
    plain_trl = one_sft_step(tiny_model_dirs["llava"], tmp_path / "trl")
    assert with_speedups == pytest.approx(plain_trl, rel=1e-5)
