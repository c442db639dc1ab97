"""The eval bridge: every checkpoint of a real (tiny) TRL run goes through the suite, in sync and worker mode,
full and LoRA, single and multi-process; the queue survives crashes; the trade-off report picks honestly."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from train_tiny_sft import SUITE, train

from eval_bridge.bridge import Manifest, SuiteSpec, bridge_dir, completed, enqueue, pending, work
from eval_bridge.callback import TrustEvalCallback
from eval_bridge.tradeoff import pareto_front, pick_best, rows

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def evaluate_alone(model, adapter, cache, out):
    """What scripts/evaluate.py gives for one checkpoint with the bridge's suite settings."""
    args = [
        sys.executable,
        "scripts/evaluate.py",
        "--model",
        str(model),
        "--output",
        str(out),
        "--cache-dir",
        str(cache),
        "--tasks",
        SUITE["tasks"],
        "--limit",
        str(SUITE["limit"]),
        "--max-new-tokens",
        str(SUITE["max_new_tokens"]),
    ]
    if adapter:
        args += ["--adapter", str(adapter)]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((Path(out) / "results.json").read_text())


@pytest.fixture(scope="module")
def sync_run(tiny_model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft-sync")
    train(tiny_model_dirs["llava"], out, out / "cache", mode="sync")
    return out


def test_sync_run_has_step0_and_three_checkpoints(sync_run):
    table = rows(sync_run)
    assert [r["step"] for r in table] == [0, 2, 4, 6]
    # T6 and S4 only: no overall (it needs all 32 tasks), the labelled aspects mean instead.
    assert all(r["error"] is None and r.get("overall") is None and r["aspects_mean"] is not None for r in table)
    assert (sync_run / "checkpoint-4" / "trust_eval" / "results.json").is_file()
    lines = (bridge_dir(sync_run) / "tradeoff.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in lines if line[:3] in ("| 0", "| 2", "| 4", "| 6")] == [
        "| 0",
        "| 2",
        "| 4",
        "| 6",
    ]
    assert (bridge_dir(sync_run) / "tradeoff.png").stat().st_size > 1000
    assert table[0]["d_aspects_mean"] == 0.0
    # Every checkpoint's record counts the samples behind its rates: the table's intervals come from them.
    assert {r["n/utility"] for r in table} == {2} and {r["n/over_refusal"] for r in table} == {2}
    assert "utility (n=2)" in lines[0]


def test_each_row_equals_evaluate_on_that_checkpoint_alone(sync_run, tiny_model_dirs, tmp_path):
    done = {r["step"]: r for r in completed(sync_run)}
    alone = evaluate_alone(sync_run / "checkpoint-4", None, tmp_path / "cache", tmp_path / "ck4")
    assert done[4]["tasks"] == {t: r["score"] for t, r in alone["tasks"].items()}
    base = evaluate_alone(tiny_model_dirs["llava"], None, tmp_path / "cache", tmp_path / "base")
    assert done[0]["tasks"] == {t: r["score"] for t, r in base["tasks"].items()}
    # The training changed the weights: checkpoints are not the base model.
    assert alone["provenance"]["model_fingerprint"] != base["provenance"]["model_fingerprint"]


def test_lora_run_in_worker_mode(tiny_model_dirs, tmp_path):
    train(tiny_model_dirs["llava"], tmp_path, tmp_path / "cache", mode="worker", lora=True)
    records = completed(tmp_path)
    assert [r["step"] for r in records] == [0, 2, 4, 6]
    assert all(r["error"] is None for r in records)
    assert records[2]["model"] == str(tiny_model_dirs["llava"]) and records[2]["adapter"].endswith("checkpoint-4")
    alone = evaluate_alone(tiny_model_dirs["llava"], tmp_path / "checkpoint-4", tmp_path / "c2", tmp_path / "o")
    assert records[2]["tasks"] == {t: r["score"] for t, r in alone["tasks"].items()}
    assert not pending(tmp_path) and (bridge_dir(tmp_path) / "STOP").exists()


def test_two_processes_evaluate_each_checkpoint_once(tiny_model_dirs, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        "29561",
        str(REPO / "tests/eval_bridge/train_tiny_sft.py"),
        str(tiny_model_dirs["llava"]),
        str(tmp_path / "run"),
        str(tmp_path / "cache"),
        "--mode",
        "worker",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=ENV, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads(p.read_text()) for p in sorted((tmp_path / "run").glob("rank-*.json"))]
    assert sorted(r["rank"] for r in ranks) == [0, 1] and all(r["world"] == 2 for r in ranks), proc.stderr[-3000:]
    queue = sorted(p.name for p in (bridge_dir(tmp_path / "run") / "queue").glob("*.json"))
    assert queue == [f"{s:09d}.json" for s in (0, 2, 4, 6)]
    records = completed(tmp_path / "run")
    assert [r["step"] for r in records] == [0, 2, 4, 6] and all(r["error"] is None for r in records)
    log = (bridge_dir(tmp_path / "run") / "worker.log").read_text()
    assert log.count("responses: ") == 4  # one suite run per checkpoint, no more


def test_worker_survives_a_checkpoint_it_cannot_load_and_resume_finishes(tiny_model_dirs, tmp_path):
    spec = SuiteSpec(cache_dir=str(tmp_path / "cache"), **SUITE)
    enqueue(tmp_path, Manifest(2, str(tmp_path / "deleted-checkpoint"), None, str(tmp_path / "o2"), spec))
    enqueue(tmp_path, Manifest(0, str(tiny_model_dirs["llava"]), None, str(tmp_path / "o0"), spec))
    # A killed run: the queue is left behind; report.py --resume evaluates it and writes the report.
    proc = subprocess.run(
        [sys.executable, "scripts/report.py", str(tmp_path), "--resume"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {r["step"]: r for r in completed(tmp_path)}
    assert records[0]["error"] is None
    assert "cannot load model" in records[2]["error"]
    assert "step 2: failed" in proc.stderr and "evaluation failed" in proc.stdout
    assert not pending(tmp_path)


def test_worker_loop_stops_on_stop_file_after_the_queue(tiny_model_dirs, tmp_path):
    spec = SuiteSpec(cache_dir=str(tmp_path / "cache"), **SUITE)
    enqueue(tmp_path, Manifest(0, str(tiny_model_dirs["llava"]), None, str(tmp_path / "o0"), spec))
    (bridge_dir(tmp_path) / "STOP").touch()
    work(tmp_path, poll_s=0.01)
    assert [r["step"] for r in completed(tmp_path)] == [0]


def test_zero3_without_gathered_weights_is_refused():
    ds = types.SimpleNamespace(config={"zero_optimization": {"stage": 3}})
    args = types.SimpleNamespace(hf_deepspeed_config=ds, output_dir="x", save_total_limit=None)
    state = types.SimpleNamespace(is_world_process_zero=True, global_step=0)
    with pytest.raises(ValueError, match="stage3_gather_16bit_weights_on_model_save"):
        TrustEvalCallback().on_train_begin(args, state, None)
    ds.config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True
    with pytest.raises(ValueError, match="can hang under ZeRO-3"):
        TrustEvalCallback(mode="sync").on_train_begin(args, state, None)


def test_zero3_under_accelerate_launch_is_read_from_the_deepspeed_plugin(monkeypatch):
    """`accelerate launch --config_file deepspeed_zero3.yaml` puts the config on accelerate's plugin, not on the
    training arguments: the refusals must see it there too."""
    import accelerate.state

    plugin = types.SimpleNamespace(deepspeed_config={"zero_optimization": {"stage": 3}})

    class State:
        _shared_state = types.MappingProxyType({"initialised": True})
        deepspeed_plugin = plugin

    monkeypatch.setattr(accelerate.state, "AcceleratorState", State)
    args = types.SimpleNamespace(hf_deepspeed_config=None, output_dir="x", save_total_limit=None)
    state = types.SimpleNamespace(is_world_process_zero=True, global_step=0)
    with pytest.raises(ValueError, match="stage3_gather_16bit_weights_on_model_save"):
        TrustEvalCallback().on_train_begin(args, state, None)
    plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True
    with pytest.raises(ValueError, match="can hang under ZeRO-3"):
        TrustEvalCallback(mode="sync").on_train_begin(args, state, None)


def test_results_reach_the_tracker_keyed_by_checkpoint_step(tiny_model_dirs, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_model_dirs["llava"], tmp_path, tmp_path / "cache", mode="sync", report_to="tensorboard")
    logs = [p.parent for p in tmp_path.rglob("events.out.tfevents.*")]
    scalars = {}
    for folder in set(logs):
        acc = EventAccumulator(str(folder))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(e.step for e in acc.Scalars(tag))
    assert sorted(scalars["trust/safety"]) == [0, 2, 4, 6]
    assert "trust/overall" not in scalars  # two tasks ran: no overall to log
    assert sorted(scalars["utility/utility"]) == [0, 2, 4, 6]
    assert "train/loss" in scalars  # the same run as the training loss


def row(step, overall, utility, safety=50.0):
    return {
        "step": step,
        "checkpoint": f"ck{step}",
        "error": None,
        "overall": overall,
        "utility": utility,
        "safety": safety,
        "d_utility": utility - 80.0,
    }


def test_pick_best_respects_the_utility_tolerance():
    table = [row(0, 50, 80), row(1, 70, 70), row(2, 60, 77), row(3, 55, 80)]
    assert pick_best(table)["step"] == 2  # step 1 is better but lost 10 utility points
    assert pick_best(table, utility_tolerance=10)["step"] == 1
    assert pick_best(table, weights={"safety": 1.0, "utility": 1.0})["step"] in (0, 3)
    failed = [{"step": 0, "error": "boom"}]
    assert pick_best(failed) is None


def test_pareto_front():
    points = [(80, 20), (70, 60), (60, 50), (50, 90), (50, 80)]
    assert pareto_front(points) == [0, 1, 3]
