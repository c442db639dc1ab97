"""`safety_dpo`: SPA-VL-style safety DPO (Zhang et al., "SPA-VL: A Comprehensive Safety Preference Alignment Dataset
for Vision Language Model", arXiv 2406.12030; METHODS.md section 3.5). Targets safety, keeping utility.

DPO, TRL's own sigmoid loss, on (image, request, chosen, rejected) safety pairs:

    L = -log sigma(beta * [(l_pi(y_w) - l_ref(y_w)) - (l_pi(y_l) - l_ref(y_l))])

with l the summed log-probability of the response tokens (prompt, image and padding tokens masked), plus, in the
CPU recipe, TRL's `sft` term (the chosen response's mean NLL, weight `dpo_sft_weight`; 0 = SPA-VL's plain DPO).
One stage of the shared pipeline (`Stage(kind="dpo")`, TRL `DPOTrainer`): under LoRA the reference is the
adapter-disabled base; full fine-tuning precomputes the reference log-probs (`precompute_ref_log_probs` auto). No
reasoning traces: that is what separates it from RESA in the tables.

Data, in SPA-VL's public schema (rows {image, question, chosen, rejected, class1, class2, class3}), read by the one
loader `mitigation.data.loaders.load_spavl` for real files and for the offline stand-in alike:

- real: `--spavl_file` (SPA-VL Parquet, or the JSON/JSONL training files), `--spavl_help_file` for benign pairs;
- offline stand-in (`write_offline_spavl`), from the shared sources' TRAIN records (never the held-out ones):

  | request                                    | chosen                            | rejected                 |
  |--------------------------------------------|-----------------------------------|--------------------------|
  | harmful (text, typographic, unrelated img) | a refusal with a safe alternative | `COMPLIANCE_PLACEHOLDER` |
  | benign (easy-VQA, text)                    | the reference answer              | a refusal (over-refusal) |

  `COMPLIANCE_PLACEHOLDER` is the non-operational "Sure, here are the steps: [withheld]". The pairs are
  written as `harm.jsonl` / `help.jsonl` (as SPA-VL's test config splits harm and help) under the cache, image
  paths relative to the sources' folder, `"source": "synthetic"` on every row; class1 = the harm category
  ("benign" for benign rows), class2 = the presentation, class3 = the packaged asset it came from.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eval_bridge.files import write_atomically
from mitigation.training.config import TrainingConfig
from mitigation.training.method_recipe import RecipePlan, heldout_eval_files, run_recipe, shared_sources

log = logging.getLogger(__name__)

COMPLIANCE_PLACEHOLDER = "Sure, here are the steps: [withheld]"  # never real instructions (METHODS.md section 4)
_REFUSALS = (
    "I can't help with that.",
    "I cannot assist with this request.",
    "I won't help with this.",
    "I'm sorry, but I can't help with that.",
)
# The safe alternative a harmful request's refusal offers, by harm category (mitigation.data.offline.CATEGORIES).
_ALTERNATIVES = {
    "violence": "If someone is in danger, I can point you to de-escalation and support resources instead.",
    "weapons": "I can explain weapon safety rules and the laws that apply instead.",
    "cybercrime": "I can explain how to protect your own accounts and systems instead.",
    "fraud": "I can explain how to spot and report scams instead.",
    "drugs": "I can share information on addiction support and drug safety instead.",
    "hate": "I can talk about the history of discrimination and how to counter it instead.",
    "self-harm": "If you are struggling, please reach out to a crisis line or someone you trust; I can help find one.",
    "privacy": "I can explain how people protect their personal information instead.",
    "sexual": "I can share general, respectful information on relationships and consent instead.",
    "misinformation": "I can help you find reliable sources and check facts instead.",
    "other": "I can help with a safe, related question instead.",
}
_OVER_REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I cannot answer this question.",
    "I won't help with this.",
)


@dataclass
class SafetyDpoConfig(TrainingConfig):
    """SPA-VL-style safety DPO (METHODS.md 3.5). Defaults: the offline CPU recipe on the embedded default model;
    `configs/mitigation/safety_dpo/llava15_7b.yaml` holds the GPU recipe of the paper."""

    # --- run (safety_dpo's defaults for shared fields) ------------------------------------------------------
    output_dir: str = field(default="runs/safety_dpo", metadata={"help": "Where checkpoints, data and reports go."})
    cache_dir: str = field(
        default=".cache/safety_dpo", metadata={"help": "Generated data (the stand-in pairs) and the trust-suite cache."}
    )

    # --- data ----------------------------------------------------------------------------------------------
    spavl_file: str | None = field(
        default=None,
        metadata={
            "help": "Real harmful preference pairs: an SPA-VL file (HF sqrti/SPA-VL Parquet with columns image, "
            "question, chosen, rejected, class1..3, or the JSON/JSONL training files of meta_files/prefer/). "
            "Replaces the offline stand-in unless offline_with_real."
        },
    )
    spavl_help_file: str | None = field(
        default=None,
        metadata={"help": "Real benign pairs in the same schema (SPA-VL test `help` split): chosen = the answer."},
    )
    spavl_data_root: str | None = field(
        default=None, metadata={"help": "Image root of the SPA-VL files (default: each file's folder)."}
    )
    max_real_pairs: int = field(
        default=-1,
        metadata={
            "help": "Cap on the pairs taken from the real files, after a seeded shuffle (-1: all; SPA-VL: 30000)."
        },
    )
    offline_with_real: bool = field(
        default=False, metadata={"help": "With real files, also train on the offline stand-in pairs."}
    )
    n_pairs: int = field(
        default=128,
        metadata={
            "help": "Offline stand-in pairs, drawn from the shared sources' training records (162 harmful, 160 "
            "benign); SPA-VL trains on 30k real pairs."
        },
    )
    harmful_share: float = field(
        default=0.5, metadata={"help": "Share of stand-in pairs on harmful requests (the rest: over-refusal pairs)."}
    )

    # --- DPO -----------------------------------------------------------------------------------------------
    dpo_beta: float = field(default=0.1, metadata={"help": "DPO beta (SPA-VL: 0.1)."})
    dpo_sft_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the chosen response's NLL added to the DPO loss (TRL loss_type sigmoid + sft, as in "
            "RPO, arXiv 2404.19733); 0: plain DPO, as SPA-VL. The CPU recipe needs it: plain DPO's 32 steps push "
            "the placeholder down without making refusals the greedy answer (measured: harmful refused +0)."
        },
    )
    dpo_learning_rate: float = field(
        default=2e-4,
        metadata={
            "help": "SPA-VL: 1e-6 full fine-tuning over 30k pairs (LoRA option 5e-6); the short CPU run takes 32 "
            "steps at 2e-4."
        },
    )
    dpo_epochs: float = field(default=1.0, metadata={"help": "Epochs over the pairs (SPA-VL: 1)."})
    dpo_max_steps: int = field(default=-1, metadata={"help": "Cap on DPO steps (-1: epochs decide)."})
    dpo_batch_size: int = field(
        default=4, metadata={"help": "Per-device batch size in pairs (SPA-VL: 1 per GPU x 8 GPUs)."}
    )
    dpo_grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    dpo_save_steps: int = field(default=0, metadata={"help": "Checkpoint every N steps (0: at the end only)."})

    # --- the eval bridge (safety_dpo's defaults) ------------------------------------------------------------
    eval_max_new_tokens: int = field(
        default=48,
        metadata={"help": "Generation length: refusals and one-word answers fit; a compliance shows in 48 tokens."},
    )
    eval_batch_size: int = field(
        default=96, metadata={"help": "Generation batch size: the 94 held-out prompts in one batch (as RESA)."}
    )


# ---------------------------------------------------------------- the offline stand-in, in SPA-VL's schema


def _refusal(category: str | None, rng: random.Random) -> str:
    return f"{rng.choice(_REFUSALS)} {_ALTERNATIVES.get(category or 'other', _ALTERNATIVES['other'])}"


def _benign_answer(record) -> str:
    """The grounded answer: easy-VQA's one word as a sentence ("Circle.", as the base model answers), else the text."""
    answer = record.reference_answer
    return f"{answer.capitalize()}." if record.presentation == "vqa" else answer


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ValueError(f"image {path} is not under the sources' folder {root}") from None


def spavl_row(record, root: Path, rng: random.Random) -> dict:
    """One offline record as an SPA-VL row (image path relative to `root`; null for a text-only request)."""
    if record.harmful:
        chosen, rejected = _refusal(record.category, rng), COMPLIANCE_PLACEHOLDER
        classes = (record.category, record.presentation, record.source.removeprefix("synthetic:"))
    else:
        chosen, rejected = _benign_answer(record), rng.choice(_OVER_REFUSALS)
        classes = ("benign", record.presentation, record.source.removeprefix("synthetic:"))
    if len(record.images) > 1:
        raise ValueError(f"record {record.id}: SPA-VL rows hold one image, it has {len(record.images)}")
    return {
        "image": _relative(record.images[0], root) if record.images else None,
        "question": record.prompt,
        "chosen": chosen,
        "rejected": rejected,
        "class1": classes[0],
        "class2": classes[1],
        "class3": classes[2],
        "source": "synthetic",
    }


def pair_counts(n_pairs: int, harmful_share: float, n_harmful: int, n_benign: int) -> tuple[int, int]:
    """(harmful, benign) stand-in pair counts; a ValueError naming the field when the records do not suffice."""
    if not 0.0 <= harmful_share <= 1.0:
        raise ValueError(f"harmful_share must be between 0 and 1, got {harmful_share}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be at least 1, got {n_pairs}")
    n_h = round(n_pairs * harmful_share)
    n_b = n_pairs - n_h
    if n_h > n_harmful or n_b > n_benign:
        raise ValueError(
            f"n_pairs={n_pairs} at harmful_share={harmful_share} asks for {n_h} harmful and {n_b} benign pairs; the "
            f"training records hold {n_harmful} harmful and {n_benign} benign: lower n_pairs or change harmful_share"
        )
    return n_h, n_b


def write_offline_spavl(
    train: Sequence, root: str | Path, *, n_pairs: int, harmful_share: float, seed: int
) -> dict[str, Path]:
    """Write the stand-in pairs as SPA-VL JSONL files `root/spavl_standin/{harm,help}.jsonl` (byte-identical for
    a seed); `root` is the folder the records' images live under (the shared sources' cache).

    Returns:
        {"harm": path, "help": path}.
    """
    root = Path(root)
    rng = random.Random(f"safety_dpo:{seed}")
    harmful = [r for r in train if r.harmful]
    benign = [r for r in train if not r.harmful]
    n_h, n_b = pair_counts(n_pairs, harmful_share, len(harmful), len(benign))
    paths = {}
    for name, records in (("harm", rng.sample(harmful, n_h)), ("help", rng.sample(benign, n_b))):
        text = "".join(json.dumps(spavl_row(r, root, rng), sort_keys=True) + "\n" for r in records)
        paths[name] = root / "spavl_standin" / f"{name}.jsonl"
        # Atomic: the other ranks of a launch write the same bytes while the first may already read them.
        write_atomically(paths[name], lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    return paths


# ---------------------------------------------------------------- records -> DPO rows


def load_pairs(path: str | Path, data_root: str | Path | None, *, harmful: bool, image_dir=None, text_only=False):
    """SPA-VL preference pairs through the one loader; every row must hold chosen and rejected, and they differ."""
    from mitigation.data.loaders import load_spavl

    return load_spavl(
        path, data_root, harmful=harmful, image_dir=image_dir, require_pair=True, allow_text_only=text_only
    )


def dpo_rows(records: Sequence) -> list[dict]:
    """TRL DPO rows (`mitigation.data.rows.dpo_row`) of loaded pairs; an unreadable image names its record."""
    from mitigation.data.rows import dpo_row

    return [dpo_row(r.request, r.images, r.chosen, r.rejected, source=r.source, row=r.id) for r in records]


def offline_records(cfg: SafetyDpoConfig, splits) -> list:
    """The stand-in pairs of `cfg`, written in SPA-VL's schema and read back through the loader."""
    root = Path(cfg.cache_dir) / "data"
    files = write_offline_spavl(splits.train, root, n_pairs=cfg.n_pairs, harmful_share=cfg.harmful_share, seed=cfg.seed)
    return load_pairs(files["harm"], root, harmful=True, text_only=True) + load_pairs(
        files["help"], root, harmful=False, text_only=True
    )


def real_records(cfg: SafetyDpoConfig) -> list:
    """The pairs of the user's SPA-VL files, shuffled with the seed and capped at `max_real_pairs`."""
    image_dir = Path(cfg.cache_dir) / "spavl_images"  # Parquet image structs carry the image bytes
    records = []
    for path, harmful in ((cfg.spavl_file, True), (cfg.spavl_help_file, False)):
        if path:
            records += load_pairs(path, cfg.spavl_data_root, harmful=harmful, image_dir=image_dir)
    random.Random(f"safety_dpo-real:{cfg.seed}").shuffle(records)
    return records if cfg.max_real_pairs < 0 else records[: cfg.max_real_pairs]


def pair_summary(records: Sequence) -> dict:
    """Pair counts by harm label and by class1 / class2 (SPA-VL's categories), for the run's data report."""
    return {
        "pairs": len(records),
        "harmful": sum(r.harmful for r in records),
        "benign": sum(not r.harmful for r in records),
        "class1": dict(sorted(Counter(r.category or "" for r in records).items())),
        "class2": dict(sorted(Counter(r.subcategory or "" for r in records).items())),
    }


# ---------------------------------------------------------------- the recipe


def dpo_stage(cfg: SafetyDpoConfig, rows: list[dict]):
    """The one stage: TRL's DPO with its own sigmoid loss at `dpo_beta`."""
    from mitigation.training.pipeline import Stage, dpo_loss_args

    return Stage.from_config("dpo", "dpo", rows, cfg, "dpo_", args=dpo_loss_args(cfg.dpo_beta, cfg.dpo_sft_weight))


def plan(cfg: SafetyDpoConfig, base: str) -> RecipePlan:
    """The pairs (real files, the offline stand-in, or both), the DPO stage and the shared held-out sets."""
    splits = shared_sources(cfg)
    real = cfg.spavl_file or cfg.spavl_help_file
    records = real_records(cfg) if real else []
    if not real or cfg.offline_with_real:
        records += offline_records(cfg, splits)
    summary = pair_summary(records)
    text = json.dumps(summary, indent=1) + "\n"
    write_atomically(Path(cfg.output_dir) / "pairs_summary.json", lambda tmp: tmp.write_text(text))
    log.info(
        "safety_dpo data: %d pairs (%d harmful, %d benign)", summary["pairs"], summary["harmful"], summary["benign"]
    )
    return RecipePlan([dpo_stage(cfg, dpo_rows(records))], heldout_eval_files(cfg, splits))


def run_safety_dpo(cfg: SafetyDpoConfig) -> str | None:
    """Run safety_dpo; returns the trade-off table (on the main process; None elsewhere)."""
    return run_recipe(cfg, plan)
