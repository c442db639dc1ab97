"""Command-line scripts, run as a user runs them (subprocess) with tiny settings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def run(*args, cwd=REPO):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize(
    "script", ["make_tiny_models.py", "generate.py", "demo.py", "train_resa.py", "train_mitigation.py"]
)
def test_help(script):
    assert "usage" in run(f"scripts/{script}", "--help").stdout


def test_make_tiny_models_then_generate(tmp_path):
    out = run("scripts/make_tiny_models.py", str(tmp_path / "tiny"), "--families", "llava", "idefics3").stdout
    assert "llava" in out and (tmp_path / "tiny" / "idefics3" / "config.json").is_file()
    Image.new("RGB", (20, 20), "blue").save(tmp_path / "b.png")
    (tmp_path / "s.jsonl").write_text(
        json.dumps({"id": "1", "prompt": "Colour?", "image": "b.png"}) + "\n" + json.dumps({"id": "2", "prompt": "Hi"})
    )
    run(
        "scripts/generate.py",
        "--model",
        str(tmp_path / "tiny" / "llava"),
        "--samples",
        str(tmp_path / "s.jsonl"),
        "--output",
        str(tmp_path / "out.jsonl"),
        "--max-new-tokens",
        "4",
    )
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2"] and all(r["response"] for r in rows)


def test_generate_reports_a_bad_sample_file_clearly(tmp_path):
    (tmp_path / "s.jsonl").write_text(json.dumps({"id": "1", "prompt": "Colour?", "image": "missing.png"}) + "\n")
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/generate.py",
            "--model",
            "unused",
            "--samples",
            str(tmp_path / "s.jsonl"),
            "--output",
            str(tmp_path / "o.jsonl"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "s.jsonl, row 1, field 'image': image file not found" in proc.stderr


def test_demo_runs_and_batched_matches(tmp_path):
    out = run("scripts/demo.py", "--cache", str(tmp_path), "--max-new-tokens", "4").stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "family" not in line]
    assert len(rows) == 4 and all("| 16/16 |" in row for row in rows), out
