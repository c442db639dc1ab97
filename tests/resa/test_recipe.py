"""The RESA recipe end to end on a tiny model, as users launch it: `accelerate launch` with two CPU processes."""

import json
import subprocess

from resa_launch import REPO, launch_env, resa_launch_command

from eval_bridge.bridge import completed


def test_recipe_under_accelerate_two_processes(tiny_model_dirs, tmp_path):
    launch = ["--multi_gpu", "--num_processes", "2", "--main_process_port", "29571"]
    cmd = resa_launch_command(launch, tiny_model_dirs["llava"], tmp_path / "run", "--sft_save_steps", "2")
    env = launch_env()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert proc.stdout.count("RESA trade-off") == 1  # printed by the main process only
    records = completed(tmp_path / "run")
    # step 0 (base), the SFT checkpoints at steps 2 and 4, the SFT final model (4, its own row), the DPO final
    # model (4 + 2): each evaluated exactly once, by the run's one bridge worker (two processes: eval_mode auto).
    expected = [(0, "base", False), (2, "sft", False), (4, "sft", False), (4, "sft", True), (6, "dpo", True)]
    assert [(r["step"], r["stage"], r["final"]) for r in records] == expected, proc.stderr[-3000:]
    assert [r["error"] for r in records] == [None] * 5, proc.stderr[-3000:]
    assert (tmp_path / "run" / "trust_eval" / "worker.log").is_file()
    assert all({"harmful_refusal", "over_refusal", "utility", "borderline_safe"} <= set(r["headline"]) for r in records)
    assert all(r["counts"]["borderline_safe"] == 4 for r in records)  # 2 safe prompts x 2 presentations
    table = (tmp_path / "run" / "trust_eval" / "tradeoff.md").read_text()
    assert "harmful-refusal-typographic" in table and "| 6 | dpo (final) |" in table
    best = json.loads((tmp_path / "run" / "trust_eval" / "best_checkpoint.json").read_text())
    assert best["weights"] == {"harmful_refusal": 1.0, "over_refusal": -1.0}
    timings = json.loads((tmp_path / "run" / "timings.json").read_text())
    assert list(timings) == ["base model", "data and traces", "SFT + evaluations", "DPO + evaluations", "report"]
    assert all(seconds >= 0 for seconds in timings.values())
    harmful = [json.loads(line) for line in (tmp_path / "run" / "eval_data" / "resa_heldout_harmful.jsonl").open()]
    assert {h["metadata"]["presentation"] for h in harmful} == {"text", "typographic", "unrelated_image"}
