"""scripts/train_mitigation.py: the method list, help, one-line errors (exit 2), and `--method resa` = train_resa.py."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def script(name: str):
    """A script under scripts/ imported as a module (its functions, without running main)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_mitigation(*args, python_flags=()):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, *python_flags, "scripts/train_mitigation.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_usage_error(proc, *fragments):
    """Exit 2, one `error:` line naming what is wrong, no traceback."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_list_methods_prints_resa_with_its_axis_and_targets():
    proc = train_mitigation("--list-methods")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["id", "axis", "kind", "targets", "paper"]
    resa = next(line for line in lines if line.startswith("| resa "))
    assert [c.strip() for c in resa.split("|")[1:5]] == ["resa", "training", "recipe", "safety, utility"]
    assert "MultiTrust-X (arXiv 2508.15370)" in resa


@pytest.mark.parametrize("args", [("--list-methods",), ("--help",)])
def test_list_and_help_import_no_trainer(args):
    proc = train_mitigation(*args, python_flags=("-X", "importtime"))
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "trl", "transformers", "peft", "accelerate", "resa.recipe"}


def test_help_lists_the_methods_and_help_with_a_method_shows_its_fields():
    plain = train_mitigation("--help")
    assert plain.returncode == 0 and "--list-methods" in plain.stdout and "| resa " in plain.stdout
    fields = train_mitigation("--method", "resa", "--help")
    assert fields.returncode == 0, fields.stderr
    assert "usage: train_mitigation.py --method resa" in fields.stdout
    assert "--sft_max_steps" in fields.stdout and "Cap on SFT steps" in fields.stdout


def test_an_unknown_method_is_a_one_line_error_with_the_valid_ids():
    assert_usage_error(train_mitigation("--method", "vcd"), "unknown method 'vcd'", "valid ids:", "resa")
    assert_usage_error(train_mitigation("--method", "RESA"), "did you mean 'resa'?")
    assert_usage_error(train_mitigation(), "--method is required; valid ids: ", "lrv", "resa")


def test_an_unknown_key_is_a_one_line_error_naming_it_and_the_valid_keys(tmp_path):
    assert_usage_error(
        train_mitigation("--method", "resa", "--sft_max_step", "3"),
        "unknown key 'sft_max_step' for ResaConfig; did you mean 'sft_max_steps'?",
        "valid keys: benign_vqa_share, bf16,",
    )
    (tmp_path / "c.yaml").write_text("sft_max_steps: 3\nlearning_rate: 1e-5\n")
    assert_usage_error(
        train_mitigation("--method", "resa", "--config", str(tmp_path / "c.yaml")),
        "(YAML file): unknown key 'learning_rate' for ResaConfig",
    )


def test_a_wrongly_typed_value_is_a_one_line_error(tmp_path):
    assert_usage_error(train_mitigation("--method", "resa", "--sft_max_steps", "ten"), "--sft_max_steps", "'ten'")
    (tmp_path / "c.yaml").write_text("dpo_beta: [0.1]\n")
    assert_usage_error(
        train_mitigation("--method", "resa", "--config", str(tmp_path / "c.yaml")), "dpo_beta expects float, got [0.1]"
    )
    assert_usage_error(train_mitigation("--method", "resa", "--config", str(tmp_path / "none.yaml")), "none.yaml")


def test_method_resa_parses_the_same_config_as_train_resa(tmp_path):
    (tmp_path / "c.yaml").write_text("sft_max_steps: 7\ndpo_beta: 0.2\nmodel: some/model\n")
    argv = ["--config", str(tmp_path / "c.yaml"), "--sft_learning_rate", "2e-4", "--no_use_lora", "--dpo_beta", "0.3"]
    _, cfg = script("train_mitigation").parse_args(["--method", "resa", *argv])
    assert cfg == script("train_resa").parse_args(argv)
    assert (cfg.sft_max_steps, cfg.dpo_beta, cfg.sft_learning_rate, cfg.use_lora) == (7, 0.3, 2e-4, False)
    assert script("train_mitigation").parse_args(["--method", "resa"])[1] == script("train_resa").parse_args([])


def test_method_resa_runs_the_recipe_of_train_resa():
    from mitigation.registry import get_method, load_target
    from resa.recipe import run_resa

    assert load_target(get_method("resa")) is run_resa
    assert "from resa.recipe import run_resa" in (REPO / "scripts" / "train_resa.py").read_text()


def test_main_runs_the_target_on_the_parsed_config_and_prints_its_table(monkeypatch, capsys, tmp_path):
    module = script("train_mitigation")
    seen = []
    monkeypatch.setattr(module, "load_target", lambda entry: lambda cfg: seen.append(cfg) or "| the table |")
    module.main(["--method", "resa", "--output_dir", str(tmp_path), "--sft_max_steps", "2"])
    out = capsys.readouterr().out
    assert seen[0].sft_max_steps == 2 and "| the table |" in out and f"{tmp_path}/trust_eval/tradeoff.md" in out
