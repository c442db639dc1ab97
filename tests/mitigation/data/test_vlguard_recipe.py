"""The VLGuard recipe as users launch it (`scripts/train_mitigation.py --method vlguard`) on a tiny model: one SFT
stage, every checkpoint through the bridge, the trade-off table; parameters move; its checkpoints reload through
`scripts/evaluate.py`; both YAML recipes parse into `VlguardConfig`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from eval_bridge.bridge import completed
from mitigation.data.vlguard_config import VlguardConfig

REPO = Path(__file__).resolve().parents[3]
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
}


def run_script(*args, timeout=600):
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, env=ENV, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def run(tiny_model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("vlguard")
    tiny = {
        "--model": tiny_model_dirs["llava"],
        "--output_dir": out / "run",
        "--cache_dir": out / "cache",
        "--report_to": "none",
        "--helpful_samples": 6,
        "--max_steps": 2,  # the run-wide cap; step 1 is warm-up at lr 0, step 2 moves the weights
        "--sft_save_steps": 2,
        "--sft_batch_size": 2,
        "--sft_learning_rate": 5e-3,
        "--logging_steps": 1,
        "--lora_r": 4,
        "--lora_alpha": 8,
        "--eval_max_new_tokens": 4,
    }
    proc = run_script(
        "scripts/train_mitigation.py", "--method", "vlguard", *[str(x) for kv in tiny.items() for x in kv]
    )
    return out / "run", proc


def test_recipe_ends_with_a_tradeoff_row_per_checkpoint(run):
    out, proc = run
    assert "vlguard trade-off" in proc.stdout
    records = completed(out)
    # step 0 (base), checkpoint-2, the final model at step 2 (its own row).
    assert [(r["step"], r["stage"], r["final"]) for r in records] == [
        (0, "base", False),
        (2, "sft", False),
        (2, "sft", True),
    ]
    assert [r["error"] for r in records] == [None] * 3
    assert all({"harmful_refusal", "over_refusal", "utility"} <= set(r["headline"]) for r in records)
    table = (out / "trust_eval" / "tradeoff.md").read_text()
    assert "| 2 | sft (final) |" in table and "| 2 | sft |" in table
    assert list(json.loads((out / "timings.json").read_text())) == ["base model", "data", "SFT + evaluations", "report"]
    data = json.loads((out / "vlguard_data.json").read_text())
    assert data["mode"] == "posthoc" and sum(data["helpful"].values()) == 6
    assert data["safe_images"] == data["unsafe_images"] == 54  # the stand-in of the shared sources' 54 prompts


def test_training_moved_the_language_model(run, tiny_model_dirs):
    out, _ = run
    before = load_file(str(tiny_model_dirs["llava"] / "model.safetensors"))
    after = load_file(str(out / "sft" / "final" / "model.safetensors"))
    lm = [k for k in before if "language_model" in k and "proj" in k]
    assert any(not torch.equal(before[k], after[k]) for k in lm)
    assert all(torch.equal(before[k], after[k]) for k in before if "vision_tower" in k)
    losses = [h["loss"] for h in json.loads((out / "sft" / "log_history.json").read_text()) if "loss" in h]
    assert len(losses) == 2


def test_checkpoints_reload_through_evaluate(run, tiny_model_dirs, tmp_path):
    out, _ = run
    harmful = out / "eval_data" / "resa_heldout_harmful.jsonl"
    common = ["--tasks", "none", "--no-tracks", "--harmful-file", str(harmful), "--limit", "3"]
    common += ["--max-new-tokens", "4", "--cache-dir", str(tmp_path / "cache")]
    final = run_script(
        "scripts/evaluate.py", "--model", str(out / "sft" / "final"), "--output", str(tmp_path / "f"), *common
    )
    lora = run_script(
        "scripts/evaluate.py",
        "--model",
        str(tiny_model_dirs["llava"]),
        "--adapter",
        str(out / "sft" / "checkpoint-2"),
        "--output",
        str(tmp_path / "c"),
        *common,
    )
    for proc, folder in ((final, "f"), (lora, "c")):
        results = json.loads((tmp_path / folder / "results.json").read_text())
        assert "harmful_refusal" in json.dumps(results), proc.stdout[-2000:]


@pytest.mark.parametrize("name", ["default_cpu.yaml", "llava15_7b.yaml"])
def test_yaml_recipes_parse_with_no_unknown_keys(name):
    from trl import TrlParser

    path = REPO / "configs" / "mitigation" / "vlguard" / name
    parser = TrlParser((VlguardConfig,))
    cfg, remaining = parser.parse_args_and_config(["--config", str(path)], return_remaining_strings=True)
    assert remaining == []
    if name == "default_cpu.yaml":
        assert cfg == VlguardConfig(), "default_cpu.yaml spells out the defaults"
    else:
        assert cfg.model == "llava-hf/llava-1.5-7b-hf" and cfg.bf16 and cfg.sft_learning_rate == 2e-5
        assert cfg.vlguard_file.endswith("train.json") and cfg.mode == "posthoc"
