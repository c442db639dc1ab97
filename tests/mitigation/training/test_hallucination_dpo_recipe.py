"""The hallucination_dpo recipe: its YAML recipes parse into the config, bad settings are clear errors, and
`scripts/train_mitigation.py --method hallucination_dpo` trains a tiny LLaVA with every checkpoint through the
bridge, ending with the trade-off table; its checkpoints reload through scripts/evaluate.py."""

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from trl import TrlParser

from eval_bridge.bridge import completed
from mitigation.registry import get_method, load_config_class
from mitigation.training.hallucination_dpo_config import HallucinationDpoConfig

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs" / "mitigation" / "hallucination_dpo"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
ENV["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])


@pytest.mark.parametrize("name", ["default_cpu.yaml", "llava15_7b.yaml"])
def test_recipes_parse_with_no_unknown_keys(name):
    path = CONFIGS / name
    unknown = set(yaml.safe_load(path.read_text())) - set(asdict(HallucinationDpoConfig()))
    assert not unknown, f"{name}: unknown fields {sorted(unknown)}"
    (cfg,) = TrlParser((HallucinationDpoConfig,)).parse_args_and_config(["--config", str(path)])
    assert isinstance(cfg, HallucinationDpoConfig)


def test_cpu_recipe_spells_out_the_defaults_and_the_gpu_recipe_the_upstream_values():
    values = yaml.safe_load((CONFIGS / "default_cpu.yaml").read_text())
    defaults = asdict(HallucinationDpoConfig())
    assert {k: v for k, v in values.items() if v != defaults[k]} == {}
    gpu = yaml.safe_load((CONFIGS / "llava15_7b.yaml").read_text())
    assert gpu["model"] == "llava-hf/llava-1.5-7b-hf" and gpu["bf16"] is True
    assert (gpu["beta"], gpu["learning_rate"], gpu["epochs"], gpu["grad_accum"]) == (0.1, 1e-5, 3, 8)
    assert (gpu["crop_scale_min"], gpu["crop_scale_max"], gpu["weight_decay"], gpu["adam_beta2"]) == (
        0.01,
        0.2,
        0.05,
        0.98,
    )


def test_registry_entry_points_at_the_config():
    entry = get_method("hallucination_dpo")
    assert (entry.axis, entry.kind, entry.targets) == ("training", "recipe", ("truthfulness",))
    assert load_config_class(entry) is HallucinationDpoConfig


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"precompute_ref_log_probs": "true"}, "cannot precompute reference log-probs"),
        ({"crop_scale_min": 0.3}, "crop scale"),
        ({"ddpo_weight": 0.5}, "ddpo_weight must be >= 1"),
    ],
)
def test_bad_settings_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        HallucinationDpoConfig(**overrides)
    assert HallucinationDpoConfig(use_lora=False).precompute_reference() is False


def run_script(script, *args, timeout=900):
    proc = subprocess.run(
        [sys.executable, f"scripts/{script}", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def recipe_run(tiny_model_dirs, tmp_path_factory):
    run = tmp_path_factory.mktemp("hdpo") / "run"
    proc = run_script(
        "train_mitigation.py",
        "--method",
        "hallucination_dpo",
        "--model",
        tiny_model_dirs["llava"],
        "--output_dir",
        run,
        "--cache_dir",
        run.parent / "cache",
        "--report_to",
        "none",
        "--offline_pairs",
        4,
        "--batch_size",
        2,
        "--max_steps",
        1,
        "--save_steps",
        1,
        "--lora_r",
        4,
        "--lora_alpha",
        8,
        "--eval_tasks",
        "none",
        "--eval_max_new_tokens",
        4,
        "--logging_steps",
        1,
    )
    return run, proc


def test_recipe_trains_and_ends_with_a_row_per_checkpoint(recipe_run):
    run, proc = recipe_run
    assert "hallucination_dpo trade-off" in proc.stdout
    records = completed(run)
    expected = [(0, "base", False), (1, "mdpo", False), (1, "mdpo", True)]
    assert [(r["step"], r["stage"], r["final"]) for r in records] == expected
    assert [r["error"] for r in records] == [None] * 3
    table = (run / "trust_eval" / "tradeoff.md").read_text()
    assert "| 0 | base |" in table and "| 1 | mdpo |" in table and "| 1 | mdpo (final) |" in table
    log = json.loads((run / "mdpo" / "log_history.json").read_text())
    assert {"rewards/imageless_chosen", "rewards/imageless_margins", "loss/image"} <= set(log[0])
    timings = json.loads((run / "timings.json").read_text())
    assert list(timings) == ["base model", "data", "MDPO + evaluations", "report"]
    pairs = json.loads((run.parent / "cache" / "pairs" / "hallucination_pairs.json").read_text())
    assert len(pairs) == 4 and {p["source"] for p in pairs} == {"synthetic"}


def test_checkpoints_reload_through_evaluate(recipe_run, tiny_model_dirs, tmp_path):
    run, _ = recipe_run
    common = ["--tasks", "T6", "--limit", "2", "--max-new-tokens", "4", "--cache-dir", tmp_path / "cache"]
    final = run_script("evaluate.py", "--model", run / "mdpo" / "final", "--output", tmp_path / "final", *common)
    lora = run_script(
        "evaluate.py",
        "--model",
        tiny_model_dirs["llava"],
        "--adapter",
        run / "mdpo" / "checkpoint-1",
        "--output",
        tmp_path / "lora",
        *common,
    )
    for proc, out in ((final, "final"), (lora, "lora")):
        results = json.loads((tmp_path / out / "results.json").read_text())
        assert "T6" in results["tasks"], proc.stdout[-2000:]
