"""`LrvConfig`: the `lrv` method's configuration (LRV-Instruction negative-instruction SFT, METHODS.md 3.2), read
from YAML (`--config`) with command-line overrides by TRL's `TrlParser`. Defaults are the offline CPU recipe on
the embedded default model; `configs/mitigation/lrv/llava15_7b.yaml` holds the GPU recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mitigation.training.config import TrainingConfig

# LRV-Instruction's three negative instruction types (arXiv 2306.14565, section 3): nonexistent element
# manipulation (negative1_generation_prompt.txt), existent element manipulation (negative2_generation_prompt.txt)
# and knowledge manipulation (the later chart set).
NEGATIVE_TYPES = ("nonexistent", "existent", "knowledge")


def parse_shares(text: str) -> dict[str, float]:
    """`"nonexistent=0.4,existent=0.4,knowledge=0.2"` as {type: share}; types left out get 0.

    Raises:
        ValueError: an unknown type, a repeated or negative share, or shares that do not sum to 1.
    """
    shares = dict.fromkeys(NEGATIVE_TYPES, 0.0)
    seen = set()
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        name, sep, value = (s.strip() for s in part.partition("="))
        if not sep or name not in shares:
            raise ValueError(
                f"negative_type_shares: {part!r} is not TYPE=SHARE with TYPE one of {', '.join(NEGATIVE_TYPES)}"
            )
        if name in seen:
            raise ValueError(f"negative_type_shares: {name!r} is given twice")
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"negative_type_shares: the share of {name!r} is not a number: {value!r}") from None
        if share < 0:
            raise ValueError(f"negative_type_shares: the share of {name!r} is negative ({share})")
        seen.add(name)
        shares[name] = share
    if abs(sum(shares.values()) - 1.0) > 1e-6:
        raise ValueError(f"negative_type_shares must sum to 1, got {sum(shares.values()):g} from {text!r}")
    return shares


@dataclass
class LrvConfig(TrainingConfig):
    """LRV-Instruction: SFT on positive instructions mixed with negative ones that reject a false premise and state
    the truth (Liu et al., ICLR 2024, arXiv 2306.14565). Targets truthfulness.

    The shared fields (model, LoRA, precision, trackers, resume, the eval bridge) are `TrainingConfig`'s; the
    fields below are the method's own, and a few shared defaults are its CPU recipe."""

    # --- run (the method's defaults for shared fields) -------------------------------------------------------
    output_dir: str = field(default="runs/lrv", metadata={"help": "Where checkpoints, data and reports go."})
    cache_dir: str = field(default=".cache/lrv", metadata={"help": "Generated data and the trust-suite cache."})
    max_steps: int = field(
        default=60,
        metadata={
            "help": "SFT optimizer steps (-1: `epochs` decide). 60 x batch 8 = 1.2 epochs of the 400 offline "
            "instructions, within the CPU budget; upstream trains 1 epoch over the whole set."
        },
    )

    # --- data ----------------------------------------------------------------------------------------------
    synthetic_records: int = field(
        default=400,
        metadata={
            "help": "Offline LRV-schema instructions generated from easy-VQA train images and rendered bar charts "
            "(0: train on lrv_file only)."
        },
    )
    negative_ratio: float = field(
        default=0.5,
        metadata={
            "help": "Share of negative instructions among the offline ones. METHODS 3.2: 0.5; the paper reports a "
            "balanced mix works best and negative-heavy mixes over-deny (unverified)."
        },
    )
    negative_type_shares: str = field(
        default="nonexistent=0.4,existent=0.4,knowledge=0.2",
        metadata={
            "help": "How the negatives split between nonexistent element manipulation (absent objects), existent "
            "element manipulation (present objects with wrong attributes) and knowledge manipulation (charts with "
            "a falsified value). Chart positives take the knowledge share of the positives, so charts are never "
            "all negative."
        },
    )
    lrv_file: str | None = field(
        default=None,
        metadata={
            "help": "LRV-Instruction JSON (a list of {image_id, question, answer, task}, or {'annotations': [...]}); "
            "trained on with the offline instructions (set synthetic_records 0 to use it alone)."
        },
    )
    lrv_image_root: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the images named by image_id (Visual Genome: <image_id>.jpg, also under image/, "
            "VG_100K/ and VG_100K_2/); default: the folder of lrv_file."
        },
    )
    lrv_max_records: int = field(
        default=-1, metadata={"help": "Use a seeded random subset of this many lrv_file records (-1: all)."}
    )

    # --- SFT -----------------------------------------------------------------------------------------------
    learning_rate: float = field(
        default=2e-4,
        metadata={
            "help": "SFT learning rate. METHODS 3.2 (as vlguard): LLaVA-1.5 stage-2 2e-5 full fine-tuning, 2e-4 "
            "LoRA; the short CPU LoRA run uses 2e-4."
        },
    )
    epochs: float = field(default=1.0, metadata={"help": "Epochs over the instructions (upstream: 1)."})
    batch_size: int = field(default=8, metadata={"help": "Per-device batch size (LLaVA-1.5 stage 2: 16)."})
    grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    save_steps: int = field(default=0, metadata={"help": "Checkpoint every N steps (0: the final model only)."})

    # --- the eval bridge (the method's defaults) -------------------------------------------------------------
    eval_tasks: str = field(
        default="T1,T5",
        metadata={
            "help": "Trust-suite tasks on every checkpoint besides the tracks: the mini suite's T1 (object and "
            "attribute existence, yes/no) and T5 (text-misleading VQA: a false premise in the question); 'none': "
            "the tracks only; 'truthfulness': T1-T7."
        },
    )
    eval_max_new_tokens: int = field(
        default=48, metadata={"help": "Generation length: the trained answers take 10-25 tokens."}
    )
    eval_batch_size: int = field(
        default=96, metadata={"help": "Generation batch size (the 94 track requests in one batch)."}
    )

    def __post_init__(self):
        super().__post_init__()
        parse_shares(self.negative_type_shares)
        if not 0.0 <= self.negative_ratio <= 1.0:
            raise ValueError(f"negative_ratio must be between 0 and 1, got {self.negative_ratio}")
        if self.synthetic_records < 0:
            raise ValueError(f"synthetic_records must be 0 or more, got {self.synthetic_records}")
        if self.synthetic_records == 0 and not self.lrv_file:
            raise ValueError("synthetic_records is 0 and no lrv_file is set: nothing to train on; set one of them")

    def shares(self) -> dict[str, float]:
        """The negative types' shares as {type: share}."""
        return parse_shares(self.negative_type_shares)
