"""`robust_vision`: an adversarially robust vision tower (METHODS.md 3.3). Targets robustness to adversarial images
(MultiTrust R4/R5) and, through it, adversarial-image jailbreaks (safety).

FARE (Schlarmann et al., "Robust CLIP", ICML 2024, arXiv 2402.12336; repo chs20/RobustVLM) fine-tunes the tower so
that a perturbed image still embeds where the ORIGINAL tower put the clean one, with no labels:

    min_theta  E_x  max_{||z - x||_inf <= eps}  || phi_theta(z) - phi_orig(x) ||^2

the squared error summed over feature dimensions and averaged over the batch (and over tokens for token features),
phi_orig a frozen copy. The inner max is PGD in PIXEL space [0, 1] (the CLIP mean/std normalisation happens inside
the attacked forward, so eps = 2/255 is 2 grey levels), tower in eval mode: a uniform random start in the eps-ball,
then `pgd_steps` sign-gradient steps through a 0.9 momentum buffer, each projected onto the ball and [0, 1].
TeCoA (Mao et al., ICLR 2023), `loss=tecoa`, is the supervised variant in the same loop: cross-entropy of the
zero-shot logits 100 * cos(image embedding, class-text embedding) against the image's class.

phi (project design, `features`): FARE constrains CLIP's pooled embedding, but a LLaVA LM reads the patch tokens of
`vision_feature_layer` (the penultimate layer for LLaVA-1.5, the last for the embedded default) through the
projector. The default `projector_input` constrains exactly those tokens (CLS dropped under the "default"
strategy), so robustness is bought where the LM looks; `pooled` (the post-layernorm CLS) is FARE's own choice.
TeCoA on a VLM without a CLIP text tower: the image embedding is the mean projected image token and the class-text
embedding the LM's input embedding of the class word (both live in the LM's embedding space).

Mode `swap` (no training; `robust_vision_swap.py`) loads robust CLIP weights into the tower and adapts the
resolution. Both modes save a complete VLM directory (processor included) that reloads with `from_pretrained`, and
send it with the base model through the eval bridge (held-out tracks + `eval_tasks`). The tower is the only part
that changes; `RUN/robustness.json` holds the embedding distance under PGD on held-out images (easy-VQA's test
split; training uses its train split) before and after.

Training is a `transformers.Trainer` whose model is the tower objective (`TowerObjective`) and whose checkpoints are
whole VLMs (`RobustVisionTrainer._save`), so checkpointing, resume and DDP come from the library and every
checkpoint can go through the bridge. Qwen2-VL-style towers (flattened patches) are refused with an error.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mitigation.architecture.robust_vision_config import RobustVisionConfig
from mitigation.training.parts import get_submodule, resolve_parts

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


# ---------------------------------------------------------------- phi: the features FARE constrains


def tower_features(tower: nn.Module, pixel_values: torch.Tensor, config, kind: str) -> torch.Tensor:
    """phi of normalised `pixel_values`: [B, T, D] projector-input tokens (LLaVA's selection: `vision_feature_layer`,
    CLS dropped under the "default" strategy, several layers concatenated) or the [B, D] pooled embedding."""
    if kind == "pooled":
        return tower(pixel_values).pooler_output
    out = tower(pixel_values, output_hidden_states=True)
    layer = config.vision_feature_layer
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    drop_cls = config.vision_feature_select_strategy == "default"
    return torch.cat([out.hidden_states[i][:, 1:] if drop_cls else out.hidden_states[i] for i in layers], dim=-1)


def fare_loss(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """||features - reference||^2 summed over the last (feature) dimension, averaged over everything else."""
    return (features - reference).pow(2).sum(dim=-1).mean()


class TowerObjective(nn.Module):
    """The trained tower, its frozen original, and the inner / outer loss on [0, 1] pixels.

    Args:
        tower: the VLM's vision tower (trained in place: the VLM sees every update).
        config: the VLM's config (`vision_feature_layer`, `vision_feature_select_strategy`).
        mean, std: the processor's per-channel normalisation, applied inside every forward.
        features: "projector_input" or "pooled" (module docstring).
        loss: "fare" or "tecoa".
        projector, class_text, logit_scale: TeCoA only: the (frozen) projector, [C, D] class-text embeddings.
    """

    def __init__(
        self,
        tower: nn.Module,
        config,
        mean,
        std,
        *,
        features: str = "projector_input",
        loss: str = "fare",
        projector: nn.Module | None = None,
        class_text: torch.Tensor | None = None,
        logit_scale: float = 100.0,
    ):
        super().__init__()
        self.tower = tower
        self.frozen = copy.deepcopy(tower).eval().requires_grad_(False)
        self.vlm_config, self.kind, self.loss = config, features, loss
        param = next(tower.parameters())
        self.register_buffer("mean", torch.as_tensor(mean, dtype=param.dtype).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=param.dtype).view(1, -1, 1, 1), persistent=False)
        if loss == "tecoa":
            if projector is None or class_text is None:
                raise ValueError("loss=tecoa needs the projector and the class-text embeddings")
            self.projector = projector.requires_grad_(False)
            self.register_buffer("class_text", F.normalize(class_text.to(param.dtype), dim=-1), persistent=False)
            self.logit_scale = logit_scale

    def train(self, mode: bool = True):
        super().train(mode)
        self.frozen.eval()  # the reference never changes behaviour with the Trainer's train() calls
        return self

    def features(self, pixels: torch.Tensor, *, frozen: bool = False) -> torch.Tensor:
        """phi of [0, 1] `pixels` under the trained tower (or the frozen original)."""
        tower = self.frozen if frozen else self.tower
        return tower_features(tower, (pixels - self.mean) / self.std, self.vlm_config, self.kind)

    def target(self, pixels: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """What the inner loss compares with: the frozen tower's clean features (FARE) or the labels (TeCoA)."""
        if self.loss == "tecoa":
            if labels is None:
                raise ValueError("loss=tecoa needs class labels for every image")
            return labels
        with torch.no_grad():
            return self.features(pixels, frozen=True)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """TeCoA's zero-shot logits: scale * cos(mean projected image token, class-text embedding)."""
        image = self.projector(features)
        image = image.mean(dim=1) if image.dim() == 3 else image
        return self.logit_scale * F.normalize(image, dim=-1) @ self.class_text.T

    def inner_loss(self, pixels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss the attack maximises and training minimises, at [0, 1] `pixels`."""
        features = self.features(pixels)
        if self.loss == "tecoa":
            return F.cross_entropy(self.logits(features), target)
        return fare_loss(features, target)

    def forward(self, adv_pixel_values: torch.Tensor, target: torch.Tensor) -> dict:
        """The training loss on attacked images (called through the DDP wrapper, so gradients are synchronised)."""
        return {"loss": self.inner_loss(adv_pixel_values, target)}


# ---------------------------------------------------------------- the inner maximisation


def pgd(
    loss_fn,
    pixels: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    momentum: float = 0.9,
    generator: torch.Generator | None = None,
    tower: nn.Module | None = None,
) -> torch.Tensor:
    """z in the L-inf `eps`-ball around [0, 1] `pixels` (and in [0, 1]) that raises the scalar `loss_fn(z)`.

    eps and step_size are on the [0, 1] scale (the config's /255 values divided by 255). `tower` (the attacked one)
    is in eval mode during the attack; only the perturbation gets gradients. With L-inf sign normalisation the
    re-normalised momentum buffer steps along sign(grad) wherever the gradient is non-zero (RobustVLM's
    pgd_train.py keeps the buffer all the same; so does this).
    """
    was_training = tower is not None and tower.training
    if tower is not None:
        tower.eval()
    noise = torch.rand(pixels.shape, generator=generator).to(device=pixels.device, dtype=pixels.dtype)
    delta = ((pixels + (2 * noise - 1) * eps).clamp(0, 1) - pixels).detach()
    velocity = torch.zeros_like(pixels)
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(pixels + delta), delta)
        velocity = (momentum * velocity + grad.sign()).sign()
        delta = (delta.detach() + step_size * velocity).clamp(-eps, eps)
        delta = (pixels + delta).clamp(0, 1) - pixels
    if was_training:
        tower.train()
    return (pixels + delta).detach()


def attack(
    objective: TowerObjective,
    pixels: torch.Tensor,
    target: torch.Tensor,
    cfg: RobustVisionConfig,
    *,
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PGD on the objective's inner loss with the config's epsilon, step size, steps and momentum."""
    return pgd(
        lambda z: objective.inner_loss(z, target),
        pixels,
        eps=cfg.eps(),
        step_size=cfg.step_size(),
        steps=steps or cfg.pgd_steps,
        momentum=cfg.pgd_momentum,
        generator=generator,
        tower=objective.tower,
    )


def measure(objective: TowerObjective, pixels, labels, cfg: RobustVisionConfig, *, batch_size: int = 64) -> dict:
    """Mean FARE distance ||phi(z) - phi_orig(x)||^2 on held-out images, clean (z = x) and under a
    `measure_pgd_steps` PGD at `epsilon` that maximises it (seeded start: the same before and after training),
    and that distance relative to the mean ||phi_orig(x)||^2; for TeCoA also the zero-shot accuracy, clean and
    under PGD on the cross-entropy."""
    device = next(objective.parameters()).device
    generator = torch.Generator().manual_seed(cfg.seed)
    sums = dict(clean=0.0, pgd=0.0, norm=0.0, clean_acc=0.0, pgd_acc=0.0)
    tecoa = objective.loss == "tecoa" and labels is not None
    for start in range(0, len(pixels), batch_size):
        x = pixels[start : start + batch_size].to(device=device, dtype=objective.mean.dtype)
        with torch.no_grad():
            reference = objective.features(x, frozen=True)
        z = pgd(
            lambda z, ref=reference: fare_loss(objective.features(z), ref),
            x,
            eps=cfg.eps(),
            step_size=cfg.step_size(),
            steps=cfg.measure_pgd_steps,
            momentum=cfg.pgd_momentum,
            generator=generator,
            tower=objective.tower,
        )
        with torch.no_grad():
            clean = objective.features(x)
            sums["clean"] += fare_loss(clean, reference).item() * len(x)
            sums["pgd"] += fare_loss(objective.features(z), reference).item() * len(x)
            sums["norm"] += reference.pow(2).sum(-1).mean().item() * len(x)
        if tecoa:
            y = labels[start : start + batch_size].to(device)
            z = attack(objective, x, y, cfg, steps=cfg.measure_pgd_steps, generator=generator)
            with torch.no_grad():
                sums["clean_acc"] += (objective.logits(clean).argmax(-1) == y).sum().item()
                sums["pgd_acc"] += (objective.logits(objective.features(z)).argmax(-1) == y).sum().item()
    n = len(pixels)
    result = {
        "n_images": n,
        "epsilon": f"{cfg.epsilon:g}/255",
        "pgd_steps": cfg.measure_pgd_steps,
        "clean_distance": sums["clean"] / n,
        "pgd_distance": sums["pgd"] / n,
        "reference_sq_norm": sums["norm"] / n,
    }
    result["pgd_distance_relative"] = result["pgd_distance"] / max(result["reference_sq_norm"], 1e-12)
    if tecoa:
        result.update(clean_accuracy=sums["clean_acc"] / n, pgd_accuracy=sums["pgd_acc"] / n)
    return result


# ---------------------------------------------------------------- images


def check_supported(model) -> None:
    """A ValueError unless the VLM is LLaVA-style: a tower fed [B, 3, S, S] images whose features the config
    selects (`vision_feature_layer`)."""
    config = model.config
    tower = get_submodule(model, resolve_parts(model).vision_tower)
    if not hasattr(config, "vision_feature_layer") or not hasattr(getattr(tower, "config", None), "image_size"):
        raise ValueError(
            f"robust_vision supports LLaVA-style VLMs (a CLIP-like tower and config.vision_feature_layer); "
            f"{type(model).__name__} (model_type {config.model_type!r}) is not one: Qwen2-VL's flattened patches "
            "need a differentiable patchify that is not built yet"
        )


def load_pixels(path: str | Path, size: int) -> torch.Tensor:
    """[3, size, size] in [0, 1]: CLIP's preprocessing without normalisation (bicubic resize of the short side,
    centre crop)."""
    from PIL import Image

    try:
        image = Image.open(path).convert("RGB")
    except OSError as err:
        raise ValueError(f"image {path}: cannot be read ({err}); remove it or fix the file") from None
    scale = size / min(image.size)
    w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((w, h), Image.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1) / 255.0


class ImageDataset(torch.utils.data.Dataset):
    """Images read lazily as {"pixel_values": [3, S, S] in [0, 1], "labels": class index (-1: none)}."""

    def __init__(self, paths, labels, size: int):
        self.paths, self.labels, self.size = list(paths), list(labels), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": load_pixels(self.paths[i], self.size), "labels": self.labels[i]}


def easy_vqa_images(split: str, n: int, seed: int, label: str) -> tuple[list[Path], list[int], list[str]]:
    """`n` seeded easy-VQA images of `split` (-1: all), their class index by shape or colour, and the class names."""
    from eval_bridge.data import assets

    images = list(assets.easy_vqa_images(split))
    if n >= 0:
        if n > len(images):
            raise ValueError(f"easy-VQA {split} has {len(images)} usable images; asked for {n}")
        images = random.Random(f"robust_vision:{split}:{seed}").sample(images, n)
    classes = list(assets.SHAPES if label == "shape" else assets.COLORS)
    return [im.path for im in images], [classes.index(getattr(im, label)) for im in images], classes


def folder_images(root: str | Path, n: int, seed: int) -> tuple[list[Path], list[int], list[str]]:
    """Images under `root` (recursively), labelled by their first sub-folder (ImageNet's layout), seeded sample."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image_dir {root} is not a directory")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"image_dir {root} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    if 0 <= n < len(paths):
        paths = sorted(random.Random(f"robust_vision:{seed}").sample(paths, n))
    classes = sorted({p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1})
    labels = [classes.index(p.relative_to(root).parts[0]) if len(p.relative_to(root).parts) > 1 else -1 for p in paths]
    return paths, labels, classes


def class_text_embeddings(model, tokenizer, classes: list[str]) -> torch.Tensor:
    """[C, D]: the LM's input embedding of each class word (mean over its tokens), for TeCoA's zero-shot logits."""
    if not classes:
        raise ValueError("loss=tecoa needs classes: image_dir must hold one sub-folder per class")
    embed = model.get_input_embeddings()
    rows = []
    for name in classes:
        ids = tokenizer(" " + name.replace("_", " "), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            rows.append(embed(torch.tensor(ids, device=embed.weight.device)).mean(0))
    return torch.stack(rows)


def build_objective(model, processor, cfg: RobustVisionConfig, classes: list[str] | None = None) -> TowerObjective:
    """The tower objective of a loaded VLM: its tower trained, a frozen copy, the processor's normalisation."""
    check_supported(model)
    parts = resolve_parts(model)
    image_processor = processor.image_processor
    kwargs = {}
    if cfg.loss == "tecoa":
        kwargs = dict(
            projector=get_submodule(model, parts.projector),
            class_text=class_text_embeddings(model, processor.tokenizer, classes or []),
            logit_scale=cfg.tecoa_logit_scale,
        )
    return TowerObjective(
        get_submodule(model, parts.vision_tower),
        model.config,
        image_processor.image_mean,
        image_processor.image_std,
        features=cfg.features,
        loss=cfg.loss,
        **kwargs,
    )


# ---------------------------------------------------------------- the trainer


@contextlib.contextmanager
def tower_threads(cfg: RobustVisionConfig):
    """`cfg.cpu_threads` CPU threads inside the block (on CPU, when set), the caller's afterwards."""
    before = torch.get_num_threads()
    if cfg.cpu_threads > 0 and not torch.cuda.is_available():
        torch.set_num_threads(cfg.cpu_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _trainer_class():
    from transformers import Trainer

    class RobustVisionTrainer(Trainer):
        """`Trainer` on a `TowerObjective`: PGD inside `compute_loss`; checkpoints are the whole VLM + processor."""

        def __init__(self, *args, vlm, vlm_processor, cfg: RobustVisionConfig, **kwargs):
            super().__init__(*args, **kwargs)
            self.vlm, self.vlm_processor, self.cfg = vlm, vlm_processor, cfg

        def training_step(self, *args, **kwargs):
            with tower_threads(self.cfg):  # the step only: the bridge's evaluations keep the run's threads
                return super().training_step(*args, **kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            objective = self.accelerator.unwrap_model(model)
            pixels, labels = inputs["pixel_values"], inputs.get("labels")
            target = objective.target(pixels, labels)
            adv = attack(objective, pixels, target, self.cfg)
            outputs = model(adv_pixel_values=adv, target=target)
            return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

        def _save(self, output_dir: str | None = None, state_dict=None) -> None:
            # A whole VLM, so that the bridge evaluates each checkpoint like any other model directory.
            if self.args.should_save:
                save_vlm(self.vlm, self.vlm_processor, Path(output_dir or self.args.output_dir))

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
            from eval_bridge.models.adapter import load_pretrained

            saved, _ = load_pretrained(resume_from_checkpoint)
            tower = get_submodule(saved, resolve_parts(saved).vision_tower)
            self.accelerator.unwrap_model(model or self.model).tower.load_state_dict(tower.state_dict())

    return RobustVisionTrainer


def save_vlm(model, processor, out: Path) -> None:
    """The VLM and its processor as a directory `from_pretrained` reloads."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def training_arguments(cfg: RobustVisionConfig, out: Path):
    """The tower stage's `TrainingArguments` (FARE's AdamW + cosine schedule with warmup)."""
    from transformers import TrainingArguments

    from mitigation.training.deepspeed import ddp_backend

    return TrainingArguments(
        output_dir=str(out),
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        max_steps=cfg.cap_steps(cfg.train_steps),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16,
        report_to=cfg.trackers() or "none",
        remove_unused_columns=False,  # the objective's forward takes attacked pixels, not the dataset's columns
        dataloader_num_workers=0,
        ddp_backend=ddp_backend(),
    )


# ---------------------------------------------------------------- the recipe


def training_images(cfg: RobustVisionConfig):
    """(paths, labels, classes) of the training images: `image_dir`, or easy-VQA's train split."""
    if cfg.image_dir:
        return folder_images(cfg.image_dir, cfg.n_train_images, cfg.seed)
    return easy_vqa_images("train", cfg.n_train_images, cfg.seed, cfg.tecoa_labels)


def heldout_pixels(cfg: RobustVisionConfig, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[N, 3, S, S] held-out images (easy-VQA test split, disjoint from any training image) and their labels
    (None when the training classes are image_dir's, which easy-VQA's do not match)."""
    paths, labels, _ = easy_vqa_images("test", cfg.n_heldout_images, cfg.seed, cfg.tecoa_labels)
    pixels = torch.stack([load_pixels(p, size) for p in paths])
    return pixels, None if cfg.image_dir else torch.tensor(labels)


def finetune(cfg: RobustVisionConfig, base: str, stage_out: Path, callbacks=()) -> tuple[Path, int, dict]:
    """Train the tower of `base` (FARE or TeCoA); returns (final VLM directory, steps, robustness before/after)."""
    from eval_bridge.distributed import barrier
    from mitigation.training.pipeline import DONE, _resume_arg, finished, load_for_training

    if done := finished(stage_out):
        return done.final_dir, done.steps, json.loads((stage_out / "robustness.json").read_text())
    vlm, processor = load_for_training(cfg, base)
    check_supported(vlm)
    paths, labels, classes = training_images(cfg)
    objective = build_objective(vlm, processor, cfg, classes)
    size = objective.tower.config.image_size
    held_x, held_y = heldout_pixels(cfg, size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tower_threads(cfg):
        before = measure(objective.to(device), held_x, held_y, cfg)
    trainer = _trainer_class()(
        model=objective,
        args=training_arguments(cfg, stage_out),
        train_dataset=ImageDataset(paths, labels, size),
        callbacks=list(callbacks),
        vlm=vlm,
        vlm_processor=processor,
        cfg=cfg,
    )
    trainer.train(resume_from_checkpoint=_resume_arg(cfg, stage_out))
    with tower_threads(cfg):
        after = measure(objective, held_x, held_y, cfg)
    robustness = {"features": cfg.features, "loss": cfg.loss, "before": before, "after": after}
    final = stage_out / "final"
    if trainer.args.process_index == 0:
        (stage_out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
        (stage_out / "robustness.json").write_text(json.dumps(robustness, indent=1) + "\n")
        save_vlm(vlm.cpu(), processor, final)
        (final / DONE).write_text(f"{trainer.state.global_step}\n")
    barrier()
    log.info("robust_vision %s: PGD distance %.4g -> %.4g", cfg.loss, before["pgd_distance"], after["pgd_distance"])
    return final, trainer.state.global_step, robustness


def swap(cfg: RobustVisionConfig, base: str, stage_out: Path) -> tuple[Path, dict]:
    """Swap `cfg.swap_from` into `base`'s tower and save the VLM; returns (final directory, robustness of the old
    and the new tower, each against its own clean features)."""
    from mitigation.architecture.robust_vision_swap import load_clip_vision, swap_tower
    from mitigation.training.pipeline import DONE, finished, load_for_training

    if done := finished(stage_out):
        return done.final_dir, json.loads((stage_out / "robustness.json").read_text())
    vlm, processor = load_for_training(cfg, base)
    check_supported(vlm)
    measured = {}
    measure_cfg = dataclasses.replace(cfg, loss="fare")
    old = build_objective(vlm, processor, measure_cfg)
    measured["before"] = measure(old, *heldout_pixels(cfg, old.tower.config.image_size), measure_cfg)
    tower = load_clip_vision(cfg.swap_from, dtype=next(vlm.parameters()).dtype)
    measured["swap"] = swap_tower(vlm, processor, tower, image_size=cfg.swap_image_size)
    new = build_objective(vlm, processor, measure_cfg)
    measured["after"] = measure(new, *heldout_pixels(cfg, new.tower.config.image_size), measure_cfg)
    measured["note"] = "each tower against its own clean features (the towers differ: distances are not comparable)"
    final = stage_out / "final"
    save_vlm(vlm, processor, final)
    (stage_out / "robustness.json").write_text(json.dumps(measured, indent=1) + "\n")
    (final / DONE).write_text("0\n")
    return final, measured


def run_robust_vision(cfg: RobustVisionConfig) -> str | None:
    """Run robust_vision: the base model and the robust-tower VLM through the bridge; returns the trade-off table
    (on the main process; None elsewhere). Phases are timed into `RUN/timings.json`."""
    from eval_bridge.bridge import Manifest, bridge_dir, drain, enqueue
    from eval_bridge.callback import TrustEvalCallback
    from eval_bridge.distributed import main_process_first
    from eval_bridge.tradeoff import write_report
    from mitigation.timing import PhaseClock
    from mitigation.training.method_recipe import heldout_eval_files, report_weights, shared_sources, track_suite
    from mitigation.training.pipeline import eval_mode, resolve_base_model, start_run

    rank, world = start_run(cfg)
    out = Path(cfg.output_dir)
    clock = PhaseClock()
    with main_process_first():
        base = resolve_base_model(cfg)
        clock.lap("base model")
        eval_files = heldout_eval_files(cfg, shared_sources(cfg))
        clock.lap("data")
    suite = track_suite(cfg, eval_files)
    stage = "swap" if cfg.mode == "swap" else cfg.loss
    if cfg.mode == "swap":
        if rank == 0:  # nothing trains: the swap and both evaluations run here, one after the other
            final, _ = swap(cfg, base, out / stage)
            enqueue(out, Manifest(0, base, None, str(bridge_dir(out) / "results" / "step-0"), suite, stage="base"))
            enqueue(out, Manifest(0, str(final), None, str(final / "trust_eval"), suite, stage=stage, final=True))
            drain(out)
    else:
        bridge = TrustEvalCallback(
            suite, base_model=base, mode=eval_mode(cfg, world), run_dir=str(out), wait_at_end=False, stage=stage
        )
        final, steps, _ = finetune(cfg, base, out / stage, callbacks=[bridge])
        if rank == 0:
            bridge.submit(final, steps, stage=stage, final=True)
            bridge.finish()
    clock.lap(f"{stage.upper()} + evaluations")
    if rank != 0:
        return None
    table = write_report(out, weights=report_weights(cfg))
    clock.lap("report")
    (out / "timings.json").write_text(json.dumps(clock.laps, indent=1) + "\n")
    log.info("run finished in %.1f min: %s", sum(clock.laps.values()) / 60, clock.summary())
    return table
