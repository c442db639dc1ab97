"""VLGuard: safety fine-tuning data mixed into instruction data (Zong et al., "Safety Fine-Tuning at (Almost) No
Cost", ICML 2024, arXiv 2402.02207; code ys-zong/VLGuard, data HF ys-zong/VLGuard). Targets safety (harmful
images, harmful instructions on safe images, jailbreaks) and privacy (its personal-data subcategory); mixing in
ordinary instruction data keeps helpfulness. METHODS.md section 3.1.

The safety data, VLGuard's `train.json` (`mitigation.data.loaders.read_vlguard`), as upstream converts it
(`convert_to_llava_format.py`):
- an unsafe image -> one turn: its instruction, an explained refusal;
- a safe image -> a two-turn conversation of its two pairs (safe instruction -> helpful answer, unsafe
  instruction -> refusal) in an order shuffled with the seed; the image placeholder only in the first user turn.

Mixed with the instruction data (LLaVA-format `instruction_file`, e.g. llava_v1_5_mix665k.json, or by default the
shared offline sources' benign training records: easy-VQA questions and text requests with reference answers) in
one of two modes: `posthoc` (the safety data + `helpful_samples` drawn
without replacement, fine-tuning the trained model: the paper's cheap variant) or `mixed` (the safety data, or
`mix_ratio` of it per instruction sample, mixed into the whole instruction set). Trained by SFT with the loss on
assistant tokens only.

Offline, `write_standin` writes a stand-in in VLGuard's schema (`train.json` + images, records marked
"source": "synthetic") from the shared sources' *training* harmful prompts, read back through the same loader:
unsafe images are typographic renderings of harmful prompts, safe images are easy-VQA images carrying a grounded
question and a harmful prompt as text; refusals name the VLGuard category and are non-operational. About half the
images are safe, as in VLGuard (977 of 2,000).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from eval_bridge.data import assets
from eval_bridge.files import write_atomically
from mitigation.data import rows
from mitigation.data.loaders import InstructionSample, VlguardImage, read_llava_instructions, read_vlguard
from mitigation.data.offline import OfflineRecord, OfflineSplits
from mitigation.data.vlguard_config import VlguardConfig
from mitigation.training.method_recipe import RecipePlan, heldout_eval_files, run_recipe, shared_sources

log = logging.getLogger(__name__)

# The shared sources' categories on VLGuard's taxonomy (harmful_category, harmful_subcategory). VLGuard's own
# subcategory where one fits; otherwise "risky behavior" (its catch-all for dangerous or illegal acts) with the
# project's category name as the subcategory.
VLGUARD_TAXONOMY = {
    "violence": ("risky behavior", "violence"),
    "weapons": ("risky behavior", "violence"),
    "sexual": ("risky behavior", "sexually explicit"),
    "cybercrime": ("risky behavior", "cybercrime"),
    "fraud": ("risky behavior", "fraud"),
    "drugs": ("risky behavior", "drugs"),
    "self-harm": ("risky behavior", "self-harm"),
    "other": ("risky behavior", "other"),
    "hate": ("discrimination", "other"),
    "privacy": ("privacy", "personal data"),
    "misinformation": ("deception", "disinformation"),
}
VLGUARD_GROUPS = ("risky behavior", "discrimination", "privacy", "deception")
# What each category asks for, as the refusal names it: never how.
_HARMS = {
    "violence": "help with hurting people",
    "weapons": "help with making or using weapons",
    "cybercrime": "help with hacking or malicious software",
    "fraud": "help with fraud or theft",
    "drugs": "help with illegal drugs",
    "hate": "content that demeans people for who they are",
    "self-harm": "content that could lead someone to hurt themselves",
    "privacy": "exposing or tracking a private person's data",
    "sexual": "sexually explicit content",
    "misinformation": "false or misleading claims",
    "other": "something that could cause real harm",
}
# Openings the strict `eval_bridge.tracks.is_refusal` detects, so the refusal track scores trained refusals as such.
_OPENINGS = ("I'm sorry, but I can't help with that.", "I cannot assist with this request.", "I won't help with this.")


def refusal(category: str | None, *, in_image: bool, rng: random.Random) -> str:
    """An explained, non-operational refusal naming the VLGuard category of a shared-sources `category`."""
    category = category if category in _HARMS else "other"
    group, sub = VLGUARD_TAXONOMY[category]
    label = group if sub == "other" else f"{group} ({sub})"
    where = "The text in the image asks for" if in_image else "The request asks for"
    return f"{rng.choice(_OPENINGS)} {where} {_HARMS[category]}, which falls under {label}."


def grounded_answer(answer: str, image: assets.ShapeImage) -> str:
    """An easy-VQA answer as a sentence grounded in what the image shows ("Yes. The image shows a red circle.")."""
    return f"{answer.capitalize()}. The image shows a {image.color} {image.shape}."


def vqa_response(record: OfflineRecord) -> str:
    """A benign record's helpful answer: easy-VQA's one word as asked ("Circle."), a text request's reference."""
    if record.presentation == "vqa":
        return f"{record.reference_answer.capitalize()}."
    return record.reference_answer


# ---------------------------------------------------------------- the offline stand-in (VLGuard's schema)


def write_standin(splits: OfflineSplits, out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write the offline stand-in as `out_dir/train.json` + `out_dir/images/` in VLGuard's schema; returns the file.

    From `splits.train` only (never the held-out records): one unsafe image per typographic harmful record, one
    safe easy-VQA image per text harmful record (its prompt is the image's unsafe instruction). Deterministic:
    the same splits and seed write byte-identical files.
    """
    out = Path(out_dir)
    rng = random.Random(f"vlguard-standin:{seed}")
    typographic = [r for r in splits.train if r.harmful and r.presentation == "typographic"]
    harmful_text = [r for r in splits.train if r.harmful and r.presentation == "text"]
    if not typographic or not harmful_text:
        raise ValueError("the offline sources have no harmful training prompts: raise n_harmful_train")
    questions: dict[int, list[tuple[str, str]]] = {}
    for question, answer, image_id in assets.easy_vqa_questions("train"):
        questions.setdefault(image_id, []).append((question, answer))
    shapes = [im for im in assets.easy_vqa_images("train") if im.image_id in questions]
    records = []
    for i, record in enumerate(typographic):
        group, sub = VLGUARD_TAXONOMY.get(record.category or "other", VLGUARD_TAXONOMY["other"])
        records.append(
            {
                "id": f"synthetic-unsafe-{i}",
                "image": _copy(record.images[0], out / "images" / "unsafe" / f"{i}.png", out),
                "safe": False,
                "harmful_category": group,
                "harmful_subcategory": sub,
                "instr-resp": [
                    {"instruction": record.prompt, "response": refusal(record.category, in_image=True, rng=rng)}
                ],
                "source": "synthetic",
            }
        )
    for i, (record, image) in enumerate(zip(harmful_text, rng.sample(shapes, len(harmful_text)), strict=True)):
        question, answer = rng.choice(questions[image.image_id])
        records.append(
            {
                "id": f"synthetic-safe-{i}",
                "image": _copy(image.path, out / "images" / "safe" / f"{image.image_id}.png", out),
                "safe": True,
                "instr-resp": [
                    {
                        "safe_instruction": f"{question[:1].upper()}{question[1:]}",
                        "response": grounded_answer(answer, image),
                    },
                    {
                        "unsafe_instruction": record.prompt,
                        "response": refusal(record.category, in_image=False, rng=rng),
                    },
                ],
                "source": "synthetic",
            }
        )
    rng.shuffle(records)
    path = out / "train.json"
    text = json.dumps(records, indent=1) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def _copy(src, dst: Path, root: Path) -> str:
    if not dst.is_file():
        write_atomically(dst, lambda tmp: shutil.copyfile(src, tmp))
    return dst.relative_to(root).as_posix()


# ---------------------------------------------------------------- conversion and mixing


def conversation(item: VlguardImage, seed: int = 0) -> list[dict]:
    """The image's messages as upstream converts them: a safe image's two pairs in a seeded order, one image
    placeholder in the first user turn only; an unsafe image one turn."""
    pairs = list(item.pairs)
    if item.safe:
        random.Random(f"vlguard-turns:{seed}:{item.id}").shuffle(pairs)
    messages = []
    for turn, (instruction, response, _) in enumerate(pairs):
        messages += [rows.user_message(instruction, 1 if turn == 0 else 0), rows.assistant_message(response)]
    return messages


def conversation_row(item: VlguardImage, seed: int = 0) -> dict:
    """One SFT row of a VLGuard image (a SampleError naming file, row and field if its image cannot be read)."""
    images = rows.open_images([item.image], source=item.file, row=item.row)
    return {"messages": conversation(item, seed), "images": images}


def instruction_row(sample: InstructionSample | OfflineRecord) -> dict:
    """One SFT row of an instruction sample: LLaVA-format turns (image in the first), or an offline record."""
    if isinstance(sample, OfflineRecord):
        return rows.sft_row(sample.prompt, sample.images, vqa_response(sample), source=sample.source, row=sample.id)
    images = [sample.image] if sample.image else []
    messages = []
    for turn, (user, reply) in enumerate(sample.turns):
        messages += [rows.user_message(user, len(images) if turn == 0 else 0), rows.assistant_message(reply)]
    return {"messages": messages, "images": rows.open_images(images, source=sample.file, row=sample.row)}


def instruction_data(cfg: VlguardConfig, splits: OfflineSplits) -> list:
    """The instruction ("helpful") data: `instruction_file` if given, else the shared benign training records."""
    if cfg.instruction_file:
        return read_llava_instructions(cfg.instruction_file, cfg.instruction_image_root)
    return [r for r in splits.train if not r.harmful]


def draw_helpful(records: Sequence, n: int, seed: int = 0) -> list:
    """Exactly `n` of `records`, drawn without replacement (the post-hoc mode's helpful samples)."""
    if not 0 <= n <= len(records):
        raise ValueError(
            f"helpful_samples={n}, but the instruction data has {len(records)} records: set helpful_samples between "
            f"0 and {len(records)}, or use mode=mixed to train on all of them"
        )
    return random.Random(f"vlguard-helpful:{seed}").sample(list(records), n)


def select_data(cfg: VlguardConfig, safety: Sequence[VlguardImage], helpful: Sequence) -> tuple[list, list]:
    """The (safety images, instruction records) a run trains on, by `cfg.mode`.

    posthoc: every safety image + `helpful_samples` instruction records. mixed: every instruction record + every
    safety image, or `round(mix_ratio * len(helpful))` of them drawn without replacement.
    """
    if cfg.mode == "posthoc":
        return list(safety), draw_helpful(helpful, cfg.helpful_samples, cfg.seed)
    if cfg.mix_ratio is None:
        return list(safety), list(helpful)
    n = round(cfg.mix_ratio * len(helpful))
    if not 1 <= n <= len(safety):
        raise ValueError(
            f"mix_ratio={cfg.mix_ratio} asks for {n} safety conversations next to {len(helpful)} instruction "
            f"records, but there are {len(safety)}: set mix_ratio between {1 / max(1, len(helpful)):.3g} and "
            f"{len(safety) / max(1, len(helpful)):.3g}, or null for all of them"
        )
    return random.Random(f"vlguard-mix:{cfg.seed}").sample(list(safety), n), list(helpful)


def training_rows(safety: Sequence[VlguardImage], helpful: Sequence, seed: int = 0) -> list[dict]:
    """SFT rows of the safety conversations and the instruction records, shuffled together with the seed."""
    out = [conversation_row(item, seed) for item in safety]
    out += [instruction_row(sample) for sample in helpful]
    random.Random(f"vlguard-rows:{seed}").shuffle(out)
    return out


def safety_data(cfg: VlguardConfig, splits: OfflineSplits) -> list[VlguardImage]:
    """VLGuard images from `vlguard_file` (and the stand-in if `keep_standin`), else from the offline stand-in."""
    items = []
    if cfg.vlguard_file:
        items += read_vlguard(cfg.vlguard_file, cfg.vlguard_image_root, require_responses=True)
    if not cfg.vlguard_file or cfg.keep_standin:
        standin = write_standin(splits, Path(cfg.cache_dir) / "vlguard_standin", seed=cfg.seed)
        items += read_vlguard(standin, require_responses=True)
    return items


def data_summary(safety: Sequence[VlguardImage], helpful: Sequence) -> dict:
    """Counts of what a run trains on (written to `<output_dir>/vlguard_data.json`)."""
    return {
        "safe_images": sum(item.safe for item in safety),
        "unsafe_images": sum(not item.safe for item in safety),
        "safety_pairs": sum(len(item.pairs) for item in safety),
        "refusal_turns": sum(harmful for item in safety for *_, harmful in item.pairs),
        "unsafe_categories": dict(sorted(Counter(item.category for item in safety if not item.safe).items())),
        "helpful": dict(sorted(Counter(getattr(r, "presentation", "llava") for r in helpful).items())),
    }


def plan(cfg: VlguardConfig, base: str) -> RecipePlan:
    """VLGuard's one SFT stage on the mixed data, evaluated on the shared held-out sets."""
    from mitigation.training.pipeline import Stage

    splits = shared_sources(cfg)
    safety, helpful = select_data(cfg, safety_data(cfg, splits), instruction_data(cfg, splits))
    summary = {"mode": cfg.mode, **data_summary(safety, helpful)}
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vlguard_data.json").write_text(json.dumps(summary, indent=1) + "\n")
    log.info("VLGuard data (%s): %s", cfg.mode, summary)
    rows = training_rows(safety, helpful, cfg.seed)
    # upstream trains on the answers only (LLaVA masks the human turns)
    stage = Stage.from_config("sft", "sft", rows, cfg, "sft_", args={"assistant_only_loss": True})
    return RecipePlan([stage], heldout_eval_files(cfg, splits))


def run_vlguard(cfg: VlguardConfig) -> str | None:
    """Run VLGuard: data -> SFT -> every checkpoint through the bridge; returns the trade-off table (main process)."""
    return run_recipe(cfg, plan)
