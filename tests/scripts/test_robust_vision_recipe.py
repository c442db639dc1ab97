"""robust_vision as users run it: its registry entry, its YAML recipes, `scripts/train_mitigation.py --method
robust_vision` on a tiny model ending with the trade-off table, a resumed run equal to an uninterrupted one, and
the swap mode's run with both models through the bridge."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eval_bridge.bridge import completed
from eval_bridge.models.adapter import load_pretrained
from mitigation.registry import get_method, load_config_class, load_target

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "mitigation" / "robust_vision"
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "OMP_NUM_THREADS": "1",  # a tiny tower: one thread is fastest
    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
}


def test_registry_entry_is_an_architecture_recipe_on_robustness_and_safety():
    entry = get_method("robust_vision")
    assert (entry.axis, entry.kind, entry.targets) == ("architecture", "recipe", ("robustness", "safety"))
    assert load_config_class(entry).__name__ == "RobustVisionConfig"
    assert load_target(entry).__name__ == "run_robust_vision"


def parse_yaml(path):
    from trl import TrlParser

    from mitigation.architecture.robust_vision_config import RobustVisionConfig

    cfg, from_yaml, from_flags = TrlParser((RobustVisionConfig,)).parse_args_and_config(
        ["--config", str(path)], return_remaining_strings=True, separate_remaining_strings=True
    )
    assert from_yaml == [] and from_flags == [], f"unknown keys in {path.name}: {from_yaml}"
    return cfg


def test_default_cpu_yaml_spells_out_the_defaults():
    import yaml

    from mitigation.architecture.robust_vision_config import RobustVisionConfig

    keys = yaml.safe_load((CONFIGS / "default_cpu.yaml").read_text())
    assert {"mode", "loss", "features", "epsilon", "pgd_steps", "pgd_step_size", "learning_rate"} <= set(keys)
    assert parse_yaml(CONFIGS / "default_cpu.yaml") == RobustVisionConfig()


def test_llava15_7b_yaml_swaps_in_a_fare_clip_at_224():
    cfg = parse_yaml(CONFIGS / "llava15_7b.yaml")
    assert cfg.model == "llava-hf/llava-1.5-7b-hf" and cfg.mode == "swap" and cfg.swap_from
    assert cfg.swap_image_size is None  # the robust tower's own 224 px: 256 image tokens
    assert (cfg.epsilon, cfg.pgd_steps, cfg.pgd_step_size, cfg.learning_rate, cfg.train_steps) == (
        2.0,
        10,
        1.0,
        1e-5,
        20000,
    )


def run(args, timeout=600):
    proc = subprocess.run(
        [sys.executable, *map(str, args)], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


TINY = {
    "--report_to": "none",
    "--train_steps": 2,
    "--batch_size": 4,
    "--n_train_images": 16,
    "--n_heldout_images": 8,
    "--measure_pgd_steps": 3,
    "--pgd_steps": 3,
    "--eval_tasks": "none",
    "--eval_max_new_tokens": 4,
}


@pytest.fixture(scope="module")
def trained(tiny_model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("rv-recipe")
    args = {**TINY, "--model": tiny_model_dirs["llava"], "--output_dir": out / "run", "--cache_dir": out / "cache"}
    args["--save_steps"] = 1
    proc = run(["scripts/train_mitigation.py", "--method", "robust_vision", *(x for kv in args.items() for x in kv)])
    return out, proc


def test_the_recipe_ends_with_a_table_row_per_checkpoint(trained):
    out, proc = trained
    assert "robust_vision trade-off" in proc.stdout
    records = completed(out / "run")
    assert [(r["step"], r["stage"], r["final"]) for r in records] == [
        (0, "base", False),
        (1, "fare", False),
        (2, "fare", False),
        (2, "fare", True),
    ]
    assert all(r["error"] is None for r in records)
    assert all({"harmful_refusal", "over_refusal", "utility"} <= set(r["headline"]) for r in records)
    timings = json.loads((out / "run" / "timings.json").read_text())
    assert list(timings) == ["base model", "data", "FARE + evaluations", "report"]
    robustness = json.loads((out / "run" / "fare" / "robustness.json").read_text())
    assert robustness["before"]["clean_distance"] == 0.0 and robustness["after"]["n_images"] == 8


def test_checkpoints_are_whole_vlms_with_the_trained_tower(trained, tiny_model_dirs):
    out, _ = trained
    base, _ = load_pretrained(str(tiny_model_dirs["llava"]))
    final, _ = load_pretrained(str(out / "run" / "fare" / "final"))
    checkpoint, _ = load_pretrained(str(out / "run" / "fare" / "checkpoint-2"))
    key = "embeddings.patch_embedding.weight"
    towers = [m.model.vision_tower.state_dict()[key] for m in (base, final, checkpoint)]
    assert not torch.equal(towers[0], towers[1]) and torch.equal(towers[1], towers[2])
    lm = [m.model.language_model.state_dict() for m in (base, final)]
    assert all(torch.equal(lm[0][k], lm[1][k]) for k in lm[0])


def test_a_resumed_run_equals_the_uninterrupted_one(trained, tiny_model_dirs, tmp_path):
    out, _ = trained
    run_dir = tmp_path / "run"
    shutil.copytree(out / "run", run_dir, ignore=shutil.ignore_patterns("checkpoint-2", "final", "trust_eval"))
    args = {**TINY, "--model": tiny_model_dirs["llava"], "--output_dir": run_dir, "--cache_dir": out / "cache"}
    args.update({"--save_steps": 1, "--resume_from_checkpoint": "last"})  # from checkpoint-1 (the frozen copy: base)
    run(["scripts/train_mitigation.py", "--method", "robust_vision", *(x for kv in args.items() for x in kv)])
    history = json.loads((run_dir / "fare" / "checkpoint-2" / "trainer_state.json").read_text())
    assert history["global_step"] == 2
    key = "embeddings.patch_embedding.weight"
    resumed, _ = load_pretrained(str(run_dir / "fare" / "final"))
    uninterrupted, _ = load_pretrained(str(out / "run" / "fare" / "final"))
    torch.testing.assert_close(
        resumed.model.vision_tower.state_dict()[key], uninterrupted.model.vision_tower.state_dict()[key]
    )


def test_swap_mode_evaluates_the_base_and_the_swapped_model(tiny_model_dirs, tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from mitigation.architecture.robust_vision import run_robust_vision
    from mitigation.architecture.robust_vision_config import RobustVisionConfig

    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=48, patch_size=8
    )
    CLIPVisionModel(CLIPVisionConfig(**vision)).save_pretrained(tmp_path / "clip")
    cfg = RobustVisionConfig(
        model=str(tiny_model_dirs["llava"]),
        output_dir=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        report_to="none",
        mode="swap",
        swap_from=str(tmp_path / "clip"),
        n_heldout_images=4,
        measure_pgd_steps=2,
        eval_tasks="none",
        eval_max_new_tokens=4,
    )
    table = run_robust_vision(cfg)
    assert "| 0 | swap (final) |" in table
    records = completed(tmp_path / "run")
    assert [(r["stage"], r["final"], r["error"]) for r in records] == [("base", False, None), ("swap", True, None)]
    robustness = json.loads((tmp_path / "run" / "swap" / "robustness.json").read_text())
    assert robustness["swap"] == {"image_size": [32, 48], "image_tokens": [16, 36]}
    swapped, _ = load_pretrained(str(tmp_path / "run" / "swap" / "final"))
    assert swapped.config.image_seq_length == 36 and swapped.config.vision_config.image_size == 48


@pytest.mark.slow
def test_the_default_recipe_on_the_embedded_default_lowers_the_pgd_distance(tmp_path):
    """The command users run (no argument but the directories): FARE on the embedded default's tower."""
    run(
        [
            "scripts/train_mitigation.py",
            "--method",
            "robust_vision",
            "--output_dir",
            tmp_path / "run",
            "--cache_dir",
            tmp_path / "cache",
            "--report_to",
            "none",
        ],
        timeout=1800,
    )
    robustness = json.loads((tmp_path / "run" / "fare" / "robustness.json").read_text())
    assert robustness["after"]["pgd_distance"] < robustness["before"]["pgd_distance"], robustness
    records = completed(tmp_path / "run")
    assert [(r["stage"], r["final"], r["error"]) for r in records] == [("base", False, None), ("fare", True, None)]
    base, final = (r["headline"] for r in records)
    assert final["utility"] >= base["utility"] - 10, (base, final)  # clean utility may drop a little, not collapse
