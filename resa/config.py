"""The RESA recipe's configuration: one dataclass, read from YAML (`--config`) with command-line overrides by TRL's
`TrlParser` (every field is also a flag: `--sft_learning_rate 2e-4`). Defaults are the offline CPU recipe on the
embedded default model; `configs/resa/*.yaml` hold the GPU recipes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mitigation.training.config import TrainingConfig


@dataclass
class ResaConfig(TrainingConfig):
    """RESA: reasoning-trace SFT, then DPO against harmful compliance and over-refusal (METHODS.md, section 5).

    The shared fields (model, LoRA, precision, trackers, resume, the eval bridge) are `TrainingConfig`'s; the
    fields below are RESA's own, and a few shared defaults are RESA's CPU recipe."""

    # --- run (RESA's defaults for shared fields) ------------------------------------------------------------
    output_dir: str = field(default="runs/resa", metadata={"help": "Where checkpoints, data and reports go."})
    cache_dir: str = field(default=".cache/resa", metadata={"help": "Generated data and the trust-suite cache."})

    # --- data ----------------------------------------------------------------------------------------------
    n_harmful_train: int = field(
        default=54,
        metadata={
            "help": "Harmful training prompts; each is presented 3 ways (text, typographic, "
            "text + unrelated image), so 54 give 162 records."
        },
    )
    n_benign_train: int = field(default=160, metadata={"help": "Benign training records (VQA + text)."})
    benign_vqa_share: float = field(
        default=0.75,
        metadata={"help": "Share of easy-VQA questions among the benign training records (the rest: text requests)."},
    )
    n_harmful_eval: int = field(default=10, metadata={"help": "Held-out harmful prompts (x3 presentations)."})
    n_benign_eval: int = field(default=16, metadata={"help": "Held-out benign requests (VQA + text)."})
    n_borderline_train: int = field(
        default=0,
        metadata={
            "help": "Borderline-safe training prompts (the train split of mitigation/data/borderline.py, never the "
            "held-out one the borderline_safe track asks): the safe ones become benign text requests answered by "
            "the base model (needs benign_answers=base_model, or trace_mode=teacher), their harmful contrasts "
            "(same trigger words) harmful text requests, so the reasoning learns to read the request, not the "
            "keyword. 0: none."
        },
    )
    borderline_presentations: str = field(
        default="text,unrelated_image",
        metadata={
            "help": "How the n_borderline_train prompts are shown, comma-separated: 'text' and/or "
            "'unrelated_image' (beside an image that has nothing to do with the request, as the held-out track "
            "also asks them), so an unrelated image alone does not read as a risk."
        },
    )
    benign_answers: str = field(
        default="reference",
        metadata={
            "help": "Answers of the benign text requests in template traces: 'reference' (hand-written) or "
            "'base_model' (the base model's own greedy answer to the plain request, kept when it does not refuse "
            "and has 3-80 words; the hand-written one otherwise), so SFT does not teach canned text. With "
            "trace_mode=teacher the teacher writes them."
        },
    )
    trace_mode: str = field(default="template", metadata={"help": "template (offline) or teacher."})
    teacher: str | None = field(
        default=None,
        metadata={"help": "Teacher for trace_mode=teacher: openai:<model>@<base_url> or hf:<path> (see judges)."},
    )
    vlguard_file: str | None = field(default=None, metadata={"help": "Also train on VLGuard train.json."})
    spa_vl_file: str | None = field(default=None, metadata={"help": "Also train on SPA-VL data (parquet/JSON)."})
    jailbreakv_file: str | None = field(default=None, metadata={"help": "Also train on JailBreakV-28K CSV."})
    user_data_root: str | None = field(default=None, metadata={"help": "Image root of the user data files."})

    # --- SFT -----------------------------------------------------------------------------------------------
    sft_learning_rate: float = field(
        default=5e-4, metadata={"help": "METHODS 5c: 1e-4 LoRA / 1e-5 full over 2 epochs; the short CPU run uses 5e-4."}
    )
    sft_epochs: float = field(default=2.0, metadata={"help": "Epochs over the reasoning traces."})
    sft_max_steps: int = field(
        default=60, metadata={"help": "Cap on SFT steps (-1: epochs decide); 60 fits the CPU budget."}
    )
    sft_batch_size: int = field(
        default=6, metadata={"help": "Per-device batch size (6 x 60 steps: ~1.1 epochs of the default data)."}
    )
    sft_grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    sft_save_steps: int = field(default=0, metadata={"help": "Checkpoint every N steps (0: at the end only)."})

    # --- DPO -----------------------------------------------------------------------------------------------
    dpo_beta: float = field(default=0.1, metadata={"help": "DPO beta (SPA-VL: 0.1)."})
    dpo_sft_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the chosen response's NLL added to the DPO loss (TRL loss_type sigmoid + sft, as "
            "in RPO, arXiv 2404.19733); 0: plain DPO. Keeps the reasoned answers' likelihood from falling."
        },
    )
    dpo_learning_rate: float = field(
        default=5e-5, metadata={"help": "METHODS 5d: 5e-6 LoRA / 1e-6 full over an epoch; the short CPU run uses 5e-5."}
    )
    dpo_epochs: float = field(default=1.0, metadata={"help": "Epochs over the preference pairs."})
    dpo_max_steps: int = field(default=-1, metadata={"help": "Cap on DPO steps (-1: epochs decide)."})
    dpo_batch_size: int = field(default=4, metadata={"help": "Per-device batch size (pairs)."})
    dpo_grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    dpo_pairs: int = field(
        default=16, metadata={"help": "Preference pairs (harmful:benign = dpo_harmful_ratio); 16 = 4 steps at batch 4."}
    )
    dpo_harmful_ratio: float = field(default=0.5, metadata={"help": "Share of pairs on harmful prompts."})
    dpo_inconsistent_share: float = field(
        default=0.0,
        metadata={
            "help": "Share of each kind's pairs whose rejected answer contradicts its own Step 4 (no risk found, "
            "then a refusal; harm found, then compliance): DPO then teaches that the answer follows the reasoning."
        },
    )
    dpo_save_steps: int = field(default=0, metadata={"help": "Checkpoint every N steps (0: at the end only)."})

    # --- the eval bridge (RESA's defaults) ------------------------------------------------------------------
    eval_max_new_tokens: int = field(
        default=112, metadata={"help": "Generation length: template traces (reasoning + answer) take 60-110 tokens."}
    )
    eval_batch_size: int = field(
        default=96,
        metadata={
            "help": "Generation batch size. The recipe's 94 held-out prompts in one batch: a decoding step's fixed "
            "costs are paid once (measured on CPU: one batch of 64 1.47x faster than two of 32)."
        },
    )
