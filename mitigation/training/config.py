"""`TrainingConfig`: the fields every trained method shares (model, output, seed, LoRA, precision, trackers,
checkpoints, resume, the eval bridge). RESA's and each method's config subclass it and add their own stages'
fields; TRL's `TrlParser` reads any of them from YAML (`--config FILE`) with command-line overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainingConfig:
    """What every run of the shared training pipeline needs (see mitigation/training/pipeline.py)."""

    # --- model and run -------------------------------------------------------------------------------------
    model: str | None = field(
        default=None,
        metadata={
            "help": "Base VLM: a local directory or hub id. Default: the embedded default model, built on "
            "first use (real SmolLM2-135M-Instruct + a small vision tower aligned on easy-VQA)."
        },
    )
    output_dir: str = field(default="runs/train", metadata={"help": "Where checkpoints, data and reports go."})
    seed: int = field(default=0, metadata={"help": "Seed for data and training."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run model code shipped with the checkpoint (off unless you opt in)."}
    )
    cache_dir: str = field(default=".cache/train", metadata={"help": "Generated data and the trust-suite cache."})
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
    max_steps: int = field(
        default=-1,
        metadata={
            "help": "Cap on every stage's optimizer steps (-1: no cap), e.g. 2 for a smoke run; a stage trains "
            "min(its own steps, the cap)."
        },
    )
    logging_steps: int = field(default=5, metadata={"help": "Log losses every N steps."})

    # --- LoRA ----------------------------------------------------------------------------------------------
    use_lora: bool = field(default=True, metadata={"help": "LoRA on the language model (else full fine-tuning)."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(
        default=0.0, metadata={"help": "LoRA dropout (0 on CPU: dropout costs ~10 percent of a step there)."}
    )
    lora_target_modules: str = field(
        default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        metadata={"help": "Comma-separated linear-layer names; matched inside the language model only."},
    )
    model_parts: str | None = field(
        default=None,
        metadata={
            "help": "Where the model's parts live, for families the resolver does not know: "
            "'language_model=model.text_model,vision_tower=model.vision_model,projector=model.connector'."
        },
    )

    # --- precision / memory --------------------------------------------------------------------------------
    bf16: bool = field(default=False, metadata={"help": "bfloat16 training (GPUs)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    precompute_ref_log_probs: str = field(
        default="auto",
        metadata={
            "help": "DPO stages: compute the reference log-probs in one pass before training and keep no reference "
            "model in memory (cached on disk). auto: on for full fine-tuning, off for LoRA (whose reference is the "
            "adapter-disabled base, already free); true / false force it."
        },
    )

    # --- the eval bridge -----------------------------------------------------------------------------------
    eval_tasks: str = field(
        default="none",
        metadata={
            "help": "Trust-suite tasks run on every checkpoint besides the tracks (e.g. 'safety', 'T1,S2', "
            "'all'); 'none': the tracks only."
        },
    )
    eval_borderline_file: str | None = field(
        default=None,
        metadata={
            "help": "Over-refusal set of the borderline_safe track: an XSTest-style CSV / JSONL (prompt, label "
            "safe/unsafe, type); its safe prompts are asked as text and beside an unrelated image. Default: the "
            "held-out part of the project's borderline-safe set (mitigation/data/borderline.py); 'none': no track."
        },
    )
    eval_suite: str = field(default="mini", metadata={"help": "mini or full (with eval_data_root)."})
    eval_data_root: str | None = field(default=None, metadata={"help": "MultiTrust data root for eval_suite=full."})
    eval_max_new_tokens: int = field(default=64, metadata={"help": "Generation length of the evaluations."})
    eval_batch_size: int = field(default=32, metadata={"help": "Generation batch size of the evaluations."})
    eval_mode: str = field(
        default="auto",
        metadata={
            "help": "Bridge mode: sync (evaluate in the training process), worker (a separate process evaluates "
            "while training goes on) or auto (sync for one process, worker under DDP / DeepSpeed)."
        },
    )
    eval_device: str | None = field(default=None, metadata={"help": "Device for the bridge's evaluations."})
    eval_judge: str | None = field(default=None, metadata={"help": "LLM judge spec for judged tasks."})
    eval_refusal_classifier: str | None = field(
        default=None,
        metadata={
            "help": "Refusal classifier of the evaluations (a local longformer-action-ro-style checkpoint); default: "
            "the offline stand-in (built once on first use); 'none': its terms are left out."
        },
    )
    eval_toxicity_classifier: str | None = field(
        default=None,
        metadata={
            "help": "Toxicity classifier of the evaluations (labels 'toxic'); default: the offline stand-in; "
            "'none': its terms are left out."
        },
    )
    eval_server: str | None = field(
        default=None,
        metadata={
            "help": "Evaluate checkpoints through an OpenAI-compatible server instead of loading them: "
            "'openai:<served base>@<url>', a vLLM server of the base model started with --enable-lora and "
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True on a machine that sees the checkpoints. Each LoRA checkpoint is "
            "loaded into it, evaluated and unloaded. Needs use_lora (a server cannot swap full weights); merged "
            "stage finals and later stages' checkpoints (on the previous stage's merged model) are recorded as "
            "not evaluable. Key from OPENAI_API_KEY if set."
        },
    )

    def __post_init__(self):
        if self.eval_server:
            from eval_bridge.openai_http import parse_openai_spec

            parse_openai_spec(self.eval_server, "eval_server")
            if not self.use_lora:
                raise ValueError(
                    f"eval_server={self.eval_server!r} evaluates LoRA checkpoints only: vLLM loads adapters at run "
                    "time but cannot swap a model's full weights. Set use_lora=true, or drop eval_server to "
                    "evaluate full-weight checkpoints in the bridge's own process"
                )

    def lora_targets(self) -> list[str]:
        """The LoRA target names as a list."""
        return [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]

    def trackers(self) -> list[str]:
        """The trackers named by `report_to` ([] for none)."""
        names = [t.strip() for t in self.report_to.split(",") if t.strip()]
        return [] if names == ["none"] else names

    def precompute_reference(self) -> bool:
        """Whether DPO stages precompute the reference log-probs (see `precompute_ref_log_probs`)."""
        value = str(self.precompute_ref_log_probs).strip().lower()
        if value == "auto":
            return not self.use_lora
        if value in ("true", "1", "yes"):
            return True
        if value in ("false", "0", "no"):
            return False
        raise ValueError(f"precompute_ref_log_probs must be auto, true or false, got {self.precompute_ref_log_probs!r}")

    def cap_steps(self, steps: int) -> int:
        """A stage's max_steps under the run-wide cap `max_steps`."""
        if self.max_steps is None or self.max_steps < 0:
            return steps
        return self.max_steps if steps is None or steps < 0 else min(steps, self.max_steps)
