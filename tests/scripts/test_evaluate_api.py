"""scripts/evaluate.py --model openai:<model>@<base_url>: the suite against a served model (a loopback fake)."""

import importlib.util
import json
from pathlib import Path

import pytest
from openai_server import completion, user_text

REPO = Path(__file__).resolve().parents[2]
KEY_ENV = "EVAL_BRIDGE_TEST_CLI_KEY"


@pytest.fixture
def evaluate():
    spec = importlib.util.spec_from_file_location("evaluate_api_script", REPO / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluate_runs_the_suite_on_a_served_model(evaluate, serve, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "sk-cli-key")
    server = serve(lambda s, i, b, h: (200, completion("Yes" if "[Yes]" in user_text(b) else "red"), {}))
    args = ["--model", f"openai:served@{server.base_url}", "--tasks", "T1", "--limit", "1", "--no-tracks"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"), "--api-key-env", KEY_ENV]
    evaluate.main([*args, "--api-concurrency", "2", "--api-timeout", "5", "--api-max-retries", "1"])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert isinstance(results["tasks"]["T1"]["score"], float)
    assert results["provenance"]["model"] == f"openai:served@127.0.0.1:{server.port}/v1"
    assert len(server.requests) == 5 and all(r["body"]["model"] == "served" for r in server.requests)
    assert {r["headers"]["Authorization"] for r in server.requests} == {"Bearer sk-cli-key"}
    assert "results written to" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--adapter", "runs/lora/checkpoint-2"], "--adapter applies to a local model"),
        (["--method", "vcd"], "--method vcd needs a local model"),
    ],
)
def test_adapter_or_method_with_a_served_model_is_an_error_that_says_why(evaluate, tmp_path, extra, message):
    argv = ["--model", "openai:m@http://127.0.0.1:9/v1", "--output", str(tmp_path), *extra]
    with pytest.raises(SystemExit, match=message):
        evaluate.main(argv)
