"""`RobustVisionConfig`: the fields of the `robust_vision` method (FARE / TeCoA robust vision tower; METHODS.md 3.3).

Defaults are the offline CPU recipe on the embedded default model (`configs/mitigation/robust_vision/default_cpu.yaml`
spells them out); the upstream values (Schlarmann et al., "Robust CLIP", ICML 2024, arXiv 2402.12336; repo
chs20/RobustVLM, README commands) are cited in each field's help. TRL's `TrlParser` reads it from YAML + flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mitigation.training.config import TrainingConfig


@dataclass
class RobustVisionConfig(TrainingConfig):
    """An adversarially robust vision tower: swap one in (`mode=swap`) or fine-tune the model's own with FARE
    (unsupervised) or TeCoA (supervised) (`mode=finetune`); the rest of the VLM is untouched."""

    # --- run (the method's defaults for shared fields) --------------------------------------------------------
    output_dir: str = field(default="runs/robust_vision", metadata={"help": "Where checkpoints, data and reports go."})
    cache_dir: str = field(default=".cache/robust_vision", metadata={"help": "Generated data and the suite's cache."})
    use_lora: bool = field(
        default=False,
        metadata={"help": "Must stay false: the vision tower is trained in full (LoRA applies to the LM only)."},
    )

    # --- mode ---------------------------------------------------------------------------------------------------
    mode: Literal["finetune", "swap"] = field(
        default="finetune",
        metadata={
            "help": "finetune: adversarial fine-tuning of the model's own tower against a frozen copy (offline "
            "default; Qwen2-VL-style towers are not supported yet); swap: load robust CLIP vision weights "
            "(swap_from) into the tower, no training (RobustVLM's way for LLaVA at 224 px)."
        },
    )
    swap_from: str | None = field(
        default=None,
        metadata={
            "help": "mode=swap: a CLIP vision model (local directory or hub id, loaded with from_pretrained; a full "
            "CLIPModel gives its vision part), e.g. an HF re-release of FARE^2 such as LEAF-CLIP/CLIP-ViT-L-FARE2 "
            "(unverified). Its width must equal the projector's input."
        },
    )
    swap_image_size: int | None = field(
        default=None,
        metadata={
            "help": "mode=swap: the resolution after the swap. None: the swapped tower's own (processor resize / "
            "crop and image_seq_length follow it: 224 px gives LLaVA-1.5 256 image tokens instead of 576). A size: "
            "its position embeddings are bicubically interpolated to it (e.g. 336 to keep 576 tokens; untested "
            "for robustness upstream)."
        },
    )

    # --- FARE / TeCoA --------------------------------------------------------------------------------------------
    loss: Literal["fare", "tecoa"] = field(
        default="fare",
        metadata={
            "help": "fare: ||phi(z) - phi_orig(x)||^2 against a frozen copy (unsupervised); tecoa: cross-entropy of "
            "zero-shot logits 100 * cos(image, class text) against the image's class (supervised)."
        },
    )
    features: Literal["projector_input", "pooled"] = field(
        default="projector_input",
        metadata={
            "help": "phi: projector_input = the patch features the projector reads (hidden_states"
            "[vision_feature_layer], CLS dropped under the 'default' strategy): what the LM sees; pooled = the "
            "tower's post-layernorm CLS embedding, FARE's own choice for CLIP (LLaVA's tower has no visual "
            "projection, so image_embeds are its linear image)."
        },
    )
    epsilon: float = field(
        default=2.0, metadata={"help": "L-inf radius in PIXEL units /255, on [0, 1] images (FARE: 2 or 4)."}
    )
    pgd_steps: int = field(default=10, metadata={"help": "PGD steps of the inner maximisation (FARE: 10)."})
    pgd_step_size: float = field(default=1.0, metadata={"help": "PGD step in pixel units /255 (FARE: 1)."})
    pgd_momentum: float = field(
        default=0.9, metadata={"help": "Momentum of the sign-normalised PGD gradient (RobustVLM pgd_train.py: 0.9)."}
    )
    tecoa_labels: Literal["shape", "color"] = field(
        default="shape",
        metadata={
            "help": "loss=tecoa on easy-VQA: the classes (shape: circle / rectangle / triangle; color: 8 colours). "
            "Class-text embeddings: the LM's input embeddings of the class word, compared with the mean projected "
            "image token (the embedded default has no CLIP text tower). With image_dir: its sub-folder names."
        },
    )
    tecoa_logit_scale: float = field(default=100.0, metadata={"help": "Zero-shot logit scale (CLIP / TeCoA: 100)."})

    # --- data ---------------------------------------------------------------------------------------------------
    image_dir: str | None = field(
        default=None,
        metadata={
            "help": "Real training images (e.g. the ImageNet train folder, FARE's data): every .jpg/.jpeg/.png/.webp "
            "under it; for tecoa, one sub-folder per class, named by the class word. Default: easy-VQA's train "
            "images (the packaged asset)."
        },
    )
    n_train_images: int = field(
        default=-1,
        metadata={
            "help": "Training images drawn (seeded) from image_dir or easy-VQA train (-1: all of them, 3,542 for "
            "easy-VQA; 256 images over 300 steps over-fitted: the held-out PGD distance rose)."
        },
    )
    n_heldout_images: int = field(
        default=128,
        metadata={
            "help": "Held-out images (easy-VQA TEST split, never trained on) on which the embedding distance under "
            "PGD is measured before and after (RUN/robustness.json)."
        },
    )
    measure_pgd_steps: int = field(
        default=20, metadata={"help": "PGD steps of that measurement (a stronger attack than training's)."}
    )

    # --- optimisation -------------------------------------------------------------------------------------------
    learning_rate: float = field(
        default=3e-4,
        metadata={"help": "AdamW learning rate (FARE: 1e-5 over 20k steps of batch 128; the short CPU run: 3e-4)."},
    )
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay (FARE: 1e-4)."})
    warmup_ratio: float = field(
        default=0.07, metadata={"help": "Share of the steps spent warming up (FARE: 1,400 of 20k = 0.07)."}
    )
    train_steps: int = field(
        default=150, metadata={"help": "Optimizer steps (FARE: 20,000; the CPU run: 150, ~1.4 epochs of easy-VQA)."}
    )
    batch_size: int = field(default=32, metadata={"help": "Per-device batch size in images (FARE: 128)."})
    grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    cpu_threads: int = field(
        default=1,
        metadata={
            "help": "CPU threads of the tower's steps and measurements (0: the run's, all cores; evaluations keep "
            "the run's): a small tower's kernels ran 2.5-4x slower on 2 threads than on 1 on the shared 2-core "
            "machine (CLIP's stride-32 patch convolution backward dominates). Ignored on GPUs."
        },
    )
    save_steps: int = field(
        default=0, metadata={"help": "Save a full VLM checkpoint (through the bridge) every N steps (0: the end)."}
    )

    # --- the eval bridge (the method's defaults) ------------------------------------------------------------------
    eval_tasks: str = field(
        default="R4,R5",
        metadata={
            "help": "Trust-suite tasks besides the tracks: the mini suite's adversarial-image robustness tasks "
            "(R4 untargeted, R5 targeted; seeded +-16/255 noise, not a real attack); 'none' for the tracks only."
        },
    )
    eval_max_new_tokens: int = field(
        default=32, metadata={"help": "Generation length: a one-word answer or a short description."}
    )
    eval_batch_size: int = field(default=96, metadata={"help": "Generation batch size of the evaluations."})

    def __post_init__(self):
        super().__post_init__()
        if self.use_lora:
            raise ValueError(
                "robust_vision trains the vision tower in full and leaves the language model untouched: "
                "set use_lora=false"
            )
        if self.mode == "swap" and not self.swap_from:
            raise ValueError("mode=swap needs swap_from: a CLIP vision model directory or hub id")
        if self.epsilon <= 0 or self.pgd_step_size <= 0:
            raise ValueError(
                f"epsilon ({self.epsilon}) and pgd_step_size ({self.pgd_step_size}) must be > 0, in pixel units "
                "/255 (FARE: epsilon 2 or 4, step 1)"
            )
        if self.epsilon < 0.05:  # 2/255 = 0.0078 typed as 0.0078 would be a 255x weaker attack
            raise ValueError(
                f"epsilon={self.epsilon} looks like a value already divided by 255; give it in /255 units "
                "(epsilon 2 means 2/255)"
            )
        if self.pgd_steps < 1 or self.measure_pgd_steps < 1:
            raise ValueError("pgd_steps and measure_pgd_steps must be at least 1")
        if not 0.0 <= self.pgd_momentum < 1.0:
            raise ValueError(f"pgd_momentum must be in [0, 1), got {self.pgd_momentum}")
        if self.swap_image_size is not None and self.swap_image_size <= 0:
            raise ValueError(f"swap_image_size must be a positive number of pixels, got {self.swap_image_size}")

    def eps(self) -> float:
        """The L-inf radius on [0, 1] images (epsilon / 255)."""
        return self.epsilon / 255.0

    def step_size(self) -> float:
        """The PGD step on [0, 1] images (pgd_step_size / 255)."""
        return self.pgd_step_size / 255.0
