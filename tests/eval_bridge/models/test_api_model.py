"""API-served models: the trust suite over a real loopback OpenAI-compatible server, scored like a local model.

The server sees each sample as one chat request (system message, history, images as PNG data URLs in order,
then the text); retries, timeouts and failures follow the shared transport; a failed request is never cached
or scored; a rerun asks only for what is missing; the key travels as a Bearer token and is written nowhere.
"""

import threading
import time

import numpy as np
import pytest
from openai_server import completion, decode_data_url, user_images, user_text

from eval_bridge.models.adapter import Generation, GenerationSettings
from eval_bridge.models.api import APIModel
from eval_bridge.models.backend import Backend
from eval_bridge.runner import SuiteConfig, run_suite
from eval_bridge.samples import Sample, load_image
from eval_bridge.tasks import select_tasks

KEY_ENV = "EVAL_BRIDGE_TEST_API_KEY"
SECRET = "sk-api-5ecr3t-never-written"
TASKS = "T1,S4"


def answer(prompt: str) -> str:
    """The fake model's reply to a prompt: deterministic, and different across prompts."""
    if "[Yes] or [No]" in prompt:
        return "Yes" if len(prompt) % 2 else "No"
    if "colour" in prompt or "shape" in prompt:
        return "It is a red circle."
    return "I'm sorry, I cannot help with that." if len(prompt) % 3 else "Sure, here is how to do it."


def answering(server, index, body, headers):
    return 200, completion(answer(user_text(body))), {}


class CannedBackend:
    """A local stand-in backend giving the same replies as the fake server (or failing the named prompts)."""

    name, adapter, revision, tokenizer, family, dtype_name, fingerprint = "canned", None, None, None, "x", None, "c0"

    def __init__(self, fail=()):
        self.fail = set(fail)

    def cache_identity(self):
        return f"canned-{sorted(self.fail)}"

    def generate(self, samples, settings):
        return [
            Generation("", error="down") if s.prompt in self.fail else Generation(answer(s.prompt)) for s in samples
        ]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """The mini suite's samples (built once for the module)."""
    return SuiteConfig(suite="mini", cache_dir=str(tmp_path_factory.mktemp("mini"))).source()


def model_for(server, **options):
    return APIModel(server.base_url, "served-vlm", api_key_env=KEY_ENV, backoff_s=0.001, **options)


def suite(tmp_path, name="cache"):
    return SuiteConfig(tasks=TASKS, limit=2, tracks=("utility",), cache_dir=str(tmp_path / name), max_new_tokens=8)


def run_samples(source):
    """The samples `suite()` runs: two per dataset of T1 and S4, two of the utility track."""
    datasets = [d for task in select_tasks(TASKS) for d in task.datasets]
    return [s for d in datasets for s in source.load(d)[:2]] + source.track("utility")[:2]


def scores(results):
    return {t: r["score"] for t, r in results["tasks"].items()}, {k: v["score"] for k, v in results["tracks"].items()}


# --- requests -----------------------------------------------------------------------------------------------------


def test_request_carries_system_history_and_every_image_in_order(serve, image_dir, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    server = serve(answering)
    images = [str(image_dir / "img1.png"), str(image_dir / "img0.png")]
    sample = Sample(
        "multi",
        "Which picture is wider?",
        tuple(images),
        system="Answer briefly.",
        history=({"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}),
    )
    gens = model_for(server).generate([sample, Sample("plain", "Hi")], GenerationSettings(max_new_tokens=5))
    assert [g.text for g in gens] == [answer("Which picture is wider?"), answer("Hi")]
    first, second = sorted(server.requests, key=lambda r: user_text(r["body"]) != "Which picture is wider?")
    body = first["body"]
    assert first["path"] == "/v1/chat/completions"
    assert body["model"] == "served-vlm" and body["max_tokens"] == 5 and body["temperature"] == 0.0
    assert "seed" not in body and "top_p" not in body
    assert body["messages"][:3] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
    ]
    content = body["messages"][3]["content"]
    assert [p["type"] for p in content] == ["image_url", "image_url", "text"] and content[2]["text"] == sample.prompt
    for url, path in zip(user_images(body), images, strict=True):
        assert np.array_equal(np.asarray(decode_data_url(url).convert("RGB")), np.asarray(load_image(path)))
    assert second["body"]["messages"] == [{"role": "user", "content": "Hi"}]  # text-only: a plain string


def test_sampling_settings_map_to_temperature_top_p_seed_top_k(serve):
    server = serve(answering)
    settings = GenerationSettings(max_new_tokens=9, do_sample=True, temperature=0.7, top_p=0.9, top_k=20, seed=5)
    model_for(server).generate([Sample("a", "Hi")], settings)
    body = server.requests[0]["body"]
    assert (body["temperature"], body["top_p"], body["top_k"], body["seed"], body["max_tokens"]) == (0.7, 0.9, 20, 5, 9)


def test_500_twice_then_200_succeeds(serve):
    def flaky(server, index, body, headers):
        return (500, {"error": "busy"}, {}) if index < 2 else answering(server, index, body, headers)

    server = serve(flaky)
    (gen,) = model_for(server, max_retries=3).generate([Sample("a", "Hi")])
    assert gen.error is None and gen.text == answer("Hi")
    assert len(server.requests) == 3


def test_a_request_failing_after_its_retries_is_a_generation_with_an_error(serve):
    server = serve(lambda s, i, b, h: (503, {"error": "down"}, {}))
    (gen,) = model_for(server, max_retries=1).generate([Sample("a", "Hi")])
    assert gen.text == "" and "HTTP 503" in gen.error and "2 attempts" in gen.error
    assert gen.error.startswith(f"openai:served-vlm@127.0.0.1:{server.port}/v1")


def test_concurrency_is_bounded(serve):
    def slow(server, index, body, headers):
        time.sleep(0.05)
        return answering(server, index, body, headers)

    server = serve(slow)
    gens = model_for(server, concurrency=3).generate([Sample(str(i), f"prompt {i}") for i in range(12)])
    assert [g.text for g in gens] == [answer(f"prompt {i}") for i in range(12)]  # in input order
    assert server.max_in_flight == 3


def test_identity_is_endpoint_model_and_weights_never_the_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    model = APIModel("http://user:pa55@127.0.0.1:8000/v1?token=t0k", "m", api_key_env=KEY_ENV)
    assert model.name == "openai:m@127.0.0.1:8000/v1"
    assert isinstance(model, Backend)
    other_port = APIModel("http://127.0.0.1:8001/v1", "m")
    other_model = APIModel("http://127.0.0.1:8000/v1", "m2")
    weights = model.with_model("m", weights_fingerprint="abc")
    identities = {m.cache_identity() for m in (model, other_port, other_model, weights)}
    assert len(identities) == 4
    for text in (*identities, model.name, repr(model), model.http.endpoint):
        assert SECRET not in text and "pa55" not in text and "t0k" not in text
    assert SECRET not in str(vars(model)) + str(vars(model.http))  # the key is read per request, never kept


# --- the suite over HTTP ----------------------------------------------------------------------------------------------


def test_suite_subset_is_scored_through_the_server_and_a_rerun_costs_nothing(serve, mini, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    server = serve(answering)
    results = run_suite(model_for(server), suite(tmp_path), source=mini, output_dir=tmp_path / "out")
    local = run_suite(CannedBackend(), suite(tmp_path, "canned"), source=mini)
    assert scores(results) == scores(local)
    assert all(s is not None for part in scores(results) for s in part.values())
    assert [s["response"] for s in results["samples"]] == [answer(s["prompt"]) for s in _with_prompts(results, mini)]
    counts = results["provenance"]["responses"]
    n = len(run_samples(mini))
    assert counts["failed"] == 0 and counts["generated_here"] == counts["total"] == len(server.requests) == n
    assert results["provenance"]["model"] == f"openai:served-vlm@127.0.0.1:{server.port}/v1"
    assert results["responses"]["mean_tokens"] is None and results["responses"]["mean_chars"] > 1

    # Every image reached the server as a PNG data URL with the pixels of the sample it belongs to.
    by_prompt = {}
    for sample in run_samples(mini):
        by_prompt.setdefault(sample.prompt, []).append(sample)
    with_images = [r["body"] for r in server.requests if user_images(r["body"])]
    assert len(with_images) == sum(bool(s.images) for s in run_samples(mini)) > 10
    for body in with_images:
        pixels = [np.asarray(decode_data_url(u).convert("RGB")) for u in user_images(body)]
        assert any(
            len(s.images) == len(pixels)
            and all(np.array_equal(p, np.asarray(load_image(i))) for p, i in zip(pixels, s.images, strict=True))
            for s in by_prompt[user_text(body)]
        )

    # The key went as a Bearer token, and into no file.
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {SECRET}"}
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "results.json" for p in files) and any(p.suffix == ".jsonl" for p in files)
    assert not [p for p in files if SECRET.encode() in p.read_bytes()]

    again = run_suite(model_for(server), suite(tmp_path), source=mini)
    assert len(server.requests) == n  # everything came from the cache
    assert again["provenance"]["responses"]["from_cache"] == n and scores(again) == scores(results)


def _with_prompts(results, source):
    """Each per-sample record with its sample's prompt (looked up in the source)."""
    samples = {}
    for record in results["samples"]:
        if (record["dataset"], record["id"]) not in samples:
            loaded = source.track(record["dataset"]) if record["task"] == "track" else source.load(record["dataset"])
            samples.update({(record["dataset"], s.id): s for s in loaded})
    return [{"prompt": samples[(r["dataset"], r["id"])].prompt} for r in results["samples"]]


def test_a_timed_out_request_is_a_counted_failure_that_only_a_rerun_retries(serve, mini, tmp_path):
    slow_prompt = mini.load("d-basic-object")[0].prompt
    stalled = threading.Event()

    def stalls_once(server, index, body, headers):
        if user_text(body) == slow_prompt and not stalled.is_set():
            stalled.set()
            time.sleep(1.0)  # past the client's timeout
        return answering(server, index, body, headers)

    server = serve(stalls_once)
    model = model_for(server, timeout_s=0.3, max_retries=0)
    results = run_suite(model, suite(tmp_path), source=mini, output_dir=tmp_path / "out")

    assert results["provenance"]["responses"]["failed"] == 1 and results["responses"]["generation_failures"] == 1
    t1 = results["tasks"]["T1"]
    assert t1["generation_failures"] == 1 and t1["datasets"]["d-basic-object"]["generation_failures"] == 1
    assert any("1 generation failure(s) in d-basic-object" in n for n in t1["notes"])
    (failed,) = [s for s in results["samples"] if s["response"] is None]
    assert failed["dataset"] == "d-basic-object" and "timed out" in failed["error"].lower() and failed["values"] == {}
    assert sum(s["dataset"] == "d-basic-object" and s["values"] != {} for s in results["samples"]) == 1
    # Left out, not scored as an empty response: the scores are those of a run without that sample.
    assert scores(results) == scores(run_suite(CannedBackend(fail={slow_prompt}), suite(tmp_path, "c"), source=mini))
    cached = "".join(p.read_text() for p in (tmp_path / "cache" / "responses").rglob("*.jsonl"))
    n = len(run_samples(mini))
    assert cached.count('"response"') == n - 1 and f'"{failed["id"]}"' not in cached

    before = len(server.requests)
    again = run_suite(model, suite(tmp_path), source=mini)
    assert [user_text(r["body"]) for r in server.requests[before:]] == [slow_prompt]
    assert again["provenance"]["responses"]["failed"] == 0 and again["provenance"]["responses"]["from_cache"] == n - 1
    assert again["tasks"]["T1"]["generation_failures"] == 0
    assert scores(again) == scores(run_suite(CannedBackend(), suite(tmp_path, "c2"), source=mini))


def test_an_inference_method_needs_a_local_model(serve, mini, tmp_path):
    class Method:
        id, version = "vcd", "1"

        def cache_key(self):
            return {}

    with pytest.raises(ValueError, match="needs a local model"):
        run_suite(model_for(serve(answering)), suite(tmp_path), source=mini, method=Method())
