"""The dense_connector recipe as users run it (`scripts/train_mitigation.py --method dense_connector`) on a tiny LLaVA:
the widened model is step 0, the projector alone trains, every checkpoint goes through the bridge, the final model
reloads through scripts/evaluate.py; its YAML recipes; and (slow tier) the default recipe on the embedded default."""

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from trl import TrlParser

from eval_bridge.bridge import completed
from mitigation.architecture.dense_connector_config import DenseConnectorConfig
from mitigation.registry import get_method, load_config_class

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs" / "mitigation" / "dense_connector"
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "WANDB_MODE": "disabled",
    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
}


def run(script: str, *args, timeout=1800) -> subprocess.CompletedProcess:
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


def test_registry_entry_points_at_the_config():
    entry = get_method("dense_connector")
    assert (entry.axis, entry.kind, entry.targets) == ("architecture", "recipe", ("truthfulness", "utility"))
    assert load_config_class(entry) is DenseConnectorConfig


@pytest.mark.parametrize("name", ["default_cpu.yaml", "llava15_7b.yaml"])
def test_the_yaml_recipes_parse_into_the_config_with_no_unknown_key(name):
    path = CONFIGS / name
    unknown = set(yaml.safe_load(path.read_text())) - set(asdict(DenseConnectorConfig()))
    assert not unknown, f"{name}: unknown fields {sorted(unknown)}"
    (cfg,) = TrlParser((DenseConnectorConfig,)).parse_args_and_config(["--config", str(path)])
    assert isinstance(cfg, DenseConnectorConfig)


def test_the_cpu_recipe_spells_out_the_defaults_and_the_gpu_recipe_upstreams_two_stages():
    values = yaml.safe_load((CONFIGS / "default_cpu.yaml").read_text())
    defaults = asdict(DenseConnectorConfig())
    assert {k: v for k, v in values.items() if v != defaults[k]} == {}
    gpu = yaml.safe_load((CONFIGS / "llava15_7b.yaml").read_text())
    assert gpu["model"] == "llava-hf/llava-1.5-7b-hf" and gpu["variant"] == "dci" and gpu["feature_layer"] == -2
    assert gpu["stages"] == "connector,finetune" and gpu["use_lora"] is False
    assert (gpu["connector_learning_rate"], gpu["finetune_learning_rate"]) == (1e-3, 2e-5)
    assert gpu["dense_groups"] == "0..11;12..23" and gpu["sparse_layers"] == "7,15"


@pytest.fixture(scope="module")
def dc_run(tiny_model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("dc-run")
    proc = run(
        "train_mitigation.py",
        *("--method", "dense_connector", "--model", tiny_model_dirs["llava"], "--output_dir", out / "run"),
        *("--cache_dir", out / "cache", "--report_to", "none", "--captions", 4, "--connector_batch_size", 2),
        *("--connector_max_steps", 2, "--connector_save_steps", 1, "--connector_learning_rate", 5e-2),
        *("--eval_tasks", "none", "--eval_max_new_tokens", 4, "--logging_steps", 1),
    )
    return out / "run", proc


def test_the_recipe_ends_with_a_table_of_every_checkpoint(dc_run):
    run_dir, proc = dc_run
    assert "dense_connector trade-off" in proc.stdout
    records = completed(run_dir)
    assert [(r["step"], r["stage"], r["final"]) for r in records] == [
        (0, "base", False),
        (1, "connector", False),
        (2, "connector", False),
        (2, "connector", True),
    ]
    assert [r["error"] for r in records] == [None] * 4
    assert records[0]["model"] == str(run_dir / "dense_init")  # step 0 is the widened, warm-started model
    timings = json.loads((run_dir / "timings.json").read_text())
    assert list(timings) == ["base model", "dense connector + data", "CONNECTOR + evaluations", "report"]


def test_only_the_projector_changed_and_the_final_model_is_a_dense_connector(dc_run):
    run_dir, _ = dc_run
    config = json.loads((run_dir / "connector" / "final" / "config.json").read_text())
    assert config["model_type"] == "llava_dense_connector" and config["dense_connector_type"] == "dci"
    start = load_file(run_dir / "dense_init" / "model.safetensors")
    final = load_file(run_dir / "connector" / "final" / "model.safetensors")
    assert start.keys() == final.keys()
    changed = {k for k in start if not torch.equal(start[k], final[k])}
    assert "model.multi_modal_projector.linear_1.weight" in changed
    assert all(k.startswith("model.multi_modal_projector.") for k in changed), sorted(changed)[:5]
    # the zero-initialised columns that read the extra layers learned something
    assert final["model.multi_modal_projector.linear_1.weight"][:, 32:].abs().sum() > 0


def test_the_final_model_reloads_through_evaluate(dc_run, tmp_path):
    run_dir, _ = dc_run
    run(
        "evaluate.py",
        *("--model", run_dir / "connector" / "final", "--output", tmp_path / "final", "--tasks", "T6"),
        *("--limit", 2, "--max-new-tokens", 4, "--cache-dir", tmp_path / "cache"),
    )
    results = json.loads((tmp_path / "final" / "results.json").read_text())
    assert "T6" in results["tasks"]


def test_a_rerun_with_another_architecture_in_the_same_output_dir_is_refused(dc_run, tiny_model_dirs):
    run_dir, _ = dc_run
    proc = subprocess.run(
        [
            *(sys.executable, "scripts/train_mitigation.py", "--method", "dense_connector"),
            *("--model", str(tiny_model_dirs["llava"]), "--output_dir", str(run_dir), "--variant", "sci"),
            *("--report_to", "none"),
        ],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    assert "holds a dense connector built with" in proc.stderr and "use another output_dir" in proc.stderr


@pytest.mark.slow
def test_the_default_recipe_on_the_embedded_default(tmp_path):
    """The shipped CPU recipe on the embedded default, shortened (2 steps, the tracks only): step 0 is the
    base model exactly (its greedy answers equal the base model's), and the run ends with its table."""
    from eval_bridge.data import assets
    from eval_bridge.models.adapter import VLM, GenerationSettings
    from eval_bridge.samples import Sample
    from mitigation.base_model import ensure_base_model

    base_dir = ensure_base_model()
    proc = run(
        "train_mitigation.py",
        *("--method", "dense_connector", "--config", CONFIGS / "default_cpu.yaml", "--output_dir", tmp_path / "run"),
        *("--cache_dir", tmp_path / "cache", "--report_to", "none", "--max_steps", 2, "--eval_tasks", "none"),
    )
    assert "dense_connector trade-off" in proc.stdout
    assert [(r["step"], r["final"]) for r in completed(tmp_path / "run")] == [(0, False), (2, True)]
    images = assets.easy_vqa_images("test")[:6]
    samples = [Sample(f"s{i}", "What shape is in the image?", (str(im.path),)) for i, im in enumerate(images)]
    settings = GenerationSettings(max_new_tokens=8, batch_size=6)
    base = VLM.load(str(base_dir), dtype="float32", device="cpu")
    dense = VLM.load(str(tmp_path / "run" / "dense_init"), dtype="float32", device="cpu")
    assert dense.family == "llava_dense_connector"
    assert [g.token_ids for g in dense.generate(samples, settings)] == [
        g.token_ids for g in base.generate(samples, settings)
    ]
