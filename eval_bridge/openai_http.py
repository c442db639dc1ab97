"""One HTTP client for OpenAI-compatible endpoints, shared by the LLM judges and by API-served models.

Standard library only, so a local `vllm serve` works with no extra dependency. Requests run concurrently
(bounded), each with a socket timeout; connection errors, timeouts, HTTP 429 and 5xx are retried with
exponential backoff (a 429's Retry-After wins when longer, up to 30 s); other 4xx and malformed replies fail at
once. A failure is a `Reply` with `error` set, never an exception and never a reply a caller could take for
text. The API key is read from the environment at call time, sent as a Bearer token, and never stored, logged
or echoed in errors.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
_RETRY_AFTER_CAP_S = 30.0
_ERROR_BODY_CHARS = 300
_OPENAI_SPEC = re.compile(r"^openai:(?P<model>[^@]+?)(?:@(?P<url>.+))?$")
OPENAI_SPEC_FORMS = "'openai:<model>@<base_url>' or 'openai:<model>' (the OpenAI API)"


def parse_openai_spec(spec: str, what: str = "spec") -> tuple[str, str]:
    """`(model, base_url)` of a command-line spec `openai:<model>@<base_url>`; `openai:<model>` means the
    OpenAI API. `what` names the spec in errors ("judge spec", "--model").

    Raises:
        ValueError: the spec names no model or its base URL is not http(s).
    """
    match = _OPENAI_SPEC.match(spec)
    if not spec.startswith("openai:") or not match or not match["model"].strip():
        raise ValueError(f"bad {what} {spec!r}; expected {OPENAI_SPEC_FORMS}")
    url = match["url"] if match["url"] is not None else DEFAULT_OPENAI_BASE_URL
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"{what} {spec!r}: {url!r} is not an http(s) base URL; expected {OPENAI_SPEC_FORMS}")
    return match["model"].strip(), url


@dataclass(frozen=True)
class Reply:
    """One request's outcome: `text` on success, `error` (never containing the key) on failure."""

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


class OpenAIClient:
    """Requests to one OpenAI-compatible API root (`https://api.openai.com/v1`, `http://127.0.0.1:8000/v1`).

    Args:
        base_url: the API root; request paths (`/chat/completions`) are appended to it.
        api_key_env: environment variable holding the key; sent as a Bearer token only if set.
        max_retries: retries after the first attempt on connection errors, timeouts, HTTP 429 and 5xx.
        backoff_s: first wait between attempts; doubled after each retry.
        timeout_s: per-request socket timeout.
        concurrency: requests in flight at once (`chat` with several bodies).
        label: what error messages start with (default: the endpoint).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_retries: int = 3,
        backoff_s: float = 1.0,
        timeout_s: float = 60.0,
        concurrency: int = 4,
        label: str | None = None,
    ):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        if max_retries < 0 or concurrency < 1:
            raise ValueError(f"need max_retries >= 0 and concurrency >= 1, got {max_retries} and {concurrency}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.base_url = base_url.rstrip("/")
        # Host, port and path only: user info and query may carry secrets.
        self.host = parsed.hostname + (f":{parsed.port}" if parsed.port else "")
        self.endpoint = self.host + parsed.path.rstrip("/")
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.label = label or self.endpoint

    def __repr__(self) -> str:
        return f"OpenAIClient(endpoint={self.endpoint!r}, api_key_env={self.api_key_env!r})"

    def chat(self, bodies: Sequence[dict]) -> list[Reply]:
        """POST each body to `/chat/completions`; one reply per body, in order, `concurrency` at a time."""
        return self.map(self.chat_one, bodies)

    def chat_one(self, body: dict) -> Reply:
        """POST one body to `/chat/completions`; the reply's text is the first choice's message content."""
        return self.post("/chat/completions", body, parse=_reply_text)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`fn` over `items` in up to `concurrency` threads, results in order (an exception in `fn` is raised)."""
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def post(self, path: str, body: dict, *, parse: Callable[[bytes], str] | None = None) -> Reply:
        """POST one JSON body to `base_url + path`, retrying transient failures.

        `parse` turns the raw reply into text (raising `_Fatal` if it cannot); default: the body as UTF-8 text
        (e.g. vLLM's plain-text replies to adapter loading)."""
        key = os.environ.get(self.api_key_env) or None  # read per call, never kept on the object
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode()
        url = self.base_url + path
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                raw = self._send(url, data, headers)
                return Reply(text=parse(raw) if parse else raw.decode("utf-8", "replace"))
            except _Fatal as err:
                return Reply(text=None, error=_scrub(f"{self.label}: {err}", key))
            except _Retryable as err:
                message = _scrub(f"{self.label}: {err}", key)
                if attempt == attempts - 1:
                    return Reply(text=None, error=f"{message} (gave up after {attempts} attempts)")
                wait = self.backoff_s * 2**attempt
                if err.retry_after is not None:
                    wait = max(wait, min(err.retry_after, _RETRY_AFTER_CAP_S))
                log.warning("%s; retry %d/%d in %.2fs", message, attempt + 1, self.max_retries, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _send(self, url: str, data: bytes, headers: dict[str, str]) -> bytes:
        """One request; the raw reply body, or `_Retryable` / `_Fatal`."""
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            detail = _error_body(err)
            message = f"HTTP {err.code} {err.reason}" + (f": {detail}" if detail else "")
            if err.code == 429 or err.code >= 500:
                raise _Retryable(message, _retry_after(err.headers.get("Retry-After"))) from None
            raise _Fatal(message) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as err:
            reason = getattr(err, "reason", err)
            raise _Retryable(f"request failed: {type(reason).__name__}: {reason}") from None


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
