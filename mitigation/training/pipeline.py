"""The shared training pipeline: a recipe is a list of TRL stages (SFT, DPO, or a method's subclass of either)
run one after another on one model, with every checkpoint through the eval bridge and a trade-off table at the end.

    stages = [Stage("sft", "sft", sft_rows, learning_rate=1e-4), Stage("dpo", "dpo", dpo_rows, learning_rate=5e-6)]
    results, table = run_stages(cfg, stages, resolve_base_model(cfg), SuiteSpec(...))

Each stage loads its input model through the toolkit's one loader (`eval_bridge.models.adapter.load_pretrained`),
trains LoRA on the language model (the family resolver of `parts.py` finds it) or the full model, saves its final
model as a plain directory with the processor (LoRA merged, ZeRO-3 weights gathered), and marks it finished, so a
rerun skips it and the next stage loads it like any other model. `resume_from_checkpoint="last"` continues the
stage that was interrupted. One `TrustEvalCallback` serves the whole run: the base model is step 0, every saved
checkpoint and every stage's final model gets its own row, and steps continue across stages.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval_bridge.bridge import SuiteSpec
from eval_bridge.distributed import barrier, init_distributed
from mitigation.training.config import TrainingConfig

log = logging.getLogger(__name__)

DONE = "STAGE_DONE"
KINDS = ("sft", "dpo")


@dataclass
class Stage:
    """One TRL training stage of a recipe.

    Attributes:
        name: the stage's directory under the run (`<output_dir>/<name>`) and its label in the trade-off table.
        kind: "sft" (TRL `SFTTrainer` / `SFTConfig`) or "dpo" (`DPOTrainer` / `DPOConfig`).
        rows: the training rows in TRL's conversational format (`messages` for SFT; `prompt`, `chosen`,
            `rejected` for DPO; `images` with PIL images or none).
        trainer_cls: a method's subclass of the kind's TRL trainer (default: TRL's own).
        args: further fields of the kind's TRL config (`beta`, `loss_type`, `assistant_only_loss`, ...).
    """

    name: str
    kind: str
    rows: list[dict]
    learning_rate: float
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 1
    save_steps: int = 0
    trainer_cls: type | None = None
    args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, name: str, kind: str, rows: list[dict], cfg: Any, prefix: str = "", **fields: Any) -> Stage:
        """A stage whose hyperparameters are the config's `<prefix>learning_rate`, `<prefix>epochs`,
        `<prefix>max_steps`, `<prefix>batch_size`, `<prefix>grad_accum` and `<prefix>save_steps` (e.g. prefix
        "sft_"); `fields` set any Stage field directly and win (e.g. `args`, `trainer_cls`, `max_steps=-1`)."""
        keys = ("learning_rate", "epochs", "max_steps", "batch_size", "grad_accum", "save_steps")
        from_cfg = {k: getattr(cfg, prefix + k) for k in keys if k not in fields and hasattr(cfg, prefix + k)}
        return cls(name, kind, rows, **from_cfg, **fields)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"stage {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.rows:
            raise ValueError(f"stage {self.name!r} has no training rows: check the data that builds it")


@dataclass(frozen=True)
class StageResult:
    """A finished stage: its final model directory and its number of optimizer steps."""

    name: str
    final_dir: Path
    steps: int


def dpo_loss_args(beta: float, sft_weight: float) -> dict[str, Any]:
    """TRL `DPOConfig` fields of DPO at `beta`, plus the chosen response's NLL at weight `sft_weight` when it is
    above 0 (TRL loss_type ["sigmoid", "sft"], as in RPO, arXiv 2404.19733): what RESA's and safety_dpo's stages use."""
    return dict(
        beta=beta,
        loss_type=["sigmoid", "sft"] if sft_weight else ["sigmoid"],
        loss_weights=[1.0, sft_weight] if sft_weight else None,
    )


# --- loading and LoRA --------------------------------------------------------------------------------------------


def load_for_training(cfg: TrainingConfig, model_dir: str):
    """`(model, processor)` for training, through the toolkit's one loader."""
    import torch

    from eval_bridge.models.adapter import load_pretrained

    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    return load_pretrained(model_dir, trust_remote_code=cfg.trust_remote_code, dtype=dtype)


def lora_config(cfg: TrainingConfig, model):
    """LoRA on the language model's linear layers only (the vision tower uses the same projection names)."""
    from peft import LoraConfig

    from mitigation.training.parts import lora_target_regex, parse_parts_option, resolve_parts

    overrides = parse_parts_option(cfg.model_parts) if cfg.model_parts else None
    parts = resolve_parts(model, overrides)
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=lora_target_regex(model, cfg.lora_targets(), parts),
        task_type="CAUSAL_LM",
    )


# --- TRL arguments -----------------------------------------------------------------------------------------------


def stage_max_steps(cfg: TrainingConfig, stage: Stage, world: int = 1) -> int:
    """The stage's TRL `max_steps`: its own (-1: its epochs decide) under the run-wide cap `cfg.max_steps`.

    A positive max_steps overrides the epochs in transformers' Trainer, so where the epochs decide and give fewer
    optimizer steps than the cap, the cap is left out: a cap never makes a stage train longer than it would."""
    steps = cfg.cap_steps(stage.max_steps)
    if steps > 0 and (stage.max_steps is None or stage.max_steps < 0):
        rows_per_process = math.ceil(len(stage.rows) / max(world, 1))
        per_epoch = max(math.ceil(rows_per_process / (stage.batch_size * stage.grad_accum)), 1)  # as Trainer counts
        if math.ceil(stage.epochs * per_epoch) <= steps:
            return -1
    return steps


def training_args(cfg: TrainingConfig, stage: Stage, out: Path):
    """The stage's `SFTConfig` / `DPOConfig`: the shared fields from `cfg`, the stage's own from `stage`."""
    from trl import DPOConfig, SFTConfig

    from mitigation.training.deepspeed import ddp_backend

    common = dict(
        output_dir=str(out),
        learning_rate=stage.learning_rate,
        num_train_epochs=stage.epochs,
        max_steps=stage_max_steps(cfg, stage, int(os.environ.get("WORLD_SIZE", "1"))),
        per_device_train_batch_size=stage.batch_size,
        gradient_accumulation_steps=stage.grad_accum,
        save_strategy="steps" if stage.save_steps else "no",
        save_steps=stage.save_steps or 500,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        report_to=cfg.trackers() or "none",
        max_length=None,  # truncating through image tokens breaks VLMs ("image features and tokens do not match")
        dataloader_num_workers=0,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,  # a float below 1 is a ratio of the total steps
        ddp_backend=ddp_backend(),  # several CPU processes under DeepSpeed: see mitigation/training/deepspeed.py
    )
    config_cls = SFTConfig if stage.kind == "sft" else DPOConfig
    unknown = sorted(set(stage.args) - set(config_cls.__dataclass_fields__))
    if unknown:
        raise ValueError(f"stage {stage.name!r}: {config_cls.__name__} has no field(s) {', '.join(unknown)}")
    return config_cls(**{**common, **stage.args})


def check_max_length(max_length: int | None, processor, stage: Stage) -> None:
    """Refuse a `max_length` that would cut into a row's image tokens: TRL truncates there and the model then
    fails deep inside with "Image features and image tokens do not match". Checked before any step runs."""
    count = getattr(processor, "_get_num_multimodal_tokens", None)  # image tokens from sizes, no pixels processed
    if max_length is None or count is None:
        return
    from eval_bridge.samples import load_image

    for i, row in enumerate(stage.rows):
        images = [img if hasattr(img, "height") else load_image(img) for img in row.get("images") or ()]
        if not images:
            continue
        tokens = sum(count(image_sizes=[(img.height, img.width) for img in images]).num_image_tokens)
        if tokens >= max_length:
            raise ValueError(
                f"stage {stage.name!r}: max_length={max_length} is not longer than the {tokens} image tokens of row "
                f"{i}; truncating through image tokens breaks VLMs. Set max_length to None (the pipeline's default: "
                f"no truncation) or well above {tokens} plus the text"
            )


def _trainer_cls(cfg: TrainingConfig, stage: Stage):
    if stage.trainer_cls is not None:
        return stage.trainer_cls
    if stage.kind == "sft":
        from trl import SFTTrainer

        return SFTTrainer
    if cfg.precompute_reference():
        from mitigation.training.reference import PrecomputedRefDPOTrainer

        return PrecomputedRefDPOTrainer
    from trl import DPOTrainer

    return DPOTrainer


def _precomputes(trainer_cls) -> bool:
    """Whether the trainer computes the reference log-probs before training (and takes `ref_cache_dir`)."""
    from mitigation.training.reference import PrecomputedRefDPOTrainer

    return issubclass(trainer_cls, PrecomputedRefDPOTrainer)


# --- one stage ---------------------------------------------------------------------------------------------------


def finished(out: Path) -> StageResult | None:
    """The result of a stage already finished in `out` (its final model is marked done), else None."""
    marker = out / "final" / DONE
    if not marker.is_file():
        return None
    log.info("stage already finished (%s): skipped", out / "final")
    return StageResult(out.name, out / "final", int(marker.read_text().strip() or 0))


def _resume_arg(cfg: TrainingConfig, out: Path):
    if cfg.resume_from_checkpoint == "last":
        return last_complete_checkpoint(out)
    return cfg.resume_from_checkpoint


def last_complete_checkpoint(out: Path) -> str | None:
    """The newest `checkpoint-<step>` of `out` saved whole, None if there is none.

    The Trainer writes `trainer_state.json` last: a checkpoint without it was being saved when the run was killed,
    and resuming from it would fail (or silently restart from step 0), so it is skipped, with a warning."""
    named = {p: p.name.removeprefix("checkpoint-") for p in out.glob("checkpoint-*")}
    steps = {int(step): p for p, step in named.items() if step.isdigit()}
    for step in sorted(steps, reverse=True):
        if (steps[step] / "trainer_state.json").is_file():
            return str(steps[step])
        log.warning("not resuming from %s: it was saved only in part (no trainer_state.json)", steps[step])
    return None


def save_final(trainer, processor, final_dir: Path, *, lora: bool) -> None:
    """Save the trained model as a plain directory with its processor (LoRA merged), on every rank's behalf.

    Every rank takes part (under DeepSpeed ZeRO-3 the full weights are gathered collectively); rank 0 writes.
    """
    from mitigation.training.deepspeed import full_parameters

    with full_parameters(trainer.model) as model:
        if lora:
            model = model.merge_and_unload()
        if trainer.args.process_index == 0:
            final_dir.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(final_dir)
            processor.save_pretrained(final_dir)
            (final_dir / DONE).write_text(f"{trainer.state.global_step}\n")
    barrier()  # the other ranks load this directory next


def train_stage(cfg: TrainingConfig, stage: Stage, model_dir: str, out: Path, callbacks=()) -> StageResult:
    """Train one stage from `model_dir` (resuming if asked), save its final model; a finished stage is skipped."""
    from datasets import Dataset

    from mitigation.training.deepspeed import keep_vision_tower_in_every_step
    from mitigation.training.trl_hooks import cpu_lm_head_speedups

    if done := finished(out):
        return done
    args = training_args(cfg, stage, out)
    model, processor = load_for_training(cfg, model_dir)
    check_max_length(args.max_length, processor, stage)
    kwargs = dict(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(stage.rows),
        processing_class=processor,
        peft_config=lora_config(cfg, model) if cfg.use_lora else None,
        callbacks=list(callbacks),
    )
    trainer_cls = _trainer_cls(cfg, stage)
    if _precomputes(trainer_cls):
        # Next to the run's other caches: a rerun of the same stage on the same data skips the reference pass.
        kwargs["ref_cache_dir"] = str(Path(cfg.cache_dir) / "reference-logps")
    trainer = trainer_cls(**kwargs)
    keep_vision_tower_in_every_step(trainer, processor)  # DeepSpeed: the same modules on every rank, every step
    with cpu_lm_head_speedups():
        trainer.train(resume_from_checkpoint=_resume_arg(cfg, out))
    if trainer.args.process_index == 0:
        (out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    save_final(trainer, processor, out / "final", lora=cfg.use_lora)
    return StageResult(stage.name, out / "final", trainer.state.global_step)


# --- the run -----------------------------------------------------------------------------------------------------


def eval_mode(cfg: TrainingConfig, world: int) -> str:
    """The bridge mode: `auto` is sync for one process and worker under DDP / DeepSpeed (sync is refused there)."""
    from mitigation.training.deepspeed import deepspeed_launched

    if cfg.eval_mode != "auto":
        return cfg.eval_mode
    return "worker" if world > 1 or deepspeed_launched() else "sync"


def use_all_cores(world: int) -> None:
    """On CPU, give each process its share of the cores: launchers set OMP_NUM_THREADS=1, which halves a 2-core
    machine for a single-process run."""
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))


def resolve_base_model(cfg: TrainingConfig) -> str:
    """The run's base model: `cfg.model`, or the embedded default (built and cached on first use)."""
    if cfg.model is not None:
        return cfg.model
    from mitigation.base_model import ensure_base_model

    return str(ensure_base_model())


def start_run(cfg: TrainingConfig) -> tuple[int, int]:
    """Set up a run: trackers offline by default, the process group, the CPU threads. Returns (rank, world)."""
    if "wandb" in cfg.trackers():
        os.environ.setdefault("WANDB_MODE", "offline")  # no account needed; `wandb sync` later if wanted
        os.environ.setdefault("WANDB_DIR", cfg.output_dir)
    from eval_bridge.files import writable_dir

    writable_dir(cfg.output_dir, "output_dir")  # before hours of training, not at the first save
    rank, world = init_distributed()
    use_all_cores(world)
    return rank, world


def run_stages(
    cfg: TrainingConfig,
    stages: Sequence[Stage],
    base: str,
    suite: SuiteSpec,
    *,
    report_weights: dict | None = None,
    on_stage_end: Callable[[StageResult], None] | None = None,
) -> tuple[list[StageResult], str | None]:
    """Run the stages in order from `base`, each checkpoint and each stage's final model through one eval bridge.

    `on_stage_end` is called after each stage (and its final model's queueing: in sync mode, its evaluation).
    Returns the stage results and the trade-off table (on the main process; None elsewhere).
    """
    from eval_bridge.callback import TrustEvalCallback
    from eval_bridge.tradeoff import write_report

    rank, world = init_distributed()
    out = Path(cfg.output_dir)
    bridge = TrustEvalCallback(suite, base_model=base, mode=eval_mode(cfg, world), run_dir=str(out), wait_at_end=False)
    results: list[StageResult] = []
    model_dir, offset = base, 0
    for i, stage in enumerate(stages):
        bridge.configure_stage(stage.name, base_model=model_dir, step_offset=offset, evaluate_start=i == 0)
        result = train_stage(cfg, stage, model_dir, out / stage.name, callbacks=[bridge])
        offset += result.steps
        if rank == 0:
            bridge.submit(result.final_dir, offset, stage=stage.name, final=True)
        results.append(result)
        model_dir = str(result.final_dir)
        if on_stage_end is not None:
            on_stage_end(result)
    if rank != 0:
        return results, None
    bridge.finish()
    return results, write_report(out, weights=report_weights)
