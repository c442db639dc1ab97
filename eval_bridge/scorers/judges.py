"""LLM judges: any OpenAI-compatible chat endpoint, or a local Hugging Face chat model.

MultiTrust asks gpt-4-1106-preview to grade free-form answers (T1, T3-T5, T7, S2, R1, R2, R4, R5, F1; the
prompts are in `judge_prompts`). A judge here takes filled prompts and returns one `JudgeResult` per prompt, in
order. A failed call is a result with `error` set, never an exception for one bad prompt and never a reply that
a downstream rule could read as a pass.

`OpenAIChatJudge` talks to `/v1/chat/completions` through the toolkit's one OpenAI-compatible client
(`eval_bridge.openai_http`, standard library only), so a local vLLM server works with no extra dependency. The
API key is read from the environment at call time and never stored, logged or echoed in errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from eval_bridge.openai_http import OpenAIClient, parse_openai_spec


@dataclass(frozen=True)
class JudgeResult:
    """One judge reply.

    Attributes:
        text: the judge's reply, None on failure.
        error: why it failed (never contains the API key), None on success.
    """

    text: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class OpenAIChatJudge:
    """Any OpenAI-compatible /v1/chat/completions endpoint (OpenAI, a local vLLM server, ...).

    Requests go through the toolkit's one OpenAI-compatible client (`eval_bridge.openai_http`).

    Args:
        base_url: the API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
        model: the model name the endpoint serves.
        api_key_env: environment variable holding the key; sent as a Bearer token only if set.
        max_retries: retries after the first attempt on connection errors, timeouts, HTTP 429 and 5xx.
        backoff_s: first wait between attempts; doubled after each retry (a 429's Retry-After wins if longer).
        timeout_s: per-request socket timeout.
        temperature, max_tokens: sent with every request (MultiTrust: 0 and the task config's max_new_tokens).
        concurrency: requests in flight at once.
        system_prompt: optional system message before each prompt (MultiTrust sends none).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_retries: int = 3,
        backoff_s: float = 1.0,
        timeout_s: float = 60.0,
        temperature: float = 0.0,
        max_tokens: int = 256,
        concurrency: int = 4,
        system_prompt: str | None = None,
    ):
        self.http = OpenAIClient(
            base_url,
            api_key_env=api_key_env,
            max_retries=max_retries,
            backoff_s=backoff_s,
            timeout_s=timeout_s,
            concurrency=concurrency,
        )
        if not model:
            raise ValueError("model must name the model the endpoint serves")
        self.url = self.http.base_url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self.system_prompt = system_prompt
        self.id = f"openai-chat:{model}@{self.http.host}"
        self.http.label = self.id

    def __repr__(self) -> str:
        return f"OpenAIChatJudge(id={self.id!r}, api_key_env={self.api_key_env!r})"

    @property
    def cache_id(self) -> str:
        """The judge's full identity for its reply cache: endpoint and model, decoding and system prompt."""
        system = hashlib.sha256((self.system_prompt or "").encode()).hexdigest()[:12]
        return f"{self.id}|temperature={self.temperature}|max_tokens={self.max_tokens}|system={system}"

    def ask(self, prompts: Sequence[str]) -> list[JudgeResult]:
        """One result per prompt, in order; up to `concurrency` requests run at once."""
        replies = self.http.chat([self._body(p) for p in prompts])
        return [JudgeResult(text=r.text, error=r.error) for r in replies]

    def _body(self, prompt: str) -> dict:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }


class HFJudge:
    """A local Hugging Face chat model as judge, through the toolkit's VLM adapter (batched greedy).

    The model is loaded when the judge is built, so a bad path fails at once rather than mid-evaluation. Each
    prompt is one text-only user turn, rendered by the model's chat template; a VLM or a text-only causal LM.

    Args:
        model: a local directory or a hub id in the local cache.
        max_new_tokens: reply length limit.
        batch_size: prompts per generation batch.
        trust_remote_code: run model code shipped with the checkpoint. Off unless you opt in.
        raw_prompts: send prompts without the chat template, for classifiers that bring their own format (the
            HarmBench classifier's `[INST] ... [/INST]` prompt).
    """

    def __init__(
        self,
        model: str,
        *,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        trust_remote_code: bool = False,
        raw_prompts: bool = False,
    ):
        from eval_bridge.models.adapter import VLM

        self.id = f"hf:{model}" + (":raw" if raw_prompts else "")
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        try:
            self.vlm = VLM.load(model, trust_remote_code=trust_remote_code, raw_prompts=raw_prompts)
        except OSError as err:
            raise OSError(f"cannot load judge model {model!r}: {err}") from err
        except ValueError as err:
            raise ValueError(f"cannot load judge model {model!r}: {err}") from err

    def __repr__(self) -> str:
        return f"HFJudge(id={self.id!r})"

    @property
    def cache_id(self) -> str:
        """The judge's full identity for its reply cache: its weights' fingerprint and generation length."""
        return f"{self.id}|{self.vlm.cache_identity()}|max_new_tokens={self.max_new_tokens}"

    def ask(self, prompts: Sequence[str]) -> list[JudgeResult]:
        """One result per prompt, in order (greedy decoding, so the same prompts give the same replies)."""
        from eval_bridge.models.adapter import GenerationSettings
        from eval_bridge.samples import Sample

        if not prompts:
            return []
        samples = [Sample(id=str(i), prompt=p) for i, p in enumerate(prompts)]
        settings = GenerationSettings(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)
        return [JudgeResult(text=g.text) for g in self.vlm.generate(samples, settings)]


def judge_from_spec(spec: str, **options) -> OpenAIChatJudge | HFJudge:
    """Build a judge from a command-line spec.

    Specs: `openai:<model>@<base_url>` (e.g. `openai:gpt-4-1106-preview@https://api.openai.com/v1`, or
    `openai:Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1` for a local vLLM server); `openai:<model>` means the
    OpenAI API; `hf:<path or hub id>` is a local Hugging Face model. `options` go to the judge's constructor.
    Raises:
        ValueError: the spec matches none of these forms.
    """
    forms = "'openai:<model>@<base_url>', 'openai:<model>' or 'hf:<path or hub id>'"
    if spec.startswith("hf:"):
        path = spec[len("hf:") :].strip()
        if not path:
            raise ValueError(f"judge spec {spec!r} names no model; expected {forms}")
        return HFJudge(path, **options)
    if spec.startswith("openai:"):
        model, url = parse_openai_spec(spec, "judge spec")
        return OpenAIChatJudge(url, model, **options)
    raise ValueError(f"bad judge spec {spec!r}; expected {forms}")
