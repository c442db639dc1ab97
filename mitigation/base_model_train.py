"""The two cheap training phases that align the embedded default base model on easy-VQA.

Every easy-VQA image shows one shape (circle, rectangle, triangle) of one of eight colours, so what the image
must tell the language model is a (colour, shape) pair. The alignment is split so that the expensive part (the
135M-parameter LM in the loop) trains as few parameters as possible and no vision compute at all:

1. `tune_concept_tokens` (LM in the loop, no vision tower): prompt tuning of a small table of "concept tokens",
   jointly with a LoRA on the LM's attention projections that is merged into the LM's weights afterwards,
   two input embeddings per colour and two per shape, initialised from the embeddings of the words themselves
   (" red", " circle"). An image of a red circle is read by the LM as `[red_0, red_1, circle_0, circle_1]` in
   the place of its image tokens; table and LoRA are trained with the answer-only loss on easy-VQA training
   questions (yes/no balanced, negated ones included, as easy-VQA asks them) so that SmolLM2 answers them
   ("Yes", "No", "Red", "Circle"). The concept tokens get noise while training, as the tower only
   approximates them.
2. `train_vision` (no LM): the CLIP tower + LLaVA projector learn to output, at each of the image's 4 patch
   positions, the concept token of that slot for the image's colour and shape (MSE), helped by auxiliary
   colour/shape classification heads on the pooled tower features (dropped afterwards) that train the tower fast.

The saved model's language side is the real SmolLM2-135M-Instruct plus a merged rank-16 change of its attention
projections (a plain LLaVA checkpoint, no adapter); its general chat survives (`base_model.chat_sanity`).
The tower also trains on random flips / quarter-turns of the images (`augment`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from eval_bridge.data import assets
from eval_bridge.data.mini_tracks import easy_vqa_prompt

TOKENS_PER_CONCEPT = 2  # 2 colour + 2 shape tokens = the 4 image tokens of a 64x64 image in 32x32 patches


@dataclass(frozen=True)
class QA:
    """One easy-VQA training question about an image of known colour and shape."""

    question: str
    answer: str
    color: str
    shape: str


def easy_vqa_qa(split: str) -> list[QA]:
    """The easy-VQA questions of `split` whose image's colour and shape are known."""
    images = {im.image_id: im for im in assets.easy_vqa_images(split)}
    return [QA(q, a, images[i].color, images[i].shape) for q, a, i in assets.easy_vqa_questions(split) if i in images]


def initial_concept_table(embeddings: torch.Tensor, tokenizer) -> torch.Tensor:
    """(8 colours + 3 shapes, TOKENS_PER_CONCEPT, hidden): each concept's word embedding, repeated."""
    rows = []
    for word in (*assets.COLORS, *assets.SHAPES):
        token = tokenizer(" " + word, add_special_tokens=False).input_ids[0]
        rows.append(embeddings[token].detach().clone().expand(TOKENS_PER_CONCEPT, -1))
    return torch.stack(rows).clone()


def concept_rows(color: str, shape: str) -> tuple[int, int]:
    """The table rows of a colour and a shape."""
    return assets.COLORS.index(color), len(assets.COLORS) + assets.SHAPES.index(shape)


def image_tokens(table: torch.Tensor, color: str, shape: str) -> torch.Tensor:
    """The (4, hidden) image tokens the LM should read for an image of a `color` `shape`."""
    c, s = concept_rows(color, shape)
    return torch.cat([table[c], table[s]])


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
# Text-only chat prompts whose answers, by the LM itself before the LoRA, are replayed while it trains, so that
# the LoRA learns one-word VQA answers without forgetting how to chat.
REPLAY_PROMPTS = (
    "What is the capital of Italy?",
    "Name a fruit that is yellow.",
    "How many days are in a week?",
    "Write a short greeting for a friend.",
    "Who wrote Romeo and Juliet?",
    "What color is the sky on a clear day?",
    "Give me a tip for sleeping better.",
    "What is the largest planet in the solar system?",
)


def self_replay(lm, tokenizer, prompts=REPLAY_PROMPTS, max_new_tokens: int = 24) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, the LM's own greedy answer ids ending in `<|im_end|>`) for each text-only chat prompt."""
    out = []
    for prompt in prompts:
        ids = tokenizer(
            f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False
        ).input_ids
        with torch.no_grad():
            gen = lm.generate(
                torch.tensor([ids]),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )[0, len(ids) :].tolist()
        end = tokenizer.eos_token_id
        out.append((ids, gen[: gen.index(end) + 1] if end in gen else gen))
    return out


def _replay_loss(lm, replay, rng, n: int, pad_id: int) -> torch.Tensor:
    """Answer-only cross-entropy of `n` sampled replay pairs (see `self_replay`)."""
    pairs = rng.sample(replay, min(n, len(replay)))
    rows = [p + a for p, a in pairs]
    length = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (length - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows])
    target = torch.tensor([[-100] * len(p) + a + [-100] * (length - len(p) - len(a)) for p, a in pairs])
    hidden = lm.model(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = target[:, 1:] != -100
    return F.cross_entropy(lm.lm_head(hidden[:, :-1][keep]), target[:, 1:][keep])


def tune_concept_tokens(
    lm,
    tokenizer,
    qa: list[QA],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    lora_rank: int = 0,
    lora_lr: float = 2e-3,
    noise: float = 0.0,
    replay: int = 0,
    log=print,
):
    """Phase 1: prompt-tune the concept table through the causal LM `lm` (answer-only cross-entropy).

    With `lora_rank` > 0 a LoRA on the LM's attention projections (`LORA_TARGETS`) trains jointly with the table
    and is merged into `lm`'s weights afterwards (in place), so `lm` stays a plain model; otherwise `lm` is
    frozen. With `replay` > 0, each step also trains on that many of the LM's own answers to text-only chat
    prompts (`self_replay`, recorded before training), which keeps its general chat. `noise` adds Gaussian
    noise (relative to the tokens' RMS) to the concept tokens while training, so that the LM tolerates the
    vision tower's imperfect reproduction of them.

    Returns:
        (the trained table (see `initial_concept_table`), `lm`).
    """
    embed = lm.get_input_embeddings().weight.detach()
    table = torch.nn.Parameter(initial_concept_table(embed, tokenizer))
    groups = [{"params": [table], "lr": lr}]
    model = lm
    replayed = self_replay(lm, tokenizer) if replay else []
    if lora_rank:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
        model = get_peft_model(lm, config)
        groups.append({"params": [p for p in model.parameters() if p.requires_grad], "lr": lora_lr})
        model.train()
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(1, steps))
    n_img = 2 * TOKENS_PER_CONCEPT
    prefix = tokenizer("<|im_start|>user\n", add_special_tokens=False).input_ids
    pad_id = tokenizer.pad_token_id
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(steps):
        batch = rng.sample(qa, batch_size)
        rows, labels = [], []
        for ex in batch:
            suffix = tokenizer(
                f"{easy_vqa_prompt(ex.question)}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False
            ).input_ids
            answer = tokenizer(f"{ex.answer.capitalize()}<|im_end|>", add_special_tokens=False).input_ids
            ids = prefix + [pad_id] * n_img + suffix + answer
            rows.append(ids)
            labels.append([-100] * (len(ids) - len(answer)) + answer)
        length = max(len(r) for r in rows)
        inputs = torch.stack([embed[torch.tensor(r + [pad_id] * (length - len(r)))] for r in rows])
        soft = torch.stack([image_tokens(table, ex.color, ex.shape) for ex in batch])
        if noise:
            soft = soft + noise * soft.detach().pow(2).mean().sqrt() * torch.randn(soft.shape, generator=gen)
        at = len(prefix)
        inputs = torch.cat([inputs[:, :at], soft, inputs[:, at + n_img :]], dim=1)
        mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows])
        target = torch.tensor([lb + [-100] * (length - len(lb)) for lb in labels])
        hidden = lm.model(inputs_embeds=inputs, attention_mask=mask).last_hidden_state  # through LoRA layers if any
        # Only the answer positions need logits: projecting every position onto 49k words would double the cost.
        keep = target[:, 1:] != -100
        loss = F.cross_entropy(lm.lm_head(hidden[:, :-1][keep]), target[:, 1:][keep])
        if replayed:
            loss = loss + 0.5 * _replay_loss(lm, replayed, rng, replay, pad_id)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 10 == 0 or step == steps - 1:
            log(
                f"  concept tokens: step {step + 1}/{steps} loss {loss.item():.3f} ({time.perf_counter() - start:.0f}s)"
            )
    if lora_rank:
        lm = model.merge_and_unload()
        lm.eval()
    return table.detach(), lm


def pixel_batches(processor, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pixel_values, colour index, shape index) of every easy-VQA image of `split`, through `processor`."""
    from PIL import Image

    images = assets.easy_vqa_images(split)
    pixels = processor([Image.open(im.path).convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
    colors = torch.tensor([assets.COLORS.index(im.color) for im in images])
    shapes = torch.tensor([assets.SHAPES.index(im.shape) for im in images])
    return pixels, colors, shapes


def train_vision(
    model, image_processor, table: torch.Tensor, *, epochs: int, batch_size: int, lr: float, seed: int, log=print
) -> dict:
    """Phase 2: train `model`'s vision tower + projector so that each image yields its concept tokens.

    Returns:
        held-out (easy-VQA test images) colour and shape accuracy of the auxiliary heads and the mean cosine
        between the projected image tokens and their targets.
    """
    tower, projector = model.model.vision_tower, model.model.multi_modal_projector
    width = tower.config.hidden_size
    heads = torch.nn.Linear(width, len(assets.COLORS) + len(assets.SHAPES))
    params = [*tower.parameters(), *projector.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    pixels, colors, shapes = pixel_batches(image_processor, "train")
    targets = torch.stack(
        [image_tokens(table, assets.COLORS[c], assets.SHAPES[s]) for c, s in zip(colors, shapes, strict=True)]
    )
    scale = targets.pow(2).mean()  # MSE relative to the targets' own size
    steps = epochs * ((len(pixels) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    tower.train()
    projector.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(pixels), generator=gen)
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            feats, tokens = _image_features(model, augment(pixels[idx], gen))
            logits = heads(feats.mean(dim=1))
            loss = (
                F.mse_loss(tokens, targets[idx]) / scale
                + F.cross_entropy(logits[:, : len(assets.COLORS)], colors[idx])
                + F.cross_entropy(logits[:, len(assets.COLORS) :], shapes[idx])
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log(f"  vision: epoch {epoch + 1}/{epochs} loss {loss.item():.3f} ({time.perf_counter() - start:.0f}s)")
    tower.eval()
    projector.eval()
    with torch.no_grad():
        pixels, colors, shapes = pixel_batches(image_processor, "test")
        feats, tokens = _image_features(model, pixels)
        logits = heads(feats.mean(dim=1))
        want = torch.stack(
            [image_tokens(table, assets.COLORS[c], assets.SHAPES[s]) for c, s in zip(colors, shapes, strict=True)]
        )
        return {
            "color_accuracy": (logits[:, : len(assets.COLORS)].argmax(-1) == colors).float().mean().item(),
            "shape_accuracy": (logits[:, len(assets.COLORS) :].argmax(-1) == shapes).float().mean().item(),
            "token_cosine": F.cosine_similarity(tokens, want, dim=-1).mean().item(),
        }


def augment(pixels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random one of the 8 flips/quarter-turns of each (square) image: colour and shape do not change."""
    out = pixels.clone()
    flip = torch.rand(len(pixels), generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    turns = torch.randint(0, 4, (len(pixels),), generator=gen)
    for k in range(1, 4):
        out[turns == k] = out[turns == k].rot90(k, dims=(-2, -1))
    return out


def _image_features(model, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tower patch features, projected image tokens) as LLaVA computes them (last layer, CLS dropped)."""
    out = model.model.vision_tower(pixels, output_hidden_states=True)
    feats = out.hidden_states[model.config.vision_feature_layer][:, 1:]
    return feats, model.model.multi_modal_projector(feats)
