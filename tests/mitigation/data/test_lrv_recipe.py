"""The lrv recipe as users run it (`scripts/train_mitigation.py --method lrv`) on a tiny model: every checkpoint
through the bridge, the trade-off table, checkpoints that reload through scripts/evaluate.py; its YAML recipes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from eval_bridge.bridge import completed

REPO = Path(__file__).resolve().parents[3]
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "WANDB_MODE": "disabled",
    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
}


def run(script: str, *args, timeout=900) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, f"scripts/{script}", *map(str, args)],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def lrv_run(tiny_model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("lrv-run")
    proc = run(
        "train_mitigation.py",
        *("--method", "lrv", "--model", tiny_model_dirs["llava"], "--output_dir", out / "run"),
        *("--cache_dir", out / "cache", "--report_to", "none", "--synthetic_records", 12, "--batch_size", 2),
        *("--max_steps", 2, "--save_steps", 1, "--learning_rate", 5e-3, "--lora_r", 4, "--lora_alpha", 8),
        *("--eval_tasks", "none", "--eval_max_new_tokens", 4),
    )
    return out / "run", proc


def test_the_recipe_ends_with_a_table_of_every_checkpoint(lrv_run):
    run_dir, proc = lrv_run
    assert "lrv trade-off" in proc.stdout
    records = completed(run_dir)
    # step 0 (base), the LoRA checkpoints at steps 1 and 2, the SFT final model (step 2, its own row)
    assert [(r["step"], r["stage"], r["final"]) for r in records] == [
        (0, "base", False),
        (1, "sft", False),
        (2, "sft", False),
        (2, "sft", True),
    ]
    assert [r["error"] for r in records] == [None] * 4
    assert all({"harmful_refusal", "over_refusal", "utility"} <= set(r["headline"]) for r in records)
    table = (run_dir / "trust_eval" / "tradeoff.md").read_text()
    assert "| 2 | sft (final) |" in table and "| 1 | sft |" in table
    assert list(json.loads((run_dir / "timings.json").read_text())) == [
        "base model",
        "data",
        "SFT + evaluations",
        "report",
    ]
    history = json.loads((run_dir / "sft" / "log_history.json").read_text())
    assert history[-1]["step"] == 2


def test_training_changed_the_language_model(lrv_run, tiny_model_dirs):
    run_dir, _ = lrv_run
    base = load_file(Path(tiny_model_dirs["llava"]) / "model.safetensors")
    final = load_file(run_dir / "sft" / "final" / "model.safetensors")
    changed = [k for k in base if k in final and not torch.equal(base[k], final[k])]
    assert changed and all("language_model" in k for k in changed)


def test_the_data_is_the_offline_lrv_schema_from_train_images(lrv_run):
    run_dir, _ = lrv_run
    (path,) = (run_dir.parent / "cache" / "data").glob("lrv-s0-*/lrv_synthetic.json")
    records = json.loads(path.read_text())["annotations"]
    assert len(records) == 12 and {r["source"] for r in records} == {"synthetic"}
    assert all(r["image_id"].startswith(("easyvqa-train-", "chart-")) for r in records)


def test_checkpoints_reload_through_evaluate(lrv_run, tiny_model_dirs, tmp_path):
    run_dir, _ = lrv_run
    common = ("--tasks", "none", "--limit", 2, "--max-new-tokens", 4, "--cache-dir", tmp_path / "cache")
    merged = run("evaluate.py", "--model", run_dir / "sft" / "final", "--output", tmp_path / "final", *common)
    adapter = run(
        "evaluate.py",
        *("--model", tiny_model_dirs["llava"], "--adapter", run_dir / "sft" / "checkpoint-1"),
        *("--output", tmp_path / "ckpt1", *common),
    )
    for proc, out in ((merged, tmp_path / "final"), (adapter, tmp_path / "ckpt1")):
        results = json.loads((out / "results.json").read_text())
        assert results["tracks"]["utility"]["n"] == 2, proc.stderr[-2000:]


@pytest.mark.parametrize("name", ["default_cpu.yaml", "llava15_7b.yaml"])
def test_the_yaml_recipes_parse_into_the_config_with_no_unknown_key(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_mitigation", REPO / "scripts" / "train_mitigation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entry, cfg = module.parse_args(["--method", "lrv", "--config", str(REPO / "configs/mitigation/lrv" / name)])
    assert entry.id == "lrv" and type(cfg).__name__ == "LrvConfig"
    if name == "default_cpu.yaml":  # the CPU recipe is the defaults, spelled out
        assert cfg == module.parse_args(["--method", "lrv"])[1]
    else:
        assert (cfg.model, cfg.use_lora, cfg.learning_rate, cfg.bf16) == ("llava-hf/llava-1.5-7b-hf", False, 2e-5, True)
        assert cfg.lrv_file.endswith(".json") and cfg.synthetic_records == 0
