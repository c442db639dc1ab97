"""RESA's two training stages, as stages of the shared pipeline (`mitigation.training.pipeline`): SFT on
reasoning traces (loss on the whole assistant turn: reasoning and answer), then DPO on preference pairs against
harmful compliance and over-refusal, from the SFT model (which is also the DPO reference)."""

from __future__ import annotations

from mitigation.training.pipeline import Stage, dpo_loss_args
from resa.config import ResaConfig


def sft_stage(cfg: ResaConfig, rows: list[dict]) -> Stage:
    """Stage 1: SFT on reasoning traces."""
    return Stage.from_config("sft", "sft", rows, cfg, "sft_", args={"assistant_only_loss": True})


def dpo_stage(cfg: ResaConfig, rows: list[dict]) -> Stage:
    """Stage 2: DPO (plus the chosen trace's NLL, RPO-style, when `dpo_sft_weight` > 0)."""
    # The chosen trace's NLL next to the preference loss keeps the SFT answers from drifting (RPO).
    return Stage.from_config("dpo", "dpo", rows, cfg, "dpo_", args=dpo_loss_args(cfg.dpo_beta, cfg.dpo_sft_weight))
