"""API keys never reach a file: a judged run and an API-model run (a loopback fake OpenAI server) with distinctive
keys in the environment; every file under the output and cache folders, and everything logged or printed, is
searched for them."""

import importlib.util
import logging
import uuid
from pathlib import Path

import pytest
from openai_server import completion

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def evaluate():
    spec = importlib.util.spec_from_file_location("evaluate_keys_script", REPO / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reply(server, index, body, headers):
    if body["model"] == "judge-model":
        return 200, completion("Yes"), {}
    return 200, completion("It is red."), {}


def files_holding(root: Path, secret: str) -> list[str]:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, f"nothing written under {root}"
    return [str(p) for p in files if secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("model", ["local", "api"])
def test_no_key_in_any_output_cache_or_log_file(
    model, evaluate, serve, tiny_model_dirs, tmp_path, monkeypatch, capsys, caplog
):
    judge_key, model_key = f"sk-judge-{uuid.uuid4().hex}", f"sk-model-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", judge_key)
    monkeypatch.setenv("EVAL_KEYS_TEST_MODEL_KEY", model_key)
    server = serve(reply)
    spec = str(tiny_model_dirs["llava"]) if model == "local" else f"openai:served@{server.base_url}"
    argv = ["--model", spec, "--tasks", "T5,T1", "--limit", "2", "--max-new-tokens", "4"]  # T5 is judged
    argv += ["--judge", f"openai:judge-model@{server.base_url}", "--api-key-env", "EVAL_KEYS_TEST_MODEL_KEY"]
    argv += ["--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--api-max-retries", "0"]
    caplog.set_level(logging.DEBUG)
    evaluate.main(argv)
    printed = capsys.readouterr()

    sent = {(r["body"]["model"], r["headers"].get("Authorization")) for r in server.requests}
    assert ("judge-model", f"Bearer {judge_key}") in sent  # the keys were really in use...
    if model == "api":
        assert ("served", f"Bearer {model_key}") in sent
    for secret in (judge_key, model_key):  # ...and are nowhere else
        assert files_holding(tmp_path / "out", secret) == []
        assert files_holding(tmp_path / "cache", secret) == []
        assert secret not in printed.out and secret not in printed.err and secret not in caplog.text
    assert (tmp_path / "out" / "results.json").is_file()
