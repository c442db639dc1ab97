"""scripts/evaluate.py refuses bad input with one line that says what is wrong, where, and what to pass instead
(exit status non-zero, no traceback), before it computes anything."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
from peft import LoraConfig, get_peft_model

from eval_bridge.models.adapter import load_pretrained

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def evaluate():
    spec = importlib.util.spec_from_file_location("evaluate_bad_inputs_script", REPO / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lora_dir(tiny_model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    model, _ = load_pretrained(str(tiny_model_dirs["llava"]))
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM")).save_pretrained(out)
    return out


def refused(evaluate, argv) -> str:
    """The one-line error `main(argv)` exits with."""
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(a) for a in argv])
    message = exit_info.value.code
    assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message, message
    return message


def args(tmp_path, model, *extra):
    return ["--model", model, "--output", tmp_path / "out", "--cache-dir", tmp_path / "cache", *extra]


def test_an_output_path_under_a_file_is_refused(evaluate, tiny_model_dirs, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    argv = args(tmp_path, tiny_model_dirs["llava"])
    argv[3] = tmp_path / "a-file" / "out"
    message = refused(evaluate, argv)
    assert message.startswith(f"error: --output {tmp_path / 'a-file' / 'out'}: cannot write there")
    assert message.endswith("pass a folder you can write to")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_refused(evaluate, tiny_model_dirs, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o500)
    try:
        message = refused(evaluate, args(tmp_path, tiny_model_dirs["llava"]))
    finally:
        (tmp_path / "out").chmod(0o700)
    assert f"--output {tmp_path / 'out'}: cannot write there (Permission denied)" in message


def test_model_pointing_at_an_adapter_directory_says_what_to_pass(evaluate, tiny_model_dirs, lora_dir, tmp_path):
    message = refused(evaluate, args(tmp_path, lora_dir, "--tasks", "T6", "--no-tracks"))
    assert f"{lora_dir} is a PEFT adapter directory" in message
    assert f"--model {tiny_model_dirs['llava']} --adapter {lora_dir}" in message


def test_an_adapter_on_the_wrong_base_names_its_base(evaluate, tiny_model_dirs, lora_dir, tmp_path):
    argv = args(tmp_path, tiny_model_dirs["qwen2_vl"], "--adapter", lora_dir, "--tasks", "T6", "--no-tracks")
    message = refused(evaluate, argv)
    assert f"the adapter {lora_dir} does not fit the base model {tiny_model_dirs['qwen2_vl']}" in message
    assert f"trained on {tiny_model_dirs['llava']}" in message


def test_an_empty_data_root_is_refused(evaluate, tiny_model_dirs, tmp_path):
    (tmp_path / "data").mkdir()
    message = refused(
        evaluate, args(tmp_path, tiny_model_dirs["llava"], "--suite", "full", "--data-root", tmp_path / "data")
    )
    assert f"--data-root {tmp_path / 'data'} holds none of truthfulness/, safety/" in message
    assert "data/ folder" in message


def test_an_empty_dataset_names_task_dataset_and_data_root(evaluate, tiny_model_dirs, tmp_path):
    folder = tmp_path / "data" / "truthfulness" / "query_misleading"
    folder.mkdir(parents=True)
    (folder / "query_d_confusion.json").write_text("[]")
    argv = args(tmp_path, tiny_model_dirs["llava"], "--suite", "full", "--data-root", tmp_path / "data")
    message = refused(evaluate, [*argv, "--tasks", "T6", "--no-tracks"])
    assert "task T6, dataset 'd-mis-visual-confusion', has no samples" in message
    assert f"data_root {(tmp_path / 'data').resolve()}" in message


def test_an_empty_track_file_names_the_file(evaluate, tiny_model_dirs, tmp_path):
    empty = tmp_path / "benign.jsonl"
    empty.write_text("\n\n")
    argv = args(tmp_path, tiny_model_dirs["llava"], "--tasks", "none", "--over-refusal-file", empty)
    message = refused(evaluate, argv)
    assert "the over_refusal track has no samples" in message and f"over_refusal_file {empty}" in message


def test_a_limit_below_one_is_refused(evaluate, tiny_model_dirs, tmp_path):
    assert "limit must be at least 1" in refused(evaluate, args(tmp_path, tiny_model_dirs["llava"], "--limit", "0"))


def test_nothing_cached_is_lost_when_the_results_cannot_be_written(evaluate, tiny_model_dirs, tmp_path, monkeypatch):
    import eval_bridge.report

    def full_disk(results, output_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(eval_bridge.report, "write_results", full_disk)
    argv = args(tmp_path, tiny_model_dirs["llava"], "--tasks", "T6", "--no-tracks", "--max-new-tokens", "2")
    message = refused(evaluate, argv)
    assert f"cannot write the results to {tmp_path / 'out'}: [Errno 28] No space left on device" in message
    assert f"every response is cached in {tmp_path / 'cache'}" in message
    rows = [json.loads(line) for p in (tmp_path / "cache").rglob("responses.rank0.jsonl") for line in p.open()]
    assert len(rows) == 14 and all(r["task"] == "T6" for r in rows)  # every response of the run is cached
    monkeypatch.undo()
    evaluate.main([str(a) for a in argv])
    assert json.loads((tmp_path / "out" / "results.json").read_text())["provenance"]["responses"]["from_cache"] == 14
