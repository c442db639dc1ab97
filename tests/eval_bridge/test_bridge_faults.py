"""The eval bridge's worker under faults: a claim names its worker (pid, host) and is taken back when that worker is
dead (once, even by racing workers), left alone when it runs on another host unless stale; a worker SIGKILLed while
it evaluates is reported by the training process, its checkpoint is a failed row with the reason, and a resume
evaluates it again; a worker that exits non-zero is reported with its log; every file the bridge writes appears
whole, and a half-written one read anyway is reported with its path.

The checkpoints are evaluated through a loopback fake OpenAI server (`SuiteSpec.server`), so no worker loads a
model and a request the server holds back pins a worker in the middle of an evaluation: no timing races."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from openai_server import completion
from resa_launch import launch_env

from eval_bridge import bridge_claims
from eval_bridge.bridge import (
    Manifest,
    SuiteSpec,
    bridge_dir,
    completed,
    drain,
    enqueue,
    pending,
    process,
    unfinished,
)
from eval_bridge.callback import TrustEvalCallback
from eval_bridge.tradeoff import rows, write_report

REPO = Path(__file__).resolve().parents[2]
KEY = "000000000"  # the queue key of step 0


class Gate:
    """A fake-server behaviour that holds every chat request until `release` is set (or 300 s pass)."""

    def __init__(self):
        self.arrived = threading.Event()
        self.release = threading.Event()

    def __call__(self, server, index, body, headers):
        self.arrived.set()
        self.release.wait(timeout=300)
        return 200, completion("Yes"), {}


@pytest.fixture
def served(tmp_path, serve):
    """A base model directory served by a gated fake server, and the suite spec that evaluates through it."""
    gate = Gate()
    server = serve(gate)
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "llava"}')
    spec = SuiteSpec(
        tasks="none",
        tracks=("utility",),
        limit=2,
        max_new_tokens=4,
        cache_dir=str(tmp_path / "cache"),
        server=f"openai:base-vlm@{server.base_url}",
        server_base=str(base),
    )
    yield gate, base, spec
    gate.release.set()  # free the handler threads a killed worker left waiting


def wait_for(condition, what, timeout_s=180, log=None):
    """Poll `condition` until it is true; on timeout fail saying `what` and the tail of `log` (a file)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tail = Path(log).read_text()[-3000:] if log and Path(log).exists() else "(no log)"
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}; log tail:\n{tail}")
        time.sleep(0.05)


def _reaped_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def write_claim(root: Path, key: str, **record) -> Path:
    path = root / "claims" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


# --- claims ------------------------------------------------------------------------------------------------------


def test_a_claim_is_a_whole_record_of_its_worker_and_exclusive(tmp_path):
    root = tmp_path / "trust_eval"
    before = time.time()
    assert bridge_claims.claim(root, KEY)
    record = json.loads((root / "claims" / KEY).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert record["started"] == bridge_claims.process_start(os.getpid()) is not None
    assert before <= record["claimed_at"] <= time.time()
    assert not bridge_claims.claim(root, KEY), "a live worker's claim is never taken"
    assert not bridge_claims.claim(root, KEY, stale_after_s=0), "nor by age: its worker can be checked"
    assert os.listdir(root / "claims") == [KEY], "no temporary file is left"
    assert json.loads((root / "claims" / KEY).read_text()) == record


def test_a_dead_workers_claim_is_taken_back_once_even_by_racing_workers(tmp_path):
    root = tmp_path / "trust_eval"
    write_claim(root, KEY, pid=_reaped_pid(), host=socket.gethostname(), started=None, claimed_at=time.time())
    seen = bridge_claims.inspect(root / "claims" / KEY)
    assert seen.state == bridge_claims.DEAD and "died before finishing it" in seen.describe()
    # Two workers that both judged the same claim dead: only the first takes it.
    assert bridge_claims.take_back(root, KEY, seen, json.dumps(bridge_claims.owner_record()))
    assert not bridge_claims.take_back(root, KEY, seen, '{"pid": 1}')
    assert json.loads((root / "claims" / KEY).read_text())["pid"] == os.getpid()
    assert not bridge_claims.claim(root, KEY), "the new claim is held: its worker (this process) runs"


def test_a_reused_pid_or_a_zombie_is_a_dead_worker(tmp_path):
    root = tmp_path / "trust_eval"
    here = socket.gethostname()
    # This process's pid, but a process started at another time: the pid was reused after the worker died.
    write_claim(root, "a", pid=os.getpid(), host=here, started="1", claimed_at=time.time())
    assert bridge_claims.inspect(root / "claims" / "a").state == bridge_claims.DEAD
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    write_claim(root, "b", pid=child.pid, host=here, started=bridge_claims.process_start(child.pid), claimed_at=0)
    assert bridge_claims.inspect(root / "claims" / "b").state == bridge_claims.HELD
    child.kill()  # killed, not yet reaped: a zombie still answers kill(pid, 0)
    wait_for(lambda: bridge_claims.inspect(root / "claims" / "b").state == bridge_claims.DEAD, "the zombie", 30)
    child.wait()


def test_another_hosts_claim_is_left_alone_unless_stale(tmp_path):
    root = tmp_path / "trust_eval"
    write_claim(root, "a", pid=os.getpid(), host="elsewhere", started=None, claimed_at=time.time() - 60)
    write_claim(root, "b", pid=os.getpid(), host="elsewhere", started=None, claimed_at=time.time() - 7200)
    fresh, old = (bridge_claims.inspect(root / "claims" / k) for k in "ab")
    assert fresh.state == old.state == bridge_claims.FOREIGN and "another host" in old.describe()
    assert not old.takeable(None) and not fresh.takeable(3600) and old.takeable(3600)
    assert not bridge_claims.claim(root, "a", stale_after_s=3600)
    assert bridge_claims.claim(root, "b", stale_after_s=3600)
    assert json.loads((root / "claims" / "b").read_text())["host"] == socket.gethostname()
    # A claim without a record (an older version's empty file) is judged by the file's age.
    empty = root / "claims" / "c"
    empty.write_text("")
    assert bridge_claims.inspect(empty).state == bridge_claims.UNKNOWN
    assert not bridge_claims.claim(root, "c", stale_after_s=3600)
    os.utime(empty, (time.time() - 7200,) * 2)
    assert bridge_claims.claim(root, "c", stale_after_s=3600)


# --- a worker killed mid-evaluation, a worker that crashes --------------------------------------------------------


def test_a_worker_killed_mid_evaluation_is_reported_and_its_checkpoint_evaluated_again(served, tmp_path, caplog):
    gate, base, spec = served
    run = tmp_path / "run"
    worker_log = bridge_dir(run) / "worker.log"
    callback = TrustEvalCallback(spec, run_dir=str(run))
    callback.submit(base, 0, stage="base")  # queues step 0 and starts the worker
    wait_for(gate.arrived.is_set, "the worker's first request to the server", log=worker_log)
    worker = callback.worker
    claim = json.loads((bridge_dir(run) / "claims" / KEY).read_text())
    assert (claim["pid"], claim["host"]) == (worker.pid, socket.gethostname())

    worker.send_signal(signal.SIGKILL)  # while its request is held: in the middle of the evaluation
    worker.wait(timeout=60)
    with caplog.at_level("ERROR", logger="eval_bridge.callback"):
        callback.finish()
    assert f"worker (pid {worker.pid}) was killed by signal 9 (SIGKILL)" in caplog.text
    assert str(worker_log) in caplog.text
    assert "1 checkpoint(s) were not evaluated: step 0 (base)" in caplog.text
    assert f"its worker pid {worker.pid} on {socket.gethostname()}" in caplog.text
    assert f"python scripts/report.py {run} --resume" in caplog.text

    # The trade-off table has the row, failed, with the reason: never silently missing.
    write_report(run)
    [row] = rows(run)
    assert row["step"] == 0 and "died before finishing it" in row["error"]
    table = (bridge_dir(run) / "tradeoff.md").read_text()
    assert f"evaluation failed: not finished: its worker pid {worker.pid}" in table

    gate.release.set()
    proc = subprocess.run(
        [sys.executable, "scripts/report.py", str(run), "--resume"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=launch_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 0: done" in proc.stderr and "taking back the claim" in proc.stderr, proc.stderr[-3000:]
    [record] = completed(run)
    assert record["error"] is None and record["headline"]["utility"] is not None
    assert not unfinished(run) and "evaluation failed" not in (bridge_dir(run) / "tradeoff.md").read_text()
    assert len(os.listdir(bridge_dir(run) / "retakes")) == 1


def test_a_worker_that_exits_non_zero_is_reported_with_its_log(served, tmp_path, caplog):
    spec = served[2]
    run = tmp_path / "run"
    bridge_dir(run).mkdir(parents=True)
    (bridge_dir(run) / "done").write_text("")  # the worker cannot record anything: it crashes with an OSError
    callback = TrustEvalCallback(spec, run_dir=str(run))
    callback.submit(tmp_path / "full-weights", 2, stage="sft")  # refused by the server spec at once: no request
    with caplog.at_level("ERROR", logger="eval_bridge.callback"):
        callback.finish()
    assert callback.worker.returncode == 1
    assert f"worker (pid {callback.worker.pid}) exited with code 1; see its log {bridge_dir(run) / 'worker.log'}" in (
        caplog.text
    )
    assert "Error" in (bridge_dir(run) / "worker.log").read_text()  # the traceback is in the log it names
    assert "step 2 (sft): not finished: its worker pid" in caplog.text and "--resume" in caplog.text


# --- whole files -------------------------------------------------------------------------------------------------


def test_every_file_the_bridge_writes_appears_whole(served, tmp_path, monkeypatch):
    """Each file under the run's bridge folder and the checkpoint's results folder arrives by a rename (or, for a
    claim, a hard link) of a finished temporary file: a reader never sees half of one."""
    gate, base, spec = served
    gate.release.set()
    arrived = set()
    replace, link = Path.replace, os.link

    def recording_replace(self, target):
        arrived.add(Path(target).resolve())
        return replace(self, target)

    def recording_link(src, dst, *args, **kwargs):
        arrived.add(Path(dst).resolve())
        return link(src, dst, *args, **kwargs)

    monkeypatch.setattr(Path, "replace", recording_replace)
    monkeypatch.setattr(os, "link", recording_link)
    run = tmp_path / "run"
    enqueue(run, Manifest(0, str(base), None, str(tmp_path / "results-0"), spec, stage="base"))
    [record] = drain(run)
    assert record["error"] is None, record
    write_report(run)
    written = {p.resolve() for folder in (bridge_dir(run), tmp_path / "results-0") for p in folder.rglob("*")}
    written = {p for p in written if p.is_file()}
    assert {p.name for p in written} >= {f"{KEY}.json", KEY, "results.json", "scores.csv", "tradeoff.md"}
    assert written <= arrived, f"written in place: {sorted(map(str, written - arrived))}"


def test_a_half_written_record_or_queue_entry_is_reported_with_its_path(served, tmp_path, caplog):
    _, base, spec = served
    run = tmp_path / "run"
    enqueue(run, Manifest(2, str(base), None, str(tmp_path / "o"), spec, stage="sft"))
    done = bridge_dir(run) / "done" / "000000002.json"
    done.parent.mkdir(parents=True)
    done.write_text('{"step": 2, "stage": "sft", "head')  # a crash of the machine mid-write, say
    with caplog.at_level("WARNING"):
        [record] = completed(run)
    assert str(done) in record["error"] and "--resume" in record["error"] and str(done) in caplog.text
    callback = TrustEvalCallback(spec, run_dir=str(run))
    callback._log_new_results()  # the trainer reads it: no JSONDecodeError
    assert [r["error"] for r in rows(run)] == [record["error"]]
    assert [p.name for p in pending(run)] == ["000000002.json"], "a resume evaluates it again"

    broken = bridge_dir(run) / "queue" / "000000004.json"
    broken.write_text('{"step": 4, "mod')
    assert f"its queue entry {broken} is unreadable" in unfinished(run)[-1]["error"]
    assert f"its queue entry {broken} is unreadable" in process(run, broken)["error"]
