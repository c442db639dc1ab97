"""`HallucinationDpoConfig`: the fields of the `hallucination_dpo` method (mDPO, with a DDPO option; METHODS.md 3.6).

Defaults are the offline CPU recipe on the embedded default model (`configs/mitigation/hallucination_dpo/
default_cpu.yaml` spells them out); the upstream values are cited in each field's help and used by
`configs/mitigation/hallucination_dpo/llava15_7b.yaml`. TRL's `TrlParser` reads it from YAML (`--config`) + flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mitigation.training.config import TrainingConfig


@dataclass
class HallucinationDpoConfig(TrainingConfig):
    """mDPO: DPO + an image-conditional preference term (real vs corrupted image) + an anchor on the chosen reward
    (Wang et al., EMNLP 2024, arXiv 2406.11839); optional RLHF-V token weighting (DDPO, arXiv 2312.00849)."""

    # --- run (the method's defaults for shared fields) --------------------------------------------------------
    output_dir: str = field(
        default="runs/hallucination_dpo", metadata={"help": "Where checkpoints, data and reports go."}
    )
    cache_dir: str = field(
        default=".cache/hallucination_dpo", metadata={"help": "Generated data and the trust-suite cache."}
    )
    precompute_ref_log_probs: str = field(
        default="auto",
        metadata={
            "help": "Must stay auto or false: the image-conditional term scores the chosen response on a corrupted "
            "image that is re-sampled every step, so no reference log-prob can be computed ahead. Full fine-tuning "
            "therefore keeps a reference model in memory (LoRA uses the adapter-disabled base)."
        },
    )

    # --- data ---------------------------------------------------------------------------------------------------
    pairs_file: str | None = field(
        default=None,
        metadata={
            "help": "Real preference data instead of the offline pairs: mDPO's JSON ({img_path, prompt, chosen, "
            "rejected}, HF fwnlp/mDPO-preference-data) or RLAIF-V's Parquet / JSON ({image, question, chosen, "
            "rejected, ...}, HF openbmb/RLAIF-V-Dataset)."
        },
    )
    pairs_image_root: str | None = field(
        default=None, metadata={"help": "Folder the image paths of pairs_file are relative to (default: its folder)."}
    )
    max_pairs: int = field(default=-1, metadata={"help": "Use at most this many pairs of pairs_file (-1: all)."})
    mix_offline: bool = field(
        default=False, metadata={"help": "With pairs_file: also train on the offline pairs (else the file only)."}
    )
    offline_pairs: int = field(
        default=64,
        metadata={
            "help": "Offline pairs from the shared sources' easy-VQA training records (at most 120): chosen = the "
            "right answer + a grounded description, rejected = one shape or colour swapped. 64 = 16 steps at batch 4."
        },
    )

    # --- mDPO -------------------------------------------------------------------------------------------------
    beta: float = field(default=0.1, metadata={"help": "DPO beta (mDPO bunny/config.yaml: 0.1)."})
    image_term: bool = field(
        default=True,
        metadata={"help": "Add L_img: the chosen response under the real image over the same under a corrupted one."},
    )
    anchor_term: bool = field(
        default=True, metadata={"help": "Add L_anc = -log sigmoid(beta * chosen log-ratio): keeps the reward above 0."}
    )
    crop_scale_min: float = field(
        default=0.01, metadata={"help": "Corruption: smallest cropped share of the image area (mDPO: 0.01)."}
    )
    crop_scale_max: float = field(
        default=0.2, metadata={"help": "Corruption: largest cropped share of the image area (mDPO: 0.2)."}
    )
    share_corruption: bool = field(
        default=True,
        metadata={
            "help": "Policy and reference score the chosen response on the same corrupted image, drawn once per "
            "step (project design); false: each draws its own, as mDPO's code does (noisier)."
        },
    )
    ddpo_weight: float = field(
        default=1.0,
        metadata={
            "help": "DDPO gamma: weight of the tokens where chosen and rejected differ (token diff, runs shorter "
            "than 3 tokens count as changed) inside the DPO term; 1 = plain mDPO. RLAIF-V dpo_token_weight: 3.0."
        },
    )

    # --- optimisation -------------------------------------------------------------------------------------------
    learning_rate: float = field(
        default=1e-4, metadata={"help": "mDPO: 1e-5 with LoRA over 3 epochs of 10k pairs; the 16-step CPU run: 1e-4."}
    )
    epochs: float = field(default=1.0, metadata={"help": "Epochs over the pairs (mDPO: 3)."})
    batch_size: int = field(default=4, metadata={"help": "Per-device batch size in pairs (mDPO: 4)."})
    grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps (mDPO: 8)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (mDPO: 0.05)."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2 (mDPO: 0.98)."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of the steps spent warming up (mDPO: 0.1)."})
    save_steps: int = field(default=0, metadata={"help": "Checkpoint every N steps (0: at the end only)."})
    lora_dropout: float = field(
        default=0.0, metadata={"help": "LoRA dropout (mDPO: 0.05; 0 on CPU: dropout costs ~10 percent of a step)."}
    )

    # --- the eval bridge (the method's defaults) ------------------------------------------------------------------
    eval_tasks: str = field(
        default="T1,T2,T6",
        metadata={
            "help": "Trust-suite tasks on every checkpoint besides the tracks: the mini suite's yes/no truthfulness "
            "tasks (T1 basic perception, T2 advanced inference, T6 visual confusion; 62 samples); 'truthfulness' "
            "for T1-T7, 'none' for the tracks only."
        },
    )
    eval_max_new_tokens: int = field(
        default=32, metadata={"help": "Generation length: answer + one grounding sentence fit in 32 tokens."}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "Generation batch size of the evaluations."})

    def __post_init__(self):
        super().__post_init__()
        if str(self.precompute_ref_log_probs).strip().lower() in ("true", "1", "yes"):
            raise ValueError(
                "hallucination_dpo cannot precompute reference log-probs (precompute_ref_log_probs=true): its "
                "image-conditional term needs the reference on a corrupted image re-drawn every step. Set "
                "precompute_ref_log_probs=auto (full fine-tuning then keeps a reference model in memory) or use LoRA."
            )
        if not 0.0 < self.crop_scale_min <= self.crop_scale_max <= 1.0:
            raise ValueError(
                f"crop scale ({self.crop_scale_min}, {self.crop_scale_max}) must satisfy 0 < min <= max <= 1 "
                "(shares of the image area; mDPO: 0.01, 0.2)"
            )
        if self.ddpo_weight < 1.0:
            raise ValueError(f"ddpo_weight must be >= 1 (1: no token weighting), got {self.ddpo_weight}")

    def precompute_reference(self) -> bool:
        """Never: the corrupted-image reference term is re-sampled every step (see `precompute_ref_log_probs`)."""
        return False
