"""Model loading and batched generation (`VLM`), and tiny random VLMs for tests (`tiny`)."""

from eval_bridge.models.adapter import VLM, Generation, GenerationSettings

__all__ = ["VLM", "Generation", "GenerationSettings"]
