"""RESA's two training stages on TRL: SFT on reasoning traces, then DPO on preference pairs.

Both take a model directory and rows in TRL's conversational VLM format, train (LoRA or full), save the final
checkpoint with its processor, and hand every checkpoint to the eval bridge through the callbacks they are
given. A LoRA stage is merged into a plain model directory at the end, so the next stage (and any user) loads
it like any other model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from eval_bridge.distributed import barrier
from mitigation.training.deepspeed import ddp_backend, full_parameters, keep_vision_tower_in_every_step
from resa.config import ResaConfig

log = logging.getLogger(__name__)

DONE = "STAGE_DONE"


def _lora_config(cfg: ResaConfig):
    from peft import LoraConfig

    names = "|".join(cfg.lora_targets())
    # Only the language model: the vision tower's attention uses the same projection names.
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=rf".*language_model.*\.({names})$",
        task_type="CAUSAL_LM",
    )


def _load(model_dir: str, cfg: ResaConfig):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    common = dict(trust_remote_code=cfg.trust_remote_code)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype, **common)
    processor = AutoProcessor.from_pretrained(model_dir, **common)
    return model, processor


def _common_args(cfg: ResaConfig, out: Path, *, lr, epochs, max_steps, batch, accum, save_steps) -> dict:
    return dict(
        output_dir=str(out),
        learning_rate=lr,
        num_train_epochs=epochs,
        max_steps=max_steps,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accum,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        report_to=cfg.trackers() or "none",
        max_length=None,  # truncating through image tokens breaks VLMs ("image features and tokens do not match")
        dataloader_num_workers=0,
        ddp_backend=ddp_backend(),  # "gloo" under DeepSpeed on CPU: else accelerate counts one process
        lr_scheduler_type="cosine",
        warmup_steps=0.05,  # a float below 1 is a ratio of the total steps
    )


def _finish(trainer, processor, final_dir: Path, lora: bool) -> tuple[Path, int]:
    """Save the stage's final model as a plain directory (LoRA merged) with its processor, atomically marked.

    Returns (directory, the stage's number of optimizer steps)."""
    if trainer.args.process_index == 0:
        out = Path(trainer.args.output_dir)
        (out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    with full_parameters(trainer.model) as model:  # ZeRO-3: the whole weights, not this rank's shard
        if lora:
            model = model.merge_and_unload()
        if trainer.args.process_index == 0:
            final_dir.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(final_dir)
            processor.save_pretrained(final_dir)
            (final_dir / DONE).write_text(f"{trainer.state.global_step}\n")
    barrier()  # the other ranks load this directory next
    return final_dir, trainer.state.global_step


def _finished(final: Path) -> tuple[Path, int] | None:
    marker = final / DONE
    if not marker.is_file():
        return None
    log.info("stage already finished (%s): skipped", final)
    return final, int(marker.read_text().strip() or 0)


def _resume_arg(cfg: ResaConfig, out: Path):
    if cfg.resume_from_checkpoint == "last":
        return bool(list(out.glob("checkpoint-*"))) or None
    return cfg.resume_from_checkpoint


def score_labelled_positions_only() -> bool:
    """Make TRL's fused LM head score only the labelled positions on every device, not only on Triton devices.

    TRL (1.16) computes per-token log-probs in vocabulary chunks; off CUDA/XPU it scores *every* position (to keep
    tile shapes fixed for compilers such as Neuron's) and masks afterwards. On CPU that wastes the 49k-word
    projection, its backward and the entropy/accuracy metrics on prompt and padding tokens (~10% of an SFT step
    of the default recipe). The losses are the same either way (tests/resa/test_stages.py). Returns whether the
    hook was found (a TRL without it is left alone).
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None or getattr(original, "_resa_compact", False):
        return original is not None

    def compact(device) -> bool:
        return device.type == "cpu" or original(device)

    compact._resa_compact = True
    trl_utils._use_triton = compact
    return True


def plain_log_probs(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs):
    """TRL's fused-LM-head outputs `(log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1)` from one
    projection and torch's fused log-softmax, with plain autograd (`chunk_size` is ignored).

    Same arguments and results as TRL's `ChunkedLogProbFunction.apply`, whose tiles save GPU memory; its torch
    fallback (what runs on CPU) makes ~10 elementwise passes over each vocabulary tile in the forward and again
    in the backward, which is most of the LM head's time there.
    """
    import torch

    z = torch.nn.functional.linear(hidden, weight, bias).float()
    if logit_scale != 1.0:
        z = z * logit_scale
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    if temperature != 1.0:
        z = z / temperature
    log_p = torch.log_softmax(z, dim=-1)
    log_probs = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1) if "entropy" in outputs else None
    with torch.no_grad():
        log_sum_sq_probs = torch.logsumexp(2 * log_p, dim=-1) if "log_sum_sq_probs" in outputs else None
        mean_logits = z.mean(-1) if "mean_logits" in outputs else None
        is_top1 = z.argmax(-1) == targets if "is_top1" in outputs else None  # the first maximum, as TRL counts
    return log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1


def plain_lm_head_on_cpu() -> bool:
    """On CPU, route TRL's fused LM head through `plain_log_probs`; other devices keep TRL's chunked kernel.

    Measured on the default recipe (batch 8, 2 cores): an SFT step 11.3 -> 10.2 s, with the same losses and
    gradients (tests/resa/test_stages.py). Returns whether TRL's hook point was found (a TRL without it is left
    alone, only slower). Like `score_labelled_positions_only`, it replaces a private name of TRL 1.16.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if original is None or getattr(original, "_resa_plain", False):
        return original is not None

    class Dispatch:
        _resa_plain = True

        @staticmethod
        def apply(hidden, *args):
            return plain_log_probs(hidden, *args) if hidden.device.type == "cpu" else original.apply(hidden, *args)

    trl_utils._ChunkedLogProbFunction = Dispatch
    return True


def _train(cfg: ResaConfig, model_dir: str, rows: list[dict], out: Path, callbacks, trainer_cls, args):
    """Train one stage from `model_dir` (resuming if asked) and save its final model; skip a finished stage."""
    from datasets import Dataset

    score_labelled_positions_only()
    plain_lm_head_on_cpu()
    model, processor = _load(model_dir, cfg)
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        peft_config=_lora_config(cfg) if cfg.use_lora else None,
        callbacks=list(callbacks),
    )
    keep_vision_tower_in_every_step(trainer, processor)  # DeepSpeed: text-only batches would desync the ranks
    trainer.train(resume_from_checkpoint=_resume_arg(cfg, out))
    return _finish(trainer, processor, out / "final", cfg.use_lora)


def run_sft(cfg: ResaConfig, model_dir: str, rows: list[dict], out: Path, callbacks=()) -> tuple[Path, int]:
    """Stage 1: SFT on reasoning traces (loss on the whole assistant turn). Returns (final model dir, steps)."""
    from trl import SFTConfig, SFTTrainer

    if done := _finished(out / "final"):
        return done
    args = SFTConfig(
        **_common_args(
            cfg,
            out,
            lr=cfg.sft_learning_rate,
            epochs=cfg.sft_epochs,
            max_steps=cfg.sft_max_steps,
            batch=cfg.sft_batch_size,
            accum=cfg.sft_grad_accum,
            save_steps=cfg.sft_save_steps,
        ),
        assistant_only_loss=True,
    )
    return _train(cfg, model_dir, rows, out, callbacks, SFTTrainer, args)


def run_dpo(cfg: ResaConfig, model_dir: str, rows: list[dict], out: Path, callbacks=()) -> tuple[Path, int]:
    """Stage 2: DPO from the SFT model (the reference is the SFT model). Returns (final model dir, steps)."""
    from trl import DPOConfig, DPOTrainer

    if done := _finished(out / "final"):
        return done
    args = DPOConfig(
        **_common_args(
            cfg,
            out,
            lr=cfg.dpo_learning_rate,
            epochs=cfg.dpo_epochs,
            max_steps=cfg.dpo_max_steps,
            batch=cfg.dpo_batch_size,
            accum=cfg.dpo_grad_accum,
            save_steps=cfg.dpo_save_steps,
        ),
        beta=cfg.dpo_beta,
        # RPO-style: the chosen trace's NLL next to the preference loss keeps the SFT answers from drifting.
        loss_type=["sigmoid", "sft"] if cfg.dpo_sft_weight else ["sigmoid"],
        loss_weights=[1.0, cfg.dpo_sft_weight] if cfg.dpo_sft_weight else None,
    )
    return _train(cfg, model_dir, rows, out, callbacks, DPOTrainer, args)
