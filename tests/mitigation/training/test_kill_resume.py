"""A kill costs minutes, not a run: a tiny SFT -> DPO pipeline run with the eval bridge in worker mode is SIGKILLed
(the trainer and its worker, as a scheduler pre-empting the job does) at a seeded random step after its first
checkpoint, resumed with `--resume_from_checkpoint last`, and ends with the uninterrupted run's weights, the queue
the kill left evaluated and every row of the trade-off table. The run waits at the chosen step to be killed
(`tests/tiny_pipeline.py --pause_at_step`), so the test waits on files, never on sleeps.

Set KILL_RESUME_SEED to draw another step; `-m slow` kills it at every step."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from resa_launch import launch_env
from safetensors.torch import load_file
from tiny_pipeline import DPO_STEPS, ROWS, SFT_STEPS

from eval_bridge.bridge import bridge_dir, completed, pending, unfinished
from eval_bridge.tradeoff import rows
from mitigation.training.pipeline import last_complete_checkpoint

REPO = Path(__file__).resolve().parents[3]
SEED = int(os.environ.get("KILL_RESUME_SEED", "14"))
# Before optimizer step k + 1, k = 2 ... 5: checkpoint-2 of SFT exists from k = 2 on; k = 4 is the start of DPO
# (SFT finished, DPO has no checkpoint yet); k = 5 follows DPO's first checkpoint.
KILL_STEPS = list(range(2, SFT_STEPS + DPO_STEPS))
SCORES = ("utility", "d_utility", "n/utility", "tasks_scored", "error")


def launch(model_dir, run: Path, *flags: str) -> tuple[subprocess.Popen, Path]:
    """Start the tiny pipeline in its own session (so a kill of its process group takes its worker too)."""
    log = run.with_name(run.name + f"-{len(list(run.parent.glob(run.name + '-*.log')))}.log")
    run.parent.mkdir(parents=True, exist_ok=True)
    args = {
        "--model": model_dir,
        "--output_dir": run,
        "--cache_dir": run.parent / "cache",
        "--report_to": "none",
        "--lora_r": 4,
        "--lora_alpha": 8,
        "--logging_steps": 1,
        "--seed": 0,
        "--eval_mode": "worker",
    }
    command = [sys.executable, str(REPO / "tests/tiny_pipeline.py"), *(str(x) for kv in args.items() for x in kv)]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*command, *flags], cwd=REPO, env=launch_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, log


def tail(path: Path, n: int = 4000) -> str:
    return path.read_text()[-n:] if path.exists() else "(no output)"


def finish(proc: subprocess.Popen, log: Path, what: str) -> None:
    rc = proc.wait(timeout=900)
    worker_log = next(log.parent.glob("*/trust_eval/worker.log"), Path("none"))
    assert rc == 0, f"{what} exited with {rc}:\n{tail(log)}\n--- worker log:\n{tail(worker_log, 2000)}"


def weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {stage: load_file(str(run / stage / "final" / "model.safetensors")) for stage in ("sft", "dpo")}


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dirs, tmp_path_factory):
    """A function returning the uninterrupted run's directory; the run starts at once, in the background (it
    trains while the test's own run is killed and resumed), and the function waits for it."""
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    proc, log = launch(tiny_model_dirs["llava"], run)

    def finished() -> Path:
        finish(proc, log, "the uninterrupted run")
        return run

    yield finished
    if proc.poll() is None:  # a test failed before it was needed
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_and_resume(model_dir, run: Path, step: int, why: str) -> dict:
    """Run until before step `step` + 1, SIGKILL the trainer and its worker, resume; returns what the kill left."""
    proc, log = launch(model_dir, run, "--pause_at_step", str(step))
    marker = run / "paused.json"
    deadline = time.monotonic() + 600
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{why}: the run never reached step {step} (exit {proc.poll()}):\n{tail(log)}")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    left = {
        "queued": [p.stem for p in pending(run)],
        "claimed": sorted(p.name for p in (bridge_dir(run) / "claims").glob("[0-9]*")),
        "checkpoints": sorted(p.relative_to(run).as_posix() for p in run.glob("*/checkpoint-*")),
    }
    resume, resume_log = launch(model_dir, run, "--resume_from_checkpoint", "last")
    finish(resume, resume_log, f"{why}: the resumed run (the kill left {left})")
    return left


def check_resumed(run: Path, straight: Path, left: dict, why: str) -> None:
    why = f"{why}; the kill left {left}"
    ours, theirs = weights(run), weights(straight)
    for stage in ours:
        assert ours[stage].keys() == theirs[stage].keys()
        # Exact: on CPU the resumed run restores the optimizer, scheduler, RNG and data order bit for bit.
        diff = [k for k in ours[stage] if not torch.equal(ours[stage][k], theirs[stage][k])]
        assert not diff, f"{why}: {stage} weights differ from the uninterrupted run's in {diff[:5]}"
    done = {json.dumps([r["step"], r.get("final", False)]): r for r in completed(run)}
    assert not pending(run) and not unfinished(run), f"{why}: left unevaluated after the resume"
    assert all(r["error"] is None for r in done.values()), f"{why}: {[r['error'] for r in done.values()]}"
    table, expected = rows(run), rows(straight)
    assert [(r["step"], r["stage"]) for r in table] == ROWS, why
    # The same weights give the same scores: each row equals the uninterrupted run's.
    assert [{k: r.get(k) for k in SCORES} for r in table] == [{k: r.get(k) for k in SCORES} for r in expected], why
    assert "evaluation failed" not in (bridge_dir(run) / "tradeoff.md").read_text(), why


def test_a_run_killed_at_a_random_step_resumes_to_the_uninterrupted_weights_and_every_row(
    uninterrupted, tiny_model_dirs, tmp_path
):
    step = random.Random(SEED).choice(KILL_STEPS)
    why = f"killed before step {step + 1} (KILL_RESUME_SEED={SEED})"
    left = kill_and_resume(tiny_model_dirs["llava"], tmp_path / "run", step, why)
    assert left["checkpoints"], f"{why}: no checkpoint existed at the kill"
    check_resumed(tmp_path / "run", uninterrupted(), left, why)


@pytest.mark.slow
@pytest.mark.parametrize("step", KILL_STEPS)
def test_a_run_killed_at_any_step_resumes_to_the_uninterrupted_weights_and_every_row(
    step, uninterrupted, tiny_model_dirs, tmp_path
):
    why = f"killed before step {step + 1}"
    left = kill_and_resume(tiny_model_dirs["llava"], tmp_path / "run", step, why)
    check_resumed(tmp_path / "run", uninterrupted(), left, why)


def test_resume_skips_a_checkpoint_the_kill_left_half_saved(tmp_path, caplog):
    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-6" / "model.safetensors").write_text("")  # killed while saving step 6
    with caplog.at_level("WARNING"):
        assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert f"not resuming from {tmp_path / 'checkpoint-6'}" in caplog.text
    assert last_complete_checkpoint(tmp_path / "nothing-here") is None
