"""`VlguardConfig`: the VLGuard recipe's fields (TRL-style dataclass, read from YAML + flags by `TrlParser`).

Defaults are the offline CPU recipe on the embedded default model; `configs/mitigation/vlguard/*.yaml` spell them
out and hold the GPU recipe. Upstream values (METHODS.md 3.1) are cited next to each CPU value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mitigation.training.config import TrainingConfig

MODES = ("posthoc", "mixed")


@dataclass
class VlguardConfig(TrainingConfig):
    """VLGuard (Zong et al., ICML 2024, arXiv 2402.02207): SFT on safety instruction data mixed into instruction data.

    The shared fields (model, LoRA, precision, trackers, resume, the eval bridge) are `TrainingConfig`'s."""

    # --- run (VLGuard's defaults for shared fields) ---------------------------------------------------------
    output_dir: str = field(default="runs/vlguard", metadata={"help": "Where checkpoints, data and reports go."})
    cache_dir: str = field(
        default=".cache/vlguard", metadata={"help": "Generated data (the offline stand-in) and the trust-suite cache."}
    )

    # --- data ----------------------------------------------------------------------------------------------
    mode: str = field(
        default="posthoc",
        metadata={
            "help": "posthoc: the safety data + `helpful_samples` instruction samples drawn without replacement, on "
            "top of the trained model (upstream default, VLGuard issue #1); mixed: the safety data mixed into the "
            "whole instruction set (upstream: appended to LLaVA-665k for a full stage-2 run)."
        },
    )
    helpful_samples: int = field(
        default=100,
        metadata={
            "help": "posthoc: instruction samples drawn without replacement from the instruction data (upstream "
            "5000 of LLaVA-665k next to VLGuard's 2,000 images; 100 of the 160 offline ones next to the stand-in's "
            "108 images)."
        },
    )
    mix_ratio: float | None = field(
        default=None,
        metadata={
            "help": "mixed: safety conversations per instruction sample (drawn without replacement); null: every "
            "safety conversation once (upstream: all of VLGuard appended to the instruction mix)."
        },
    )
    vlguard_file: str | None = field(
        default=None,
        metadata={
            "help": "VLGuard's public train.json (HF ys-zong/VLGuard); null: the offline stand-in in the same schema, "
            "written to <cache_dir>/vlguard_standin/train.json and read through the same loader."
        },
    )
    vlguard_image_root: str | None = field(
        default=None,
        metadata={
            "help": "Folder the `image` paths of vlguard_file are relative to (unzipped train.zip); null: its folder."
        },
    )
    instruction_file: str | None = field(
        default=None,
        metadata={
            "help": "Instruction data in LLaVA's format (llava_v1_5_mix665k.json: {id, image, conversations}), the "
            "helpful mix upstream draws from; null: the shared offline benign training records (easy-VQA + text)."
        },
    )
    instruction_image_root: str | None = field(
        default=None,
        metadata={"help": "Folder the `image` paths of instruction_file are relative to; null: its folder."},
    )
    keep_standin: bool = field(
        default=False, metadata={"help": "With vlguard_file: also train on the offline stand-in (mixed with it)."}
    )

    # --- SFT -----------------------------------------------------------------------------------------------
    sft_learning_rate: float = field(
        default=3e-4,
        metadata={
            "help": "Peak learning rate (upstream full FT 2e-5, LoRA r128 2e-4 over ~8k samples; the 40-step CPU run "
            "uses 3e-4)."
        },
    )
    sft_epochs: float = field(default=1.0, metadata={"help": "Epochs over the mixed data (upstream: 1)."})
    sft_max_steps: int = field(
        default=40,
        metadata={"help": "Cap on SFT steps (-1: epochs decide); 40 x batch 6 is ~1 epoch of the default data."},
    )
    sft_batch_size: int = field(default=6, metadata={"help": "Per-device batch size (upstream 16 per GPU, 128 total)."})
    sft_grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    sft_save_steps: int = field(
        default=20, metadata={"help": "Checkpoint (and evaluate) every N steps; 0: at the end only."}
    )

    # --- the eval bridge (VLGuard's defaults) ----------------------------------------------------------------
    eval_max_new_tokens: int = field(
        default=48, metadata={"help": "Generation length: the stand-in's refusals and answers take 10-40 tokens."}
    )
    eval_batch_size: int = field(
        default=96,
        metadata={
            "help": "Generation batch size: a checkpoint's 94 track prompts in one batch (a decoding step's fixed "
            "costs are paid once)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mix_ratio is not None and self.mix_ratio <= 0:
            raise ValueError(f"mix_ratio must be positive (or null for all safety data), got {self.mix_ratio}")
        if self.keep_standin and not self.vlguard_file:
            raise ValueError("keep_standin=true mixes the stand-in into vlguard_file: set vlguard_file as well")
