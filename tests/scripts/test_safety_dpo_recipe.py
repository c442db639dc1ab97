"""safety_dpo as users run it: its registry entry, its YAML recipes, `scripts/train_mitigation.py --method
safety_dpo` on a tiny model ending with the trade-off table, and its checkpoints reloaded by scripts/evaluate.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval_bridge.bridge import completed
from mitigation.registry import get_method, load_config_class, load_target

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "mitigation" / "safety_dpo"
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
}


def test_registry_entry_is_a_training_recipe_on_safety_and_utility():
    entry = get_method("safety_dpo")
    assert (entry.axis, entry.kind, entry.targets) == ("training", "recipe", ("safety", "utility"))
    assert load_config_class(entry).__name__ == "SafetyDpoConfig"
    assert load_target(entry).__name__ == "run_safety_dpo"


def parse_yaml(path):
    from trl import TrlParser

    from mitigation.training.safety_dpo import SafetyDpoConfig

    parser = TrlParser((SafetyDpoConfig,))
    cfg, from_yaml, from_flags = parser.parse_args_and_config(
        ["--config", str(path)], return_remaining_strings=True, separate_remaining_strings=True
    )
    assert from_yaml == [] and from_flags == [], f"unknown keys in {path.name}: {from_yaml}"
    return cfg


def test_default_cpu_yaml_spells_out_the_defaults():
    import yaml

    from mitigation.training.safety_dpo import SafetyDpoConfig

    cfg, defaults = parse_yaml(CONFIGS / "default_cpu.yaml"), SafetyDpoConfig()
    keys = yaml.safe_load((CONFIGS / "default_cpu.yaml").read_text())
    assert {"n_pairs", "dpo_beta", "dpo_sft_weight", "dpo_learning_rate", "harmful_share"} <= set(keys)
    assert {k: getattr(cfg, k) for k in keys} == {k: getattr(defaults, k) for k in keys}
    assert cfg == defaults


def test_llava15_7b_yaml_is_spa_vls_recipe():
    cfg = parse_yaml(CONFIGS / "llava15_7b.yaml")
    assert cfg.model == "llava-hf/llava-1.5-7b-hf" and cfg.bf16 and not cfg.use_lora
    assert (cfg.dpo_beta, cfg.dpo_learning_rate, cfg.dpo_epochs, cfg.max_real_pairs) == (0.1, 1e-6, 1.0, 30000)
    assert cfg.dpo_sft_weight == 0.0  # SPA-VL's plain DPO
    assert cfg.spavl_file and cfg.precompute_reference()  # full fine-tuning keeps no reference copy in memory


def run(args, timeout=900):
    proc = subprocess.run(
        [sys.executable, *map(str, args)], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def trained(tiny_model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("sdpo-recipe")
    tiny = {
        "--model": tiny_model_dirs["llava"],
        "--output_dir": out / "run",
        "--cache_dir": out / "cache",
        "--report_to": "none",
        "--max_steps": 2,
        "--n_pairs": 8,
        "--dpo_batch_size": 2,
        "--dpo_save_steps": 1,
        "--lora_r": 4,
        "--lora_alpha": 8,
        "--eval_tasks": "none",
        "--eval_max_new_tokens": 4,
    }
    proc = run(["scripts/train_mitigation.py", "--method", "safety_dpo", *(x for kv in tiny.items() for x in kv)])
    return out, proc


def test_the_recipe_ends_with_a_table_row_per_checkpoint(trained):
    out, proc = trained
    assert "safety_dpo trade-off" in proc.stdout
    records = completed(out / "run")
    assert [(r["step"], r["stage"], r["final"]) for r in records] == [
        (0, "base", False),
        (1, "dpo", False),
        (2, "dpo", False),
        (2, "dpo", True),
    ]
    assert all(r["error"] is None for r in records)
    assert all({"harmful_refusal", "over_refusal", "utility"} <= set(r["headline"]) for r in records)
    table = (out / "run" / "trust_eval" / "tradeoff.md").read_text()
    assert "| 0 | base |" in table and "| 2 | dpo (final) |" in table
    timings = json.loads((out / "run" / "timings.json").read_text())
    assert list(timings) == ["base model", "data", "DPO + evaluations", "report"]
    summary = json.loads((out / "run" / "pairs_summary.json").read_text())
    assert (summary["pairs"], summary["harmful"], summary["benign"]) == (8, 4, 4)


@pytest.mark.parametrize("which", ["final", "adapter"])
def test_checkpoints_reload_through_evaluate(trained, tiny_model_dirs, tmp_path, which):
    out, _ = trained
    model = ["--model", out / "run" / "dpo" / "final"]
    if which == "adapter":  # a LoRA checkpoint holds only the adapter: evaluated on top of its base
        model = ["--model", tiny_model_dirs["llava"], "--adapter", out / "run" / "dpo" / "checkpoint-1"]
    run(
        [
            "scripts/evaluate.py",
            *model,
            "--tasks",
            "none",
            "--limit",
            "2",
            "--max-new-tokens",
            "4",
            "--harmful-file",
            out / "run" / "eval_data" / "resa_heldout_harmful.jsonl",
            "--output",
            tmp_path / "eval",
            "--cache-dir",
            tmp_path / "cache",
        ]
    )
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["tracks"]["harmful_refusal"]["n"] == 2 and results["tracks"]["utility"]["n"] == 2
