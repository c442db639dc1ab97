"""The eval bridge through an external OpenAI-compatible server (vLLM's runtime LoRA API on a loopback fake):
each LoRA checkpoint is loaded, evaluated and unloaded; its fingerprint keys the cache; what a server cannot
evaluate (full weights, adapters of another base) is refused with the reason, at config time where possible."""

import json
from types import SimpleNamespace

import pytest
import torch
from openai_server import completion, user_text
from safetensors.torch import save_file

from eval_bridge.bridge import Manifest, SuiteSpec, completed, drain, enqueue
from eval_bridge.callback import TrustEvalCallback
from mitigation.training.config import TrainingConfig

SERVED = "base-vlm"


def vllm_like(server, index, body, headers):
    """Chat replies from whichever model is asked, and vLLM's plain-text answers to adapter (un)loading."""
    path = server.requests[index]["path"]
    if path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
        return 200, f"Success: LoRA adapter '{body['lora_name']}' done.".encode(), {}
    return 200, completion("Yes" if len(user_text(body)) % 2 else "No"), {}


def adapter_dir(path, value: float):
    """A LoRA checkpoint directory (config + weights); `value` sets its weights."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    save_file({"lora_A.weight": torch.full((4, 8), value)}, str(path / "adapter_model.safetensors"))
    return path


@pytest.fixture
def run(tmp_path, serve):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "llava"}')
    server = serve(vllm_like)
    spec = SuiteSpec(
        tasks="T1",
        limit=1,
        tracks=("utility",),
        max_new_tokens=4,
        cache_dir=str(tmp_path / "cache"),
        server=f"openai:{SERVED}@{server.base_url}",
        server_base=str(base),
    )
    return SimpleNamespace(dir=tmp_path / "run", base=base, server=server, spec=spec)


def queue(run, step, model, adapter=None, stage="sft"):
    out = run.dir / f"results-{step}"
    enqueue(run.dir, Manifest(step, str(model), str(adapter) if adapter else None, str(out), run.spec, stage=stage))


def calls(server, start=0):
    """(path, model or lora_name) of each request from `start` on."""
    return [(r["path"], r["body"].get("model") or r["body"].get("lora_name")) for r in server.requests[start:]]


def test_lora_checkpoints_are_loaded_evaluated_and_unloaded(run):
    checkpoint = adapter_dir(run.dir / "checkpoint-2", 0.1)
    queue(run, 0, run.base, stage="base")
    queue(run, 2, run.base, checkpoint)
    records = drain(run.dir)
    assert [r["error"] for r in records] == [None, None]
    assert all((run.dir / f"results-{step}" / "results.json").is_file() for step in (0, 2))

    seen = calls(run.server)
    n = sum(1 for path, model in seen if model == SERVED)
    assert n == 6 and seen[:n] == [("/v1/chat/completions", SERVED)] * n  # step 0: the served base (5 + utility)
    load = run.server.requests[n]["body"]
    name = load["lora_name"]
    assert load == {"lora_name": name, "lora_path": str(checkpoint.resolve())} and name.startswith("trust-eval-")
    assert seen[n:] == [("/v1/load_lora_adapter", name)] + [("/v1/chat/completions", name)] * 6 + [
        ("/v1/unload_lora_adapter", name)
    ]
    step2 = json.loads((run.dir / "results-2" / "results.json").read_text())["provenance"]
    assert step2["adapter"] == str(checkpoint) and step2["model"].startswith(f"openai:{name}@127.0.0.1")


def test_new_weights_in_the_same_checkpoint_directory_are_never_served_from_the_cache(run):
    checkpoint = adapter_dir(run.dir / "checkpoint-2", 0.1)
    queue(run, 2, run.base, checkpoint)
    drain(run.dir)
    first = run.server.requests[0]["body"]["lora_name"]

    start = len(run.server.requests)
    queue(run, 3, run.base, checkpoint)  # same weights: every response comes from the cache
    drain(run.dir)
    assert [path for path, _ in calls(run.server, start)] == ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"]

    adapter_dir(checkpoint, 0.2)  # retrained in place (same path, same step name)
    start = len(run.server.requests)
    queue(run, 4, run.base, checkpoint)
    drain(run.dir)
    seen = calls(run.server, start)
    assert seen[0][1] != first and sum(path == "/v1/chat/completions" for path, _ in seen) == 6


def test_what_the_server_cannot_evaluate_is_recorded_with_the_reason(run, tmp_path):
    full = tmp_path / "checkpoint-4"
    full.mkdir()
    (full / "config.json").write_text("{}")
    queue(run, 4, full)  # full weights
    queue(run, 6, full, adapter_dir(tmp_path / "dpo" / "checkpoint-2", 0.3))  # an adapter of another base
    drain(run.dir)
    errors = {r["step"]: r["error"] for r in completed(run.dir)}
    assert "cannot swap full weights" in errors[4] and "scripts/evaluate.py" in errors[4]
    assert f"trained on {full}" in errors[6] and "vllm serve" in errors[6]
    assert run.server.requests == []


def test_a_server_that_refuses_the_adapter_fails_the_checkpoint_saying_how_to_start_it(run, serve):
    server = serve(lambda s, i, b, h: (404, {"detail": "Not Found"}, {}))
    run.spec.server = f"openai:{SERVED}@{server.base_url}"
    queue(run, 2, run.base, adapter_dir(run.dir / "checkpoint-2", 0.1))
    (record,) = drain(run.dir)
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in record["error"] and "--enable-lora" in record["error"]


def test_eval_server_needs_lora_at_config_time():
    url = "openai:base@http://127.0.0.1:8000/v1"
    assert TrainingConfig(eval_server=url, use_lora=True).eval_server == url
    with pytest.raises(ValueError, match=r"cannot swap a model's full weights.*use_lora=true"):
        TrainingConfig(eval_server=url, use_lora=False)
    with pytest.raises(ValueError, match="openai:<model>@<base_url>"):
        TrainingConfig(eval_server="http://127.0.0.1:8000/v1")


def test_callback_refuses_full_weight_training_and_records_the_served_base(tmp_path):
    args = SimpleNamespace(
        output_dir=str(tmp_path), world_size=1, save_total_limit=None, hf_deepspeed_config=None, report_to=[]
    )
    state = SimpleNamespace(is_world_process_zero=True, global_step=0)
    spec = SuiteSpec(server="openai:base@http://127.0.0.1:8000/v1")
    with pytest.raises(ValueError, match="cannot swap full weights"):
        TrustEvalCallback(spec, mode="sync").on_train_begin(args, state, None, model=SimpleNamespace(config=None))
    lora = SimpleNamespace(peft_config={"default": SimpleNamespace(base_model_name_or_path="org/base")})
    callback = TrustEvalCallback(spec, mode="sync", evaluate_start=False)
    callback.on_train_begin(args, state, None, model=lora)
    assert callback.suite.server_base == "org/base"
