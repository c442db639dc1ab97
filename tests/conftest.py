"""Shared fixtures: tiny random VLMs (built once per test session), images and mixed samples on disk."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No test may build the offline stand-in classifiers from the real SmolLM2 (minutes); tests that need one build it
# on a tiny LM and turn this back on (tests/eval_bridge/scorers/test_standin.py).
os.environ["VLM_TRUST_STANDIN"] = "off"

import pytest
import torch
from PIL import Image

from eval_bridge.models.tiny import FAMILIES, save_tiny_vlm
from eval_bridge.samples import Sample

# `serve`: a fake OpenAI-compatible chat server on loopback, for judge tests.
pytest_plugins = ["openai_server"]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory):
    """family -> directory of a saved tiny VLM (seed 0), built once for the whole session."""
    root = tmp_path_factory.mktemp("tiny-vlms")
    return {family: save_tiny_vlm(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    """Directory of a saved tiny random text-only causal LM (Llama), e.g. for judges."""
    from eval_bridge.models.tiny import build_tiny_lm

    path = tmp_path_factory.mktemp("tiny-lm")
    model, tokenizer = build_tiny_lm()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    """A folder with a few small RGB PNGs of different sizes (solid colours with a stripe)."""
    root = tmp_path_factory.mktemp("images")
    for i, (colour, size) in enumerate([("red", (40, 40)), ("blue", (64, 48)), ("green", (30, 70))]):
        img = Image.new("RGB", size, colour)
        img.paste((255, 255, 255), (0, 0, size[0] // 3, size[1]))
        img.save(root / f"img{i}.png")
    return root


@pytest.fixture(scope="session")
def mixed_samples(image_dir):
    """Five samples: with and without images, system prompt, history, and prompts of very different lengths."""
    return [
        Sample("img-short", "What colour is it?", (str(image_dir / "img0.png"),)),
        Sample("text-short", "Hi"),
        Sample(
            "img-long",
            "Describe the picture in detail, naming every shape and colour you see." * 2,
            (str(image_dir / "img1.png"),),
        ),
        Sample("img-system", "Is there a circle?", (str(image_dir / "img2.png"),), system="Answer yes or no."),
        Sample(
            "text-history",
            "and what about the square on the left of it?",
            history=({"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}),
        ),
    ]
