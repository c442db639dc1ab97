"""The RESA recipe's configuration: one dataclass, read from YAML (`--config`) with command-line overrides by TRL's
`TrlParser` (every field is also a flag: `--sft_learning_rate 2e-4`). Defaults are the offline CPU recipe on the
embedded default model; `configs/resa/*.yaml` hold the GPU recipes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ResaConfig:
    """RESA: reasoning-trace SFT, then DPO against harmful compliance and over-refusal (METHODS.md, section 5)."""

    # --- model and run -------------------------------------------------------------------------------------
    model: str | None = field(
        default=None,
        metadata={
            "help": "Base VLM: a local directory or hub id. Default: the embedded default model, built on "
            "first use (real SmolLM2-135M-Instruct + a small vision tower aligned on easy-VQA)."
        },
    )
    output_dir: str = field(default="runs/resa", metadata={"help": "Where checkpoints, data and reports go."})
    seed: int = field(default=0, metadata={"help": "Seed for data, traces, pairs and training."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow code shipped with the checkpoint."})
    cache_dir: str = field(default=".cache/resa", metadata={"help": "Generated data and the trust-suite cache."})
    report_to: str = field(
        default="wandb",
        metadata={
            "help": "Tracker(s), comma-separated (wandb, tensorboard, none). wandb runs offline unless "
            "WANDB_MODE says otherwise: no account needed."
        },
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "'last' or a checkpoint path: resume the stage that was interrupted; finished stages are skipped."
        },
    )

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
    trace_mode: str = field(default="template", metadata={"help": "template (offline) or teacher."})
    teacher: str | None = field(
        default=None,
        metadata={"help": "Teacher for trace_mode=teacher: openai:<model>@<base_url> or hf:<path> (see judges)."},
    )
    vlguard_file: str | None = field(default=None, metadata={"help": "Also train on VLGuard train.json."})
    spa_vl_file: str | None = field(default=None, metadata={"help": "Also train on SPA-VL data (parquet/JSON)."})
    jailbreakv_file: str | None = field(default=None, metadata={"help": "Also train on JailBreakV-28K CSV."})
    user_data_root: str | None = field(default=None, metadata={"help": "Image root of the user data files."})

    # --- LoRA ----------------------------------------------------------------------------------------------
    use_lora: bool = field(default=True, metadata={"help": "LoRA on the language model (else full fine-tuning)."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank (METHODS: r 64)."})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha (METHODS: 128)."})
    lora_dropout: float = field(
        default=0.0, metadata={"help": "LoRA dropout (0 on CPU: dropout costs ~10 percent of a step there)."}
    )
    lora_target_modules: str = field(
        default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        metadata={"help": "Comma-separated module names; matched in the language model only."},
    )

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
    dpo_save_steps: int = field(default=0, metadata={"help": "Checkpoint every N steps (0: at the end only)."})

    logging_steps: int = field(default=5, metadata={"help": "Log losses every N steps."})

    # --- precision / memory --------------------------------------------------------------------------------
    bf16: bool = field(default=False, metadata={"help": "bfloat16 training (GPUs)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})

    # --- the eval bridge -----------------------------------------------------------------------------------
    eval_tasks: str = field(
        default="none",
        metadata={
            "help": "Trust-suite tasks run on every checkpoint besides the RESA tracks (e.g. 'safety', "
            "'all'); 'none' keeps a CPU run short."
        },
    )
    eval_suite: str = field(default="mini", metadata={"help": "mini or full (with eval_data_root)."})
    eval_data_root: str | None = field(default=None, metadata={"help": "MultiTrust data root for eval_suite=full."})
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
    eval_mode: str = field(default="sync", metadata={"help": "Bridge mode: sync or worker (see the README)."})
    eval_device: str | None = field(default=None, metadata={"help": "Device for the bridge's evaluations."})
    eval_judge: str | None = field(default=None, metadata={"help": "LLM judge spec for judged tasks."})

    def lora_targets(self) -> list[str]:
        return [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]

    def trackers(self) -> list[str]:
        names = [t.strip() for t in self.report_to.split(",") if t.strip()]
        return [] if names == ["none"] else names
