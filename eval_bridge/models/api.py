"""`APIModel`: a model behind an OpenAI-compatible chat endpoint (a `vllm serve`, OpenAI, ...) as a suite backend.

    vllm serve Qwen/Qwen2.5-VL-7B-Instruct          # on the GPU machine
    model = APIModel.from_spec("openai:Qwen/Qwen2.5-VL-7B-Instruct@http://127.0.0.1:8000/v1")
    results = run_suite(model, SuiteConfig(tasks="T1,S4"), output_dir="runs/eval/qwen7b")

Each sample is one chat-completions request: the system prompt as a system message, earlier turns as text
messages, the final user turn as its images (base64 PNG data URLs, in the sample's order, before the text, as
the local chat templates place them) followed by the text. Greedy settings send temperature 0; sampled ones
temperature, top_p and seed (and top_k when set: vLLM accepts it, OpenAI does not). A request that still fails
after its retries comes back as a `Generation` with `error` set: the runner neither caches nor scores it, and
a rerun asks again.

The response cache keys a served model by its endpoint (host:port and path), its model name and, when given,
a fingerprint of the weights behind it (the eval bridge passes each checkpoint's), never by the key. The cache
cannot see weights a server swapped under the same name: use another served name or cache folder then.

`served_lora` loads a PEFT adapter into a vLLM server for the length of a block, through vLLM's runtime LoRA
API (server started with `--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`).
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from eval_bridge.cache import stable_hash
from eval_bridge.models.adapter import Generation, GenerationSettings
from eval_bridge.openai_http import OpenAIClient, parse_openai_spec
from eval_bridge.samples import Sample, SampleError, load_image

log = logging.getLogger(__name__)


def image_data_url(ref) -> str:
    """An image reference as a `data:image/png;base64,...` URL of its RGB pixels (what a local model sees)."""
    buffer = io.BytesIO()
    load_image(ref).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class APIModel:
    """A model served behind an OpenAI-compatible `/chat/completions` endpoint, run like a local `VLM`.

    Args:
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1` (a `vllm serve`) or `https://api.openai.com/v1`.
        model: the model name the endpoint serves (vLLM: the `vllm serve` argument or `--served-model-name`; a
            runtime-loaded LoRA adapter: its `lora_name`).
        api_key_env: environment variable holding the key, read at each request, sent as a Bearer token if set.
        concurrency: requests in flight at once.
        timeout_s: per-request timeout; a request that runs past it is retried, then recorded as failed.
        max_retries: retries after the first attempt on connection errors, timeouts, HTTP 429 and 5xx.
        backoff_s: first wait between attempts, doubled after each retry.
        weights_fingerprint: a fingerprint of the weights behind `model` (e.g. a checkpoint's), part of the
            cache identity; None: the endpoint and model name alone identify it.
        adapter: the adapter directory the server applies, for provenance.
    """

    family = "api"
    dtype_name = None  # the server decides; it is not visible through the API
    revision = None
    tokenizer = None  # response lengths are reported in characters

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        weights_fingerprint: str | None = None,
        adapter: str | None = None,
    ):
        if not model:
            raise ValueError("model must name the model the endpoint serves")
        self.http = OpenAIClient(
            base_url,
            api_key_env=api_key_env,
            max_retries=max_retries,
            backoff_s=backoff_s,
            timeout_s=timeout_s,
            concurrency=concurrency,
        )
        self.model = model
        self.name = f"openai:{model}@{self.http.endpoint}"
        self.http.label = self.name
        self.weights_fingerprint = weights_fingerprint
        self.adapter = adapter

    @classmethod
    def from_spec(cls, spec: str, **options) -> APIModel:
        """Build from `openai:<model>@<base_url>` (`openai:<model>`: the OpenAI API); `options` as the constructor's."""
        model, url = parse_openai_spec(spec, "--model")
        return cls(url, model, **options)

    def with_model(self, model: str, *, weights_fingerprint: str | None, adapter: str | None = None) -> APIModel:
        """The same endpoint and request options, another served model (e.g. a LoRA adapter loaded at run time)."""
        http = self.http
        return APIModel(
            http.base_url,
            model,
            api_key_env=http.api_key_env,
            concurrency=http.concurrency,
            timeout_s=http.timeout_s,
            max_retries=http.max_retries,
            backoff_s=http.backoff_s,
            weights_fingerprint=weights_fingerprint,
            adapter=adapter,
        )

    def __repr__(self) -> str:
        return f"APIModel(name={self.name!r}, api_key_env={self.http.api_key_env!r})"

    @property
    def fingerprint(self) -> str:
        """Endpoint (host:port and path), model name and weights fingerprint, hashed: never the key."""
        return stable_hash({"endpoint": self.http.endpoint, "model": self.model, "weights": self.weights_fingerprint})

    def cache_identity(self) -> str:
        """The response cache's folder for this served model (the generation settings key the folder below it)."""
        return f"api-{self.fingerprint}"

    def request_body(self, sample: Sample, settings: GenerationSettings) -> dict:
        """The chat-completions request for one sample (see the module docstring)."""
        messages: list[dict] = []
        if sample.system:
            messages.append({"role": "system", "content": sample.system})
        messages += [{"role": turn["role"], "content": turn["content"]} for turn in sample.history]
        if sample.images:
            try:
                parts = [{"type": "image_url", "image_url": {"url": image_data_url(ref)}} for ref in sample.images]
            except (OSError, ValueError) as err:
                raise SampleError(
                    f"cannot load image: {err}", source=sample.source or f"sample {sample.id}", field="images"
                ) from err
            messages.append({"role": "user", "content": [*parts, {"type": "text", "text": sample.prompt}]})
        else:
            messages.append({"role": "user", "content": sample.prompt})
        body = {"model": self.model, "messages": messages, "max_tokens": settings.max_new_tokens}
        if settings.do_sample:
            body.update(temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed)
            if settings.top_k is not None:
                body["top_k"] = settings.top_k
        else:
            body["temperature"] = 0.0
        return body

    def generate(
        self, samples: Sequence[Sample], settings: GenerationSettings = GenerationSettings()
    ) -> list[Generation]:
        """One generation per sample, in order, `concurrency` requests at a time; a failed request gives a
        `Generation` with empty text and `error` set. Images are encoded inside each request's thread, so only
        the requests in flight hold them."""

        def one(sample: Sample) -> Generation:
            reply = self.http.chat_one(self.request_body(sample, settings))
            return Generation(text=reply.text) if reply.ok else Generation(text="", error=reply.error)

        return self.http.map(one, list(samples))


def lora_name(weights_fingerprint: str) -> str:
    """The name a checkpoint's adapter is loaded under: its fingerprint, so two checkpoints never share one."""
    return f"trust-eval-{weights_fingerprint}"


@contextmanager
def served_lora(http: OpenAIClient, name: str, adapter_dir: str | Path) -> Iterator[None]:
    """Load the PEFT adapter `adapter_dir` into a vLLM server as `name` for the block, then unload it.

    Uses vLLM's runtime LoRA API: `POST /v1/load_lora_adapter {"lora_name", "lora_path"}` and
    `POST /v1/unload_lora_adapter {"lora_name"}`. The path is sent as this machine sees it: the server must see
    the same file system. An adapter of that name left loaded by a killed run is unloaded and loaded again.

    Raises:
        RuntimeError: the server refused the adapter, saying how to start it so that it accepts one.
    """
    path = str(Path(adapter_dir).resolve())
    load = {"lora_name": name, "lora_path": path}
    reply = http.post("/load_lora_adapter", load)
    if not reply.ok:
        http.post("/unload_lora_adapter", {"lora_name": name})  # a stale adapter of that name blocks loading
        reply = http.post("/load_lora_adapter", load)
    if not reply.ok:
        raise RuntimeError(
            f"the server did not load the LoRA adapter {path} as {name!r}: {reply.error}. Start vLLM with "
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and `vllm serve <base model> --enable-lora --max-lora-rank "
            "<your lora_r>`, on a machine that sees this path"
        )
    log.info("loaded LoRA adapter %s into %s as %s", path, http.endpoint, name)
    try:
        yield
    finally:
        reply = http.post("/unload_lora_adapter", {"lora_name": name})
        if not reply.ok:
            log.warning("could not unload LoRA adapter %s: %s", name, reply.error)
