"""Preference pairs of the `hallucination_dpo` method (METHODS.md 4): one loader for the public formats, and the
offline stand-in, which writes the same schema and is read back through the same loader.

- mDPO (HF `fwnlp/mDPO-preference-data`, e.g. `vlfeedback_llava_10k.json`): a JSON list of {img_path, prompt,
  chosen, rejected}; `prompt` may hold the `<image>` placeholder and a chat template (LLaVA's `USER: ...
  ASSISTANT:` or ChatML's `<|im_start|>user ... <|im_end|>`), from which the user's text is taken.
- RLAIF-V (HF `openbmb/RLAIF-V-Dataset`): Parquet (or JSON / JSONL) with columns image, question, chosen, rejected
  (and ds_name, origin_dataset, origin_split, idx, image_path, kept as the record's labels); `image` is a path or
  an HF image struct {bytes, path} (bytes are written out under `image_dir`).
- Offline (project design): easy-VQA TRAINING records of the shared sources (never the held-out test split): chosen
  = the right answer + a grounded description ("Red. The image shows a red circle."), rejected = the same sentence
  with one shape or colour swapped ("Blue. The image shows a blue circle."): a hallucination that is a minimal
  edit, so the pair also serves DDPO. Written in mDPO's schema with `"source": "synthetic"`.

Every problem raises `SampleError` naming the file, the row and the field.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval_bridge.data.assets import COLORS, SHAPES
from eval_bridge.data.mini_tracks import ONE_WORD
from eval_bridge.files import write_atomically
from eval_bridge.samples import SampleError
from mitigation.data.loaders import _check_object, _image, _read_rows, _spavl_image, _text
from mitigation.data.rows import dpo_row

MDPO_FIELDS = ("img_path", "prompt", "chosen", "rejected")
RLAIFV_FIELDS = ("image", "question", "chosen", "rejected")
RLAIFV_LABELS = ("ds_name", "origin_dataset", "origin_split", "idx")
OFFLINE_FILE = "hallucination_pairs.json"

_CHAT_USER = (
    re.compile(r"USER:(.*?)(?:ASSISTANT:|$)", re.S),  # LLaVA-1.5's template
    re.compile(r"<\|im_start\|>user(.*?)(?:<\|im_end\|>|$)", re.S),  # ChatML (Bunny, Qwen)
)


@dataclass(frozen=True)
class PreferencePair:
    """One image preference pair: the question about `image`, the preferred and the dispreferred response.

    `source` is its provenance ("synthetic" for the offline stand-in, else the file's own or "mdpo" / "rlaif-v");
    `file` and `row` say where it was read, for errors; `labels` keep RLAIF-V's ds_name, origin_* and idx."""

    id: str
    prompt: str
    image: str
    chosen: str
    rejected: str
    source: str
    file: str
    row: int
    labels: tuple[str, ...] = ()


# ---------------------------------------------------------------- the loader


def load_preference_pairs(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None, *, image_dir: str | os.PathLike | None = None
) -> list[PreferencePair]:
    """mDPO or RLAIF-V pairs from `path` (.json, .jsonl or .parquet), the schema told apart row by row.

    Args:
        image_root: the folder image paths are relative to (default: the file's folder); paths may not leave it.
        image_dir: where images embedded as bytes (RLAIF-V Parquet) are written.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    source = str(path)
    pairs = []
    for index, raw in _rows(path):
        row = _check_object(raw, source, index)
        if "img_path" in row:  # mDPO
            missing = [f for f in MDPO_FIELDS if f not in row]
            image_field, image_ref, prompt = "img_path", row.get("img_path"), _question(row, "prompt", source, index)
            labels: tuple[str, ...] = ()
        elif "question" in row:  # RLAIF-V
            missing = [f for f in RLAIFV_FIELDS if f not in row]
            image_field, image_ref, prompt = "image", row.get("image"), _question(row, "question", source, index)
            labels = tuple(str(row[k]) for k in RLAIFV_LABELS if row.get(k) is not None)
        else:
            raise SampleError(
                f"not a preference pair: expected mDPO's fields {', '.join(MDPO_FIELDS)} or RLAIF-V's "
                f"{', '.join(RLAIFV_FIELDS)}; found {', '.join(sorted(map(str, row))) or 'none'}",
                source=source,
                row=index,
            )
        if missing:
            raise SampleError("missing field", source=source, row=index, field=missing[0])
        if isinstance(image_ref, Mapping):  # an HF image struct {bytes, path}
            image = _spavl_image(image_ref, root, image_dir, source=source, index=index)
        else:
            image = _image(image_ref, root, source=source, index=index, field=image_field)
        pairs.append(
            PreferencePair(
                id=str(row.get("id") or row.get("idx") or f"{path.stem}-{index}"),
                prompt=prompt,
                image=image,
                chosen=row.get("chosen"),
                rejected=row.get("rejected"),
                source=str(row.get("source") or ("mdpo" if image_field == "img_path" else "rlaif-v")),
                file=source,
                row=index,
                labels=labels,
            )
        )
    if not pairs:
        raise SampleError("no preference pairs in the file", source=source)
    return pairs


def _rows(path: Path) -> Iterable[tuple[int, Any]]:
    if path.suffix != ".parquet":
        return _read_rows(path)
    import pandas as pd

    if not path.is_file():
        raise SampleError(f"file not found: {path}")
    return enumerate(pd.read_parquet(path).to_dict(orient="records"))


def _question(row: Mapping, key: str, source: str, index: int) -> str:
    """The user's text: `<image>` placeholders dropped, a chat template's user turn taken out of it."""
    text = _text(row, key, source=source, index=index)
    for pattern in _CHAT_USER:
        if match := pattern.search(text):
            text = match.group(1)
            break
    text = " ".join(text.replace("<image>", " ").split())
    if not text:
        raise SampleError("no question left once <image> and the chat template are removed", source=source, row=index)
    return text


def pair_rows(pairs: Sequence[PreferencePair]) -> list[dict]:
    """TRL's conversational preference rows (one image each), via `mitigation.data.rows.dpo_row`."""
    return [dpo_row(p.prompt, [p.image], p.chosen, p.rejected, source=p.file, row=p.row) for p in pairs]


# ---------------------------------------------------------------- the offline stand-in


def grounded_pair(question: str, answer: str, color: str, shape: str, rng: random.Random) -> tuple[str, str]:
    """(chosen, rejected) for an easy-VQA question about a `color` `shape`: the right answer with the image's
    description, and the same sentence with the attribute the question is about swapped (a minimal edit)."""
    words = question.lower().rstrip("?").split()
    named_shape = next((w for w in reversed(words) if w in SHAPES), None)
    named_color = next((w for w in reversed(words) if w in COLORS), None)
    answer = answer.lower()
    wrong_color, wrong_shape = color, shape
    if answer in COLORS:
        wrong_answer = wrong_color = rng.choice([c for c in COLORS if c != color])
    elif answer in SHAPES:
        wrong_answer = wrong_shape = rng.choice([s for s in SHAPES if s != shape])
    elif answer in ("yes", "no"):
        wrong_answer = "no" if answer == "yes" else "yes"
        # The hallucination claims what the question names if the image lacks it, and something else if it has it.
        if named_shape or not named_color:
            asked = named_shape or shape
            wrong_shape = asked if asked != shape else rng.choice([s for s in SHAPES if s != shape])
        else:
            wrong_color = named_color if named_color != color else rng.choice([c for c in COLORS if c != color])
    else:
        raise ValueError(f"easy-VQA answer {answer!r} is not a colour, a shape, yes or no")
    return _sentence(answer, color, shape), _sentence(wrong_answer, wrong_color, wrong_shape)


def _sentence(answer: str, color: str, shape: str) -> str:
    return f"{answer.capitalize()}. The image shows a {color} {shape}."


def offline_pair_records(train_records: Sequence, n: int, *, seed: int = 0) -> list[dict]:
    """mDPO-schema records (image paths as given) from the first `n` easy-VQA training records of the shared
    sources (`OfflineRecord`s with presentation "vqa", a reference answer and "a <colour> <shape>" description)."""
    vqa = [r for r in train_records if r.presentation == "vqa" and r.reference_answer and r.image_description]
    if any(r.source.endswith("-test") for r in vqa):
        raise ValueError("offline pairs must come from easy-VQA training images, not the held-out test split")
    if n > len(vqa):
        raise ValueError(f"asked for {n} offline pairs, the shared sources hold {len(vqa)} easy-VQA training records")
    rng = random.Random(f"hallucination-dpo:{seed}")
    out = []
    for record in vqa[:n]:
        _, color, shape = record.image_description.split()
        question = record.prompt.removesuffix(ONE_WORD)  # the chosen answer is a sentence, not one word
        chosen, rejected = grounded_pair(question, record.reference_answer, color, shape, rng)
        out.append(
            {
                "id": record.id,
                "img_path": record.images[0],
                "prompt": f"<image>\n{question}",
                "chosen": chosen,
                "rejected": rejected,
                "source": "synthetic",
            }
        )
    return out


def write_offline_pairs(train_records: Sequence, out_dir: str | os.PathLike, n: int, *, seed: int = 0) -> Path:
    """Write `offline_pair_records` as `<out_dir>/hallucination_pairs.json`, the images copied to `<out_dir>/images`
    and named relative to the file (as mDPO's release does); identical bytes for the same records and seed."""
    out = Path(out_dir)
    records = offline_pair_records(train_records, n, seed=seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for record in records:
        src = Path(record["img_path"])
        dst = out / "images" / src.name
        if not dst.is_file():
            shutil.copyfile(src, dst)
        record["img_path"] = f"images/{src.name}"
    path = out / OFFLINE_FILE
    text = json.dumps(records, indent=1) + "\n"
    if not path.is_file() or path.read_text() != text:
        write_atomically(path, lambda tmp: Path(tmp).write_text(text))
    return path
