"""The interface of inference-time mitigations (VCD, ECSO, AdaShield, ...): what `run_suite(method=...)` calls.

A method owns decoding; the model, its loading and its chat templating stay the toolkit's (`VLM`). It reaches the
model through the adapter's entry points, all on the adapter's one input-preparation path (`VLM.prepare`):

- `VLM.generate(samples, settings)`: batched generation (a method that only rewrites the prompts, AdaShield);
- `VLM.decode(requests, settings, prepare=..., logits_hook=...)`: the suite's one decode loop over the KV cache,
  where a request may own several rows whose logits its `combine` merges (VCD: a clean row and its noised twin,
  side by side in the same forward) and a loop-wide hook may rewrite each step's logits;
- `VLM.next_token_logprobs(samples, candidates)`: the first response token's distribution (ECSO's judge);
- `VLM.pixel_views(inputs, images_per_row)`: each row's image tensors inside prepared inputs, to edit in place.

The response cache keys a method's responses by its `id`, `version` and `cache_key()`
(`eval_bridge.provenance.method_identity`): changing a setting or bumping the version never reuses old responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from eval_bridge.models.adapter import VLM, Generation, GenerationSettings
    from eval_bridge.samples import Sample


class InferenceMethod(Protocol):
    """An inference-time mitigation (e.g. VCD, ECSO): it owns decoding, the model and templates stay the toolkit's."""

    id: str
    version: str  # bump when the method's outputs change for the same settings: cached responses are then redone

    def cache_key(self) -> dict:
        """The method's settings that change its outputs (part of the response-cache key)."""

    def generate(self, vlm: VLM, samples: Sequence[Sample], settings: GenerationSettings) -> list[Generation]:
        """One response per sample, in order."""
