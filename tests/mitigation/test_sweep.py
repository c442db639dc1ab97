"""Ablation sweeps on a tiny model: the runs a grid expands to, skipping what is done, a broken run recorded without
stopping the others, the summary, and the Slurm path through submitit's local executor."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mitigation import sweep as sweeps

REPO = Path(__file__).resolve().parents[2]
# A tiny RESA run (seconds): the sweep's fixed overrides.
TINY = dict(
    report_to="none",
    n_harmful_train=2,
    n_benign_train=4,
    n_harmful_eval=1,
    n_benign_eval=2,
    sft_max_steps=2,
    dpo_max_steps=1,
    dpo_pairs=2,
    sft_batch_size=2,
    dpo_batch_size=2,
    lora_r=2,
    lora_alpha=4,
    eval_max_new_tokens=3,
    eval_borderline_file="none",
    eval_mode="sync",
)


def write_sweep(tmp_path, model_dir, **changes):
    data = dict(
        method="resa",
        output_dir=str(tmp_path / "sweep"),
        overrides={**TINY, "model": str(model_dir), "cache_dir": str(tmp_path / "cache")},
        grid={"dpo_beta": [0.1, 0.2], "sft_learning_rate": [5.0e-4, 1.0e-4]},
        metric="harmful_refusal",
    )
    data.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_grid_expands_to_its_cartesian_product_plus_the_listed_runs():
    sweep = sweeps.Sweep("resa", Path("out"), grid={"a": [1, 2], "b": ["x", "y"]}, runs=[{"a": 9}], overrides={"c": 0})
    runs = sweep.expand()
    assert [r.name for r in runs] == ["a=1,b=x", "a=1,b=y", "a=2,b=x", "a=2,b=y", "a=9"]
    assert all(r.overrides["c"] == 0 for r in runs)
    assert sweeps.run_name({"lr": 1e-05, "note": "a b/c"}) == "lr=1e-05,note=a_b_c"
    with pytest.raises(sweeps.SweepError, match="same overrides"):
        sweeps.Sweep("resa", Path("out"), grid={"a": [1]}, runs=[{"a": 1}]).expand()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "resaa"}, "unknown method 'resaa'"),
        ({"grid": {"dpo_bta": [0.1]}}, "unknown key 'dpo_bta' for ResaConfig; did you mean 'dpo_beta'"),
        ({"grid": {"dpo_beta": []}}, "non-empty list"),
        ({"launcher": "kubernetes"}, "launcher must be one of"),
        ({"schedule": "now"}, "unknown key 'schedule'"),
    ],
)
def test_bad_sweep_files_are_refused_before_anything_trains(tmp_path, tiny_model_dirs, changes, message):
    with pytest.raises(sweeps.SweepError, match=message):
        sweeps.load_sweep(write_sweep(tmp_path, tiny_model_dirs["llava"], **changes))


def test_a_2x2_sweep_skips_what_is_done_and_records_a_broken_run(tmp_path, tiny_model_dirs, monkeypatch):
    path = write_sweep(tmp_path, tiny_model_dirs["llava"])
    dry = subprocess.run(
        [sys.executable, "scripts/sweep.py", "--config", str(path), "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert dry.stdout.count("[to run]") == 4 and "--dpo_beta 0.2 --sft_learning_rate 0.0001" in dry.stdout

    import resa.recipe

    real, trained = resa.recipe.run_resa, []

    def sometimes_broken(cfg):
        trained.append((cfg.dpo_beta, cfg.sft_learning_rate))
        if (cfg.dpo_beta, cfg.sft_learning_rate) == (0.2, 1e-4):
            raise RuntimeError("deliberately broken run")
        return real(cfg)

    monkeypatch.setattr(resa.recipe, "run_resa", sometimes_broken)
    sweep = sweeps.load_sweep(path)
    states = sweeps.run_sweep(sweep)
    assert [s["status"] for s in states] == ["done", "done", "done", "failed"]
    assert "deliberately broken run" in states[3]["error"] and len(trained) == 4
    rows = sweeps.summary_rows(sweep)
    assert len(rows) == 4 and all(r["final"] is not None for r in rows[:3]) and rows[3]["final"] is None
    table = (tmp_path / "sweep" / "sweep.md").read_text()
    assert table.count("| dpo_beta=") == 4 and "failed: RuntimeError: deliberately broken run" in table
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000

    monkeypatch.setattr(resa.recipe, "run_resa", real)
    trained.clear()
    assert [s["status"] for s in sweeps.run_sweep(sweep)] == ["done"] * 4  # only the failed run trained again
    monkeypatch.setattr(resa.recipe, "run_resa", lambda cfg: trained.append(cfg) or real(cfg))
    sweeps.run_sweep(sweep)
    assert trained == []  # every run done: a rerun trains nothing
    done = json.loads((tmp_path / "sweep" / "dpo_beta=0.2,sft_learning_rate=0.0001" / "sweep_run.json").read_text())
    assert done["status"] == "done" and done["overrides"]["dpo_beta"] == 0.2


def test_the_slurm_launcher_through_submitits_local_executor(tmp_path, tiny_model_dirs):
    """Same code path as on a cluster (an array job per pending run), without one."""
    pytest.importorskip("submitit")
    path = write_sweep(tmp_path, tiny_model_dirs["llava"], grid={"dpo_beta": [0.1]}, slurm={"timeout_min": 10})
    states = sweeps.run_sweep(sweeps.load_sweep(path), "slurm", slurm_cluster="local")
    assert [s["status"] for s in states] == ["done"], states
    assert sweeps.summary_rows(sweeps.load_sweep(path))[0]["final"] is not None
    assert list((tmp_path / "sweep" / "slurm").iterdir())  # submitit's job folder: logs and pickles


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_the_example_sweeps_load(path):
    sweep = sweeps.load_sweep(path)
    assert len(sweep.expand()) >= 2


def test_an_inference_method_sweeps_by_evaluating_the_model_through_it(tmp_path, tiny_model_dirs):
    """VCD's alpha: each run evaluates the model through the method (no training), on the evaluation block's suite."""
    data = dict(
        method="vcd",
        model=str(tiny_model_dirs["llava"]),
        output_dir=str(tmp_path / "sweep"),
        evaluation={"eval_tasks": "T2", "eval_borderline_file": "none", "eval_max_new_tokens": 4},
        grid={"alpha": [0.0, 1.0]},
        metric="truthfulness",
    )
    path = tmp_path / "vcd.yaml"
    path.write_text(yaml.safe_dump(data))
    sweep = sweeps.load_sweep(path)
    assert [s["status"] for s in sweeps.run_sweep(sweep)] == ["done", "done"]
    rows = sweeps.summary_rows(sweep)
    assert [r["alpha"] for r in rows] == [0.0, 1.0] and all(r["final"] is not None for r in rows)
    with pytest.raises(sweeps.SweepError, match="evaluation: unknown key 'eval_taskz'"):
        path.write_text(yaml.safe_dump({**data, "evaluation": {"eval_taskz": "T1"}}))
        sweeps.load_sweep(path)
