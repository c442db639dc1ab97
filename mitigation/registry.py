"""The registry of mitigation methods: id -> axis, targeted aspects, and how the method applies.

Inference-time methods (VCD, ECSO, ...) register a factory returning an `eval_bridge.runner.InferenceMethod`;
`scripts/evaluate.py --method ID` looks them up here. Methods are added one module + one entry at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: where it acts and how to build it."""

    id: str
    axis: str  # data | architecture | training | inference
    targets: tuple[str, ...]
    factory: Callable[..., object]


METHODS: dict[str, MethodEntry] = {}


def inference_methods() -> list[str]:
    """Ids of the registered inference-time methods."""
    return sorted(m.id for m in METHODS.values() if m.axis == "inference")


def build_inference_method(method_id: str, **config):
    """Build the inference-time method `method_id` with `config`; a clear error for an unknown id."""
    entry = METHODS.get(method_id)
    if entry is None or entry.axis != "inference":
        available = ", ".join(inference_methods()) or "none registered yet"
        raise ValueError(f"unknown inference-time method {method_id!r}; available: {available}")
    return entry.factory(**config)
