"""The shared training pipeline on every supported family: LoRA SFT then DPO through `run_stages`, the language
model moves, the vision tower does not, each final model reloads and generates, and the run's one bridge gives
every checkpoint and every stage's final model its own row."""

import json

import pytest
import torch
from chat_rows import DPO_PAIRS, RED, assistant, user

from eval_bridge.bridge import SuiteSpec, completed
from eval_bridge.models.adapter import VLM, GenerationSettings, load_pretrained
from eval_bridge.samples import Sample
from mitigation.training.config import TrainingConfig
from mitigation.training.parts import part_parameters
from mitigation.training.pipeline import Stage, run_stages, train_stage

SFT_ROWS = [
    {"messages": [user(f"What colour is it? {i}", i % 2 == 0), assistant("It is red.")], "images": [RED] * (i % 2 == 0)}
    for i in range(4)
]
DPO_ROWS = DPO_PAIRS


def cfg(tmp_path, **overrides):
    base = dict(output_dir=str(tmp_path / "run"), report_to="none", lora_r=4, lora_alpha=8, logging_steps=1, seed=0)
    return TrainingConfig(**{**base, **overrides})


def stages(save_steps=0):
    return [
        Stage("sft", "sft", SFT_ROWS, learning_rate=5e-3, max_steps=2, batch_size=2, save_steps=save_steps),
        Stage("dpo", "dpo", DPO_ROWS, learning_rate=5e-3, max_steps=2, batch_size=2, args={"beta": 0.1}),
    ]


def params(model, part):
    return {name: p.detach().clone() for name, p in part_parameters(model, part)}


def changed(before, after):
    return [k for k in before if not torch.equal(before[k], after[k])]


@pytest.mark.parametrize("family", ["llava", "llava_next", "qwen2_vl", "idefics3"])
def test_lora_sft_then_dpo_on_every_family(family, tiny_model_dirs, tmp_path):
    base_dir = str(tiny_model_dirs[family])
    config = cfg(tmp_path)
    sft = train_stage(config, stages()[0], base_dir, tmp_path / "run" / "sft")
    dpo = train_stage(config, stages()[1], str(sft.final_dir), tmp_path / "run" / "dpo")
    assert (sft.steps, dpo.steps) == (2, 2)
    base, _ = load_pretrained(base_dir)
    for final in (sft.final_dir, dpo.final_dir):
        trained, _ = load_pretrained(str(final))  # a plain model directory: the LoRA was merged
        assert changed(params(base, "language_model"), params(trained, "language_model")), f"{final}: LM unchanged"
        assert not changed(params(base, "vision_tower"), params(trained, "vision_tower")), "vision tower moved"
        assert not changed(params(base, "projector"), params(trained, "projector")), "projector moved"
    vlm = VLM.load(str(dpo.final_dir), device="cpu")
    sample = Sample("q", "What colour is it?", (str(tmp_path / "red.png"),))
    RED.save(tmp_path / "red.png")
    [out] = vlm.generate([sample], GenerationSettings(max_new_tokens=4))
    assert out.token_ids, "the reloaded model generates"


def test_one_bridge_per_run_and_final_rows_of_their_own(tiny_model_dirs, tmp_path):
    spec = SuiteSpec(tasks="none", tracks=("utility",), limit=2, max_new_tokens=4, cache_dir=str(tmp_path / "cache"))
    config = cfg(tmp_path, eval_mode="sync")
    results, table = run_stages(config, stages(save_steps=2), str(tiny_model_dirs["llava"]), spec)
    rows = [(r["step"], r["stage"], r.get("final", False)) for r in completed(tmp_path / "run")]
    # step 0 = base; the SFT checkpoint at step 2 AND the SFT final model at step 2 (both rows kept); DPO continues
    # the steps (2 + 2) and its final model is the last row.
    assert rows == [(0, "base", False), (2, "sft", False), (2, "sft", True), (4, "dpo", True)]
    assert all(not r.get("error") for r in completed(tmp_path / "run")), completed(tmp_path / "run")
    assert [r.steps for r in results] == [2, 2]
    assert "sft (final)" in table and "dpo (final)" in table
    assert not list((tmp_path / "run" / "trust_eval").glob("worker.log")), "sync mode: no worker"
    # Rerun: finished stages are skipped and nothing is evaluated twice.
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run" / "trust_eval" / "done").iterdir()}
    run_stages(config, stages(save_steps=2), str(tiny_model_dirs["llava"]), spec)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run" / "trust_eval" / "done").iterdir()}
    assert after == before


def test_max_steps_caps_every_stage(tiny_model_dirs, tmp_path):
    config = cfg(tmp_path, max_steps=1)
    result = train_stage(config, stages()[0], str(tiny_model_dirs["llava"]), tmp_path / "run" / "sft")
    assert result.steps == 1
    history = json.loads((tmp_path / "run" / "sft" / "log_history.json").read_text())
    assert history[-1]["step"] == 1


def test_unknown_stage_settings_are_named(tmp_path):
    from mitigation.training.pipeline import training_args

    with pytest.raises(ValueError, match="kind must be one of sft, dpo"):
        Stage("x", "ppo", SFT_ROWS, learning_rate=1e-3)
    with pytest.raises(ValueError, match="no training rows"):
        Stage("x", "sft", [], learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"DPOConfig has no field.*betta"):
        training_args(cfg(tmp_path), Stage("x", "dpo", DPO_ROWS, learning_rate=1e-3, args={"betta": 0.1}), tmp_path)


def test_sync_evaluation_is_refused_under_ddp(tmp_path):
    from types import SimpleNamespace

    from eval_bridge.callback import TrustEvalCallback

    args = SimpleNamespace(output_dir=str(tmp_path), world_size=2, save_total_limit=None, hf_deepspeed_config=None)
    with pytest.raises(ValueError, match=r"mode=.sync.*2 processes.*worker"):
        TrustEvalCallback(SuiteSpec(), mode="sync").on_train_begin(args, SimpleNamespace(), None)


def test_auto_eval_mode_is_worker_under_several_processes(monkeypatch):
    from mitigation.training.pipeline import eval_mode

    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert eval_mode(TrainingConfig(), 1) == "sync"
    assert eval_mode(TrainingConfig(), 2) == "worker"
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert eval_mode(TrainingConfig(), 1) == "worker"
    assert eval_mode(TrainingConfig(eval_mode="sync"), 2) == "sync"  # explicit: the callback refuses it under DDP


def test_full_fine_tuning_dpo_keeps_no_reference_model(tiny_model_dirs, tmp_path, monkeypatch):
    """precompute_ref_log_probs=auto: full-parameter DPO through the pipeline precomputes the reference (cached
    under cache_dir) and trains with no second model; LoRA keeps TRL's adapter-disabled reference."""
    from mitigation.training import pipeline
    from mitigation.training.reference import PrecomputedRefDPOTrainer

    built = []
    real = pipeline._trainer_cls
    monkeypatch.setattr(pipeline, "_trainer_cls", lambda c, s: built.append(real(c, s)) or built[-1])
    config = cfg(tmp_path, use_lora=False, cache_dir=str(tmp_path / "cache"))
    result = train_stage(config, stages()[1], str(tiny_model_dirs["llava"]), tmp_path / "run" / "dpo")
    assert result.steps == 2 and built == [PrecomputedRefDPOTrainer]
    assert list((tmp_path / "cache" / "reference-logps").glob("*.safetensors")), "reference log-probs cached"
    assert cfg(tmp_path).precompute_reference() is False  # LoRA: TRL's own reference, already free
    assert cfg(tmp_path, use_lora=False, precompute_ref_log_probs="false").precompute_reference() is False
