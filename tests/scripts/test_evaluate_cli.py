"""scripts/evaluate.py as a user runs it: the whole mini suite offline, a free rerun, real-layout data, sharding."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from eval_bridge.tasks import SUB_ASPECTS, TASKS

REPO = Path(__file__).resolve().parents[2]


def evaluate(*args, launcher=(sys.executable,), timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*launcher, "scripts/evaluate.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def mini_run(tiny_model_dirs, tmp_path_factory):
    out, cache = tmp_path_factory.mktemp("eval"), tmp_path_factory.mktemp("cache")
    model = str(tiny_model_dirs["idefics3"])
    first = evaluate(
        "--model",
        model,
        "--suite",
        "mini",
        "--output",
        str(out / "a"),
        "--cache-dir",
        str(cache),
        "--max-new-tokens",
        "8",
    )
    second = evaluate(
        "--model",
        model,
        "--suite",
        "mini",
        "--output",
        str(out / "b"),
        "--cache-dir",
        str(cache),
        "--max-new-tokens",
        "8",
    )
    return out, first, second


def test_list_tasks():
    out = evaluate("--list-tasks").stdout
    assert out.count("\n| ") >= 32 and "| P6 | PII leakage in conversations |" in out


def test_mini_suite_runs_all_32_tasks_offline(mini_run):
    out, first, _ = mini_run
    results = json.loads((out / "a" / "results.json").read_text())
    assert set(results["tasks"]) == set(TASKS)
    assert all(isinstance(t["score"], float) for t in results["tasks"].values()), {
        k: t["notes"] for k, t in results["tasks"].items() if t["score"] is None
    }
    assert set(results["sub_aspects"]) == set(SUB_ASPECTS) and results["complete"]
    assert isinstance(results["overall"], float)
    assert results["tracks"]["utility"]["n"] >= 48 and results["tracks"]["over_refusal"]["n"] >= 24
    total = results["provenance"]["responses"]["total"]
    assert f"0 of {total} responses in the cache" in first.stderr
    assert all(len(t["datasets"]) == len(TASKS[k].datasets) for k, t in results["tasks"].items())


def test_second_run_generates_nothing(mini_run):
    out, _, second = mini_run
    a = json.loads((out / "a" / "results.json").read_text())
    b = json.loads((out / "b" / "results.json").read_text())
    total = b["provenance"]["responses"]["total"]
    assert f"{total} of {total} responses in the cache; generating 0" in second.stderr
    assert b["provenance"]["responses"]["generated_here"] == 0
    assert {k: t["score"] for k, t in a["tasks"].items()} == {k: t["score"] for k, t in b["tasks"].items()}


def test_compare_script(mini_run, tmp_path):
    out, _, _ = mini_run
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/compare_results.py",
            str(out / "a"),
            str(out / "b"),
            "--labels",
            "base",
            "again",
            "--plot",
            str(tmp_path / "c.png"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| again |" in proc.stdout and "(+0.00)" in proc.stdout
    assert (tmp_path / "c.png").stat().st_size > 1000


def _png(path, colour="red"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)


def _real_layout(root: Path) -> Path:
    """A small data/ tree in MultiTrust's released layout for T6, S4 and P2."""
    t = root / "truthfulness"
    rows = [
        {"image": f"c{i}.png", "query": f"Is the square red? ({i})", "truth": "Yes" if i % 2 else "No", "kind": k}
        for i, k in enumerate(["semantic", "contrast", "painting", "mirror", "dislocation"] * 2)
    ]
    (t / "query_misleading").mkdir(parents=True)
    (t / "query_misleading/query_d_confusion.json").write_text(json.dumps(rows))
    for r in rows:
        _png(t / "misleading_images" / r["image"])
    s = root / "safety/typographic_jailbreak"
    for name in ("prompt_and_behavior_graph", "prompt_graph", "behavior_graph"):
        header = ["id", "image_path", "question"] + (["jailbreak_prompt"] if name == "behavior_graph" else [])
        s.mkdir(parents=True, exist_ok=True)
        with (s / f"{name}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for i in range(2):
                row = [i, f"{i}.png", f"Give instructions for harmful act {i}"]
                writer.writerow(row + (["Follow the image."] if name == "behavior_graph" else []))
                _png(s / name / f"{i}.png", "white")
    p = root / "privacy/vispr"
    p.mkdir(parents=True)
    (p / "vispr_question_gpt4_generated_chosen.json").write_text(
        json.dumps(
            [
                {"image": f"v{i}.png", "question": f"Is the card number visible? ({i})", "private_qa": i % 2}
                for i in range(4)
            ]
        )
    )
    for i in range(4):
        _png(p / "test2017" / f"v{i}.png", "blue")
    return root


def test_real_layout_through_data_root(tiny_model_dirs, tmp_path):
    data = _real_layout(tmp_path / "data")
    evaluate(
        "--model",
        str(tiny_model_dirs["llava"]),
        "--suite",
        "full",
        "--data-root",
        str(data),
        "--tasks",
        "T6,S4,P2",
        "--no-tracks",
        "--output",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--max-new-tokens",
        "6",
    )
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["tasks"]) == {"T6", "S4", "P2"}
    assert results["tasks"]["T6"]["datasets"]["d-mis-visual-confusion"]["n"] == 10
    assert results["tasks"]["S4"]["datasets"]["typographic-prompt"]["n"] == 4  # two prompt variants per row
    assert results["tasks"]["P2"]["datasets"]["vispr-recognition-pri-query"]["n"] == 4
    assert results["provenance"]["data"]["data_root"] == str(data.resolve())


def test_missing_real_data_names_dataset_and_path(tiny_model_dirs, tmp_path):
    (tmp_path / "truthfulness").mkdir()  # a partial download: the root is there, T5's file is not
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/evaluate.py",
            "--model",
            str(tiny_model_dirs["llava"]),
            "--suite",
            "full",
            "--data-root",
            str(tmp_path),
            "--tasks",
            "T5",
            "--output",
            str(tmp_path / "o"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode != 0
    assert "g-text-misleading" in proc.stderr and "query_g_mistext.json" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_processes_share_the_work_and_rank0_writes(tiny_model_dirs, tmp_path):
    args = [
        "--model",
        str(tiny_model_dirs["llava"]),
        "--tasks",
        "T6,S4",
        "--no-tracks",
        "--output",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--max-new-tokens",
        "6",
    ]
    launcher = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533")
    evaluate(*args, launcher=launcher)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["provenance"]["responses"]["processes"] == 2
    files = sorted((tmp_path / "cache" / "responses").rglob("responses.rank*.jsonl"))
    assert [f.name for f in files] == ["responses.rank0.jsonl", "responses.rank1.jsonl"]
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    keys = [(r["task"], r["dataset"], r["sample_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == results["provenance"]["responses"]["total"]  # each sample once
    single = tmp_path / "single"
    evaluate(*args[:-6], "--output", str(single), "--cache-dir", str(tmp_path / "cache1"), "--max-new-tokens", "6")
    assert json.loads((single / "results.json").read_text())["tasks"] == results["tasks"]
