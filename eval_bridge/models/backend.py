"""`Backend`: what the suite runner and the provenance need from a model, local or API-served.

Two backends implement it: `VLM` (a Hugging Face model in this process, `eval_bridge.models.adapter`) and
`APIModel` (a model behind an OpenAI-compatible chat endpoint, `eval_bridge.models.api`). The runner uses
nothing else, so both share the response cache, the scoring and the reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from eval_bridge.models.adapter import Generation, GenerationSettings
from eval_bridge.samples import Sample


@runtime_checkable
class Backend(Protocol):
    """A model the trust suite can run.

    Attributes:
        name: what the results call the model (a path, a hub id, `openai:<model>@<endpoint>`); no secrets.
        adapter: the PEFT adapter on top of it, if any.
        revision: the hub revision, if any.
        family: the model type (`llava`, `qwen2_vl`, ...; `api` for a served model).
        dtype_name: the weights' dtype ("float32"), None where the backend cannot know it (a server).
        fingerprint: equal fingerprints mean the same model.
        tokenizer: the model's tokenizer, for response lengths in tokens; None where there is none to hand
            (a server), and lengths are then reported in characters only.
    """

    name: str
    adapter: str | None
    revision: str | None
    tokenizer: Any | None

    @property
    def family(self) -> str: ...

    @property
    def dtype_name(self) -> str | None: ...

    @property
    def fingerprint(self) -> str: ...

    def cache_identity(self) -> str:
        """The response cache's folder name for this model: safe as a path component, secret-free."""

    def generate(self, samples: Sequence[Sample], settings: GenerationSettings) -> list[Generation]:
        """One generation per sample, in order; a request that failed (an API call past its retries) comes back
        with `error` set instead of raising."""
