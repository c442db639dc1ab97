"""RESA's two training stages, as stages of the shared pipeline (`mitigation.training.pipeline`): SFT on
reasoning traces (loss on the whole assistant turn: reasoning and answer), then DPO on preference pairs against
harmful compliance and over-refusal, from the SFT model (which is also the DPO reference)."""

from __future__ import annotations

from mitigation.training.pipeline import Stage, dpo_loss_args
from resa.config import ResaConfig


def sft_stage(cfg: ResaConfig, rows: list[dict]) -> Stage:
    """Stage 1: SFT on reasoning traces."""
    return Stage(
        "sft",
        "sft",
        rows,
        learning_rate=cfg.sft_learning_rate,
        epochs=cfg.sft_epochs,
        max_steps=cfg.sft_max_steps,
        batch_size=cfg.sft_batch_size,
        grad_accum=cfg.sft_grad_accum,
        save_steps=cfg.sft_save_steps,
        args={"assistant_only_loss": True},
    )


def dpo_stage(cfg: ResaConfig, rows: list[dict]) -> Stage:
    """Stage 2: DPO (plus the chosen trace's NLL, RPO-style, when `dpo_sft_weight` > 0)."""
    return Stage(
        "dpo",
        "dpo",
        rows,
        learning_rate=cfg.dpo_learning_rate,
        epochs=cfg.dpo_epochs,
        max_steps=cfg.dpo_max_steps,
        batch_size=cfg.dpo_batch_size,
        grad_accum=cfg.dpo_grad_accum,
        save_steps=cfg.dpo_save_steps,
        # The chosen trace's NLL next to the preference loss keeps the SFT answers from drifting (RPO).
        args=dpo_loss_args(cfg.dpo_beta, cfg.dpo_sft_weight),
    )
