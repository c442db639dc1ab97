"""scripts/evaluate.py stopped mid-suite (SIGKILL, SIGINT) resumes from the response cache: the rerun generates
exactly the responses missing from the cache and ends with the scores of an uninterrupted run. One run at a time
per output directory: a second is refused, naming the holder."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from resa_launch import launch_env

REPO = Path(__file__).resolve().parents[2]
BATCH = 1  # --batch-size 1: the runner flushes every 4 samples
PER_FLUSH = 4 * BATCH
PAUSE_AFTER = 2  # flushes before the paused run waits for its signal


def env(**extra):
    """Offline, one thread, and this checkout importable: a script under tests/ puts tests/ first on sys.path, where
    tests/eval_bridge/ would otherwise shadow the package's subpackages under an editable install's finder."""
    return {**launch_env(), "VLM_TRUST_STANDIN": "off", **extra}


@pytest.fixture(scope="module")
def args(tiny_model_dirs):
    """A few mini-suite tasks on a tiny model: 44 responses."""
    return [
        "--model",
        str(tiny_model_dirs["llava"]),
        "--tasks",
        "T6,S4,P2",
        "--no-tracks",
        "--max-new-tokens",
        "4",
        "--batch-size",
        str(BATCH),
    ]


def run(args, out, cache):
    proc = subprocess.run(
        [sys.executable, "scripts/evaluate.py", *args, "--output", str(out), "--cache-dir", str(cache)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc, json.loads((Path(out) / "results.json").read_text())


def cached(cache) -> int:
    """Responses in the cache so far, polled while the run writes it. Only the responses folder is walked: the run
    builds the mini suite in a temporary folder it renames, which a walk of the whole cache can trip over."""
    total = 0
    try:
        files = list((Path(cache) / "responses").rglob("responses.rank*.jsonl"))
        for path in files:
            total += len(path.read_text().splitlines())
    except FileNotFoundError:  # a folder or file moved mid-walk: count again at the next poll
        return 0
    return total


def start_paused(args, out, cache, log_path):
    """The evaluation, paused for good once `PAUSE_AFTER` batches are in the cache (polled, never slept on)."""
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "tests/evaluate_paused.py", *args, "--output", str(out), "--cache-dir", str(cache)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(EVALUATE_PAUSE_AFTER_FLUSHES=str(PAUSE_AFTER)),
    )
    deadline = time.monotonic() + 600
    while cached(cache) < PAUSE_AFTER * PER_FLUSH:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the paused run never reached its pause (rc {proc.poll()}):\n{log_path.read_text()[-4000:]}")
        time.sleep(0.05)
    return proc


@pytest.fixture(scope="module")
def uninterrupted(args, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    return run(args, root / "out", root / "cache")[1]


def same_scores(a, b):
    return all(a[k] == b[k] for k in ("tasks", "sub_aspects", "samples"))


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_a_run_stopped_mid_suite_regenerates_only_what_is_missing(how, args, uninterrupted, tmp_path):
    out, cache, log = tmp_path / "out", tmp_path / "cache", tmp_path / "paused.log"
    proc = start_paused(args, out, cache, log)
    proc.send_signal(how)
    rc = proc.wait(timeout=120)
    stderr = log.read_text()
    kept = cached(cache)
    assert kept == PAUSE_AFTER * PER_FLUSH, stderr[-4000:]  # every flushed batch survived the stop
    if how == signal.SIGINT:
        assert rc == 130, stderr[-4000:]
        assert "Traceback" not in stderr, stderr[-4000:]
        assert stderr.strip().splitlines()[-1] == (
            f"interrupted: the responses generated so far are cached in {cache}; run the same command again to resume"
        )
    else:
        assert rc == -signal.SIGKILL
    assert not (out / "results.json").exists()

    rerun, results = run(args, out, cache)  # the same --output: the killed run left no stale lock
    total = results["provenance"]["responses"]["total"]
    assert total == uninterrupted["provenance"]["responses"]["total"] == 44
    assert f"{kept} of {total} responses in the cache; generating {total - kept}" in rerun.stderr
    counts = results["provenance"]["responses"]
    assert (counts["from_cache"], counts["generated_here"], counts["failed"]) == (kept, total - kept, 0)
    assert cached(cache) == total  # nothing generated twice
    assert same_scores(results, uninterrupted)


def test_a_second_run_on_the_same_output_is_refused_naming_the_holder(args, tmp_path):
    out = tmp_path / "out"
    holder = start_paused(args, out, tmp_path / "cache", tmp_path / "paused.log")
    try:
        proc = subprocess.run(
            [sys.executable, "scripts/evaluate.py", *args, "--output", str(out), "--cache-dir", str(tmp_path / "c2")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env=env(),
        )
    finally:
        holder.kill()
        holder.wait(timeout=120)
    assert proc.returncode != 0
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: --output {out} is in use by another run")
    assert f"pid {holder.pid} on host {socket.gethostname()}" in message
    assert "wait for it to finish or pass another --output" in message
    assert "responses in the cache" not in proc.stderr  # refused before loading or generating anything
    assert not (tmp_path / "c2" / "responses").exists()
