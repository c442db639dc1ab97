"""LLM judges: any OpenAI-compatible chat endpoint, or a local Hugging Face chat model.

MultiTrust asks gpt-4-1106-preview to grade free-form answers (T1, T3-T5, T7, S2, R1, R2, R4, R5, F1; the
prompts are in `judge_prompts`). A judge here takes filled prompts and returns one `JudgeResult` per prompt, in
order. A failed call is a result with `error` set, never an exception for one bad prompt and never a reply that
a downstream rule could read as a pass.

`OpenAIChatJudge` talks to `/v1/chat/completions` with the standard library only, so a local vLLM server works
with no extra dependency. The API key is read from the environment at call time and never stored, logged or
echoed in errors.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
_RETRY_AFTER_CAP_S = 30.0
_ERROR_BODY_CHARS = 300


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


class _Retryable(Exception):
    """A transient failure (connection, timeout, 429, 5xx); `retry_after` is the server's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failure that retrying will not fix (other 4xx, a malformed reply)."""


class OpenAIChatJudge:
    """Any OpenAI-compatible /v1/chat/completions endpoint (OpenAI, a local vLLM server, ...).

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
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        if not model:
            raise ValueError("model must name the model the endpoint serves")
        if max_retries < 0 or concurrency < 1:
            raise ValueError(f"need max_retries >= 0 and concurrency >= 1, got {max_retries} and {concurrency}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self.system_prompt = system_prompt
        # Host and port only: user info, path and query may carry secrets.
        host = parsed.hostname + (f":{parsed.port}" if parsed.port else "")
        self.id = f"openai-chat:{model}@{host}"

    def __repr__(self) -> str:
        return f"OpenAIChatJudge(id={self.id!r}, api_key_env={self.api_key_env!r})"

    @property
    def cache_id(self) -> str:
        """The judge's full identity for its reply cache: endpoint and model, decoding and system prompt."""
        system = hashlib.sha256((self.system_prompt or "").encode()).hexdigest()[:12]
        return f"{self.id}|temperature={self.temperature}|max_tokens={self.max_tokens}|system={system}"

    def ask(self, prompts: Sequence[str]) -> list[JudgeResult]:
        """One result per prompt, in order; up to `concurrency` requests run at once."""
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            return list(pool.map(self._ask_one, prompts))

    def _ask_one(self, prompt: str) -> JudgeResult:
        key = os.environ.get(self.api_key_env) or None  # read per call, never kept on the object
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": prompt})
        body = json.dumps(
            {"model": self.model, "messages": messages, "temperature": self.temperature, "max_tokens": self.max_tokens}
        ).encode()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return JudgeResult(text=self._post(body, headers))
            except _Fatal as err:
                return JudgeResult(text=None, error=_scrub(f"{self.id}: {err}", key))
            except _Retryable as err:
                message = _scrub(f"{self.id}: {err}", key)
                if attempt == attempts - 1:
                    return JudgeResult(text=None, error=f"{message} (gave up after {attempts} attempts)")
                wait = self.backoff_s * 2**attempt
                if err.retry_after is not None:
                    wait = max(wait, min(err.retry_after, _RETRY_AFTER_CAP_S))
                log.warning("%s; retry %d/%d in %.2fs", message, attempt + 1, self.max_retries, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _post(self, body: bytes, headers: dict[str, str]) -> str:
        """Send one request and return the reply text; raise `_Retryable` or `_Fatal`."""
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = _error_body(err)
            message = f"HTTP {err.code} {err.reason}" + (f": {detail}" if detail else "")
            if err.code == 429 or err.code >= 500:
                raise _Retryable(message, _retry_after(err.headers.get("Retry-After"))) from None
            raise _Fatal(message) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as err:
            reason = getattr(err, "reason", err)
            raise _Retryable(f"request failed: {type(reason).__name__}: {reason}") from None
        return _reply_text(raw)


def _reply_text(raw: bytes) -> str:
    """The first choice's message content of a chat-completions reply; `_Fatal` if the reply has none."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _Fatal(f"reply is not JSON ({err}): {raw[:_ERROR_BODY_CHARS]!r}") from None
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise _Fatal(f"reply has no choices[0].message.content: {str(data)[:_ERROR_BODY_CHARS]}") from None
    if not isinstance(content, str):
        raise _Fatal(f"reply content is {type(content).__name__}, not text")
    return content


def _error_body(err: urllib.error.HTTPError) -> str:
    try:
        return err.read()[:_ERROR_BODY_CHARS].decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the exponential backoff applies


def _scrub(message: str, key: str | None) -> str:
    """Remove the API key from a message (a server may echo request headers back in its error)."""
    return message.replace(key, "***") if key else message


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


_OPENAI_SPEC = re.compile(r"^openai:(?P<model>[^@]+?)(?:@(?P<url>.+))?$")


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
    match = _OPENAI_SPEC.match(spec)
    if spec.startswith("openai:") and match and match["model"].strip():
        url = match["url"] if match["url"] is not None else DEFAULT_OPENAI_BASE_URL
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"judge spec {spec!r}: {url!r} is not an http(s) base URL; expected {forms}")
        return OpenAIChatJudge(url, match["model"].strip(), **options)
    raise ValueError(f"bad judge spec {spec!r}; expected {forms}")
