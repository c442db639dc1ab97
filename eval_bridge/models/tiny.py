"""Tiny random VLMs built offline from configs, for tests and examples.

Each family gets a real transformers architecture at toy width (a few hundred KB), a byte-level BPE tokenizer
trained locally with `tokenizers`, a processor built from keyword arguments, and one ChatML-style chat template
whose assistant turns are wrapped in `{% generation %}` markers (TRL's `assistant_only_loss` needs them).
Everything is seeded, so two builds with the same seed give identical weights and tokenizers.

The result is saved with `save_pretrained` and reloads with `AutoModelForImageTextToText` / `AutoProcessor`
under `HF_HUB_OFFLINE=1`, i.e. through exactly the loading path real checkpoints take.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

FAMILIES = ("llava", "llava_next", "qwen2_vl", "idefics3")

# The chat template is shared by all families; only the text that stands for an image differs.
IMAGE_PLACEHOLDER = {
    "llava": "<image>",
    "llava_next": "<image>",
    "qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "idefics3": "<image>",
}

_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set ns = namespace(text='') -%}"
    "{%- if message['content'] is string -%}{%- set ns.text = message['content'] -%}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{%- set ns.text = ns.text + '@IMAGE@' -%}"
    "{%- elif item['type'] == 'text' -%}{%- set ns.text = ns.text + item['text'] -%}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}{{- ns.text + '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}"
    "{%- else -%}{{- '<|im_start|>' + message['role'] + '\\n' + ns.text + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

SPECIAL_TOKENS = [
    "<|pad|>",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<image>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]

_WORDS = [
    "what",
    "is",
    "the",
    "colour",
    "of",
    "shape",
    "in",
    "this",
    "image",
    "picture",
    "a",
    "an",
    "there",
    "are",
    "circle",
    "square",
    "triangle",
    "rectangle",
    "red",
    "blue",
    "green",
    "yellow",
    "black",
    "white",
    "gray",
    "brown",
    "orange",
    "purple",
    "yes",
    "no",
    "answer",
    "question",
    "describe",
    "how",
    "many",
    "does",
    "it",
    "show",
    "contain",
    "which",
    "left",
    "right",
    "top",
    "bottom",
    "small",
    "large",
    "I",
    "cannot",
    "help",
    "with",
    "that",
    "request",
    "sorry",
    "here",
    "steps",
    "sure",
    "reasoning",
    "step",
    "request",
    "risk",
    "decision",
    "safe",
    "unsafe",
    "harmful",
    "benign",
    "because",
    "user",
    "asks",
    "for",
    "information",
    "please",
    "note",
    "you",
    "should",
    "not",
    "will",
    "can",
    "be",
    "is",
    "are",
    "was",
    "were",
    "do",
    "does",
    "did",
    "have",
    "has",
    "had",
    "and",
    "or",
    "but",
    "if",
    "then",
    "so",
]


def chat_template(family: str) -> str:
    """The tiny models' ChatML template, with the family's image placeholder and generation markers."""
    return _CHAT_TEMPLATE.replace("@IMAGE@", IMAGE_PLACEHOLDER[family])


def _corpus(seed: int, n_lines: int = 400) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 16))]
        lines.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ","]))
    return lines


def build_tokenizer(seed: int = 0, vocab_size: int = 512):
    """Train a byte-level BPE tokenizer on a seeded synthetic corpus and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        bos_token=None,
        unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS[2:],
    )


def _llama_text(vocab: int, **overrides) -> dict:
    cfg = dict(
        model_type="llama",
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
    )
    cfg.update(overrides)
    return cfg


def _clip_vision() -> dict:
    return dict(
        model_type="clip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )


def _build_llava(tokenizer, template: str):
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    config = LlavaConfig(
        vision_config=_clip_vision(),
        text_config=_llama_text(len(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=16,
    )
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
    )
    return LlavaForConditionalGeneration(config), processor


def _build_llava_next(tokenizer, template: str):
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    pinpoints = [[32, 32], [32, 64], [64, 32], [64, 64]]
    config = LlavaNextConfig(
        vision_config=_clip_vision(),
        text_config=_llama_text(len(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=16,
    )
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
    )
    return LlavaNextForConditionalGeneration(config), processor


def _build_qwen2_vl(tokenizer, template: str):
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        model_type="qwen2_vl_text",
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|pad|>"),
        # M-RoPE splits head_dim/2 = 8 rotary frequencies over (time, height, width).
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    )
    vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=8, spatial_merge_size=2)
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    # 32x32..64x64 pixels -> a 4x4..8x8 patch grid -> 4..16 image tokens after the 2x2 merge.
    image_processor = Qwen2VLImageProcessor(
        min_pixels=32 * 32, max_pixels=64 * 64, patch_size=8, merge_size=2, temporal_patch_size=2
    )
    video_processor = Qwen2VLVideoProcessor(patch_size=8, merge_size=2, temporal_patch_size=2)
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=template,
    )
    return Qwen2VLForConditionalGeneration(config), processor


def _build_idefics3(tokenizer, template: str):
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    vision = dict(
        model_type="idefics3_vision",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    config = Idefics3Config(
        vision_config=vision,
        text_config=_llama_text(len(tokenizer)),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    # One 32x32 tile per image: (32/8)^2 patches / scale_factor^2 = 4 image tokens.
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": 32}, max_image_size={"longest_edge": 32}, do_image_splitting=False
    )
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4, chat_template=template
    )
    return Idefics3ForConditionalGeneration(config), processor


_BUILDERS = {
    "llava": _build_llava,
    "llava_next": _build_llava_next,
    "qwen2_vl": _build_qwen2_vl,
    "idefics3": _build_idefics3,
}


def build_tiny_vlm(family: str, seed: int = 0):
    """Build a tiny random VLM of `family` in memory.

    Returns:
        `(model, processor)`; the model is in eval mode, float32, with a generation config that stops at
        `<|im_end|>` and pads with `<|pad|>`.
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny VLM family {family!r}; choose one of {', '.join(FAMILIES)}")
    tokenizer = build_tokenizer(seed)
    tokenizer.chat_template = chat_template(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor = _BUILDERS[family](tokenizer, chat_template(family))
    processor.tokenizer.padding_side = "left"
    gen = model.generation_config
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = None
    gen.do_sample = False
    # A random model would otherwise emit image placeholders and other control tokens a trained one never does.
    gen.suppress_tokens = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS if t != "<|im_end|>"]
    (getattr(model.config, "text_config", None) or model.config).pad_token_id = tokenizer.pad_token_id
    return model.eval(), processor


def save_tiny_vlm(family: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Build a tiny VLM and `save_pretrained` it (weights as safetensors, plus processor) into `out_dir`."""
    out = Path(out_dir)
    model, processor = build_tiny_vlm(family, seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_lm(seed: int = 0):
    """A tiny random text-only causal LM (Llama) with the same tokenizer and chat template, e.g. for judge tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(seed)
    tokenizer.chat_template = chat_template("llava")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = LlamaConfig(**{k: v for k, v in _llama_text(len(tokenizer)).items() if k != "model_type"})
        model = LlamaForCausalLM(config)
    tokenizer.padding_side = "left"
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def save_all_tiny_vlms(out_dir: str | Path, families=FAMILIES, seed: int = 0) -> dict[str, Path]:
    """Save one tiny VLM per family under `out_dir/<family>`; returns family -> directory."""
    return {f: save_tiny_vlm(f, Path(out_dir) / f, seed) for f in families}
