"""Loaders of users' safety data in common public formats into neutral `SafetyRecord`s (METHODS.md section 4).

- VLGuard (`ys-zong/VLGuard`, `train.json` / `test.json`): a JSON list of {id, image, safe, harmful_category,
  harmful_subcategory, instr-resp}. An unsafe image gives one harmful record ({instruction, response}); a safe
  image gives a benign record ({safe_instruction, response}: the response is required) and a harmful one
  ({unsafe_instruction, response}). Instruction keys are looked up by name, never by dict order.
  `read_vlguard` gives the same data image by image (`VlguardImage`: both pairs of a safe image together).
- LLaVA instruction data (`llava_v1_5_mix665k.json` style, VLGuard's helpful mix): {id, image?, conversations:
  [{from: human|gpt, value}]} with `<image>` in the first human turn, as `InstructionSample`s.
- SPA-VL (`sqrti/SPA-VL`): Parquet (columns image, question, chosen, rejected, class1..3; `image` is a path or
  an HF image struct {bytes, path}) or the JSON/JSONL training files with an image path. SPA-VL's training
  questions are all built from its harm taxonomy, so records are harmful by default; its `test` config has a
  `harm` and a `help` split: load `help` with `harmful=False` (chosen is then required and is also the
  reference response). chosen and rejected are kept on every record; `require_pair=True` (safety_dpo, which
  trains on them) makes both required and different on every row. class1..3 are the category, subcategory and
  `source_labels`. A row without the SPA-VL fields (another format's file) is an error naming them.
- JailBreakV-28K: CSV with columns id, jailbreak_query, redteam_query, format, policy, image_path (and `from`,
  `selected_mini`, `transfer_from_llm`). All rows are harmful; the request is `jailbreak_query` by default (or
  `redteam_query`), the red-team query is kept as `base_request`, the category is `policy`. FigStep rows are
  typographic; LLM-transfer rows (Template, Persuade, Logic) carry unrelated images; the rest "image".
- STAIR-SFT style (`thu-ml/STAIR-SFT`): JSON/JSONL rows with a prompt (`prompt`, `instruction`, `question` or
  `query`; alpaca `input` appended) and a structured CoT response (`response`, `output`, `answer` or
  `chosen`) made of `<|Reasoning_step|> Title: ...: ... <|/Reasoning_step|>` blocks and `<|Output|> Final
  Answer: ... <|/Output|>` (`split_stair_response`). Text-only; the response is kept as written. The label is
  the row's `type`/`label` field if present ("safety"/"harmful"), otherwise whether the final answer is a
  refusal.

Every problem raises `eval_bridge.samples.SampleError` naming the file, the row and the field. Image paths are
resolved under a data root (`resolve_under_root`, default the data file's folder) and must exist.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval_bridge.samples import SampleError, read_records, resolve_under_root
from eval_bridge.tracks import is_refusal
from mitigation.data.records import SafetyRecord


def _text(row: Mapping, key: str, *, source: str, index: int, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SampleError(f"expected a non-empty string, got {value!r}", source=source, row=index, field=key)
    return value.strip()


def _optional(value: Any) -> str | None:
    """A response a record may lack: the stripped string, or None when absent or blank."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def _image(ref: Any, data_root, *, source: str, index: int, field: str) -> str:
    if not isinstance(ref, str) or not ref:
        raise SampleError(f"expected an image path, got {ref!r}", source=source, row=index, field=field)
    try:
        path = resolve_under_root(ref, data_root)
    except SampleError as err:
        raise SampleError(str(err), source=source, row=index, field=field) from None
    if not path.is_file():
        raise SampleError(
            f"image file not found: {path}; fix the path or the data root", source=source, row=index, field=field
        )
    return str(path)


def _read_rows(path: Path) -> Iterable[tuple[int, Any]]:
    """(row index, record) from a JSON list (0-based) or JSONL file (1-based line numbers)."""
    if not path.is_file():
        raise SampleError(f"file not found: {path}")
    return read_records(path, not_a_list="expected a JSON list of records")


def _check_object(row: Any, source: str, index: int) -> Mapping:
    if not isinstance(row, Mapping):
        raise SampleError(f"expected a JSON object, got {type(row).__name__}", source=source, row=index)
    return row


# ---------------------------------------------------------------- VLGuard


@dataclass(frozen=True)
class VlguardImage:
    """One VLGuard image with its instruction-response pairs, as the file gives them (validated).

    Attributes:
        id: the record's `id` (its row index if it has none).
        image: the resolved image path.
        safe: the file's `safe` label.
        category, subcategory: `harmful_category` / `harmful_subcategory` (unsafe images; None if absent).
        pairs: ((instruction, response or None, harmful), ...), looked up by key name: an unsafe image's one
            `instruction`; a safe image's `safe_instruction` (harmful False), then `unsafe_instruction` (True).
        file: the data file's path; row: the record's index in it (for errors naming file and row).
    """

    id: str
    image: str
    safe: bool
    category: str | None
    subcategory: str | None
    pairs: tuple[tuple[str, str | None, bool], ...]
    file: str
    row: int


def read_vlguard(
    path: str | os.PathLike, data_root: str | os.PathLike | None = None, *, require_responses: bool = False
) -> list[VlguardImage]:
    """VLGuard `train.json`/`test.json` image by image (images under `data_root`, default the file's folder).

    `require_responses`: every pair must carry a non-empty response (training data); otherwise only a safe
    instruction's response is required (it is the reference answer).
    """
    path = Path(path)
    root = Path(data_root) if data_root is not None else path.parent
    source, images = str(path), []
    for index, raw in _read_rows(path):
        row = _check_object(raw, source, index)
        image = _image(row.get("image"), root, source=source, index=index, field="image")
        safe = row.get("safe")
        if not isinstance(safe, bool):
            raise SampleError(f"expected true or false, got {safe!r}", source=source, row=index, field="safe")
        pairs = row.get("instr-resp")
        if not isinstance(pairs, list) or not pairs or not all(isinstance(p, Mapping) for p in pairs):
            raise SampleError(
                "expected a non-empty list of {instruction, response} objects",
                source=source,
                row=index,
                field="instr-resp",
            )
        keys = (("instruction", True),) if not safe else (("safe_instruction", False), ("unsafe_instruction", True))
        found = [
            (*_find(pairs, key, source, index, with_response=require_responses or not harmful), harmful)
            for key, harmful in keys
        ]
        category, sub = row.get("harmful_category"), row.get("harmful_subcategory")
        images.append(
            VlguardImage(
                str(row.get("id", index)),
                image,
                safe,
                str(category) if category else None,
                str(sub) if sub else None,
                tuple(found),
                source,
                index,
            )
        )
    return images


def load_vlguard(path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> list[SafetyRecord]:
    """VLGuard `train.json`/`test.json` as records (images resolved under `data_root`, default the file's folder)."""
    records = []
    for item in read_vlguard(path, data_root):
        where = f"vlguard:{Path(item.file).name}:{item.row}"
        if not item.safe:
            ((instruction, response, _),) = item.pairs
            labels = tuple(x for x in (item.category, item.subcategory) if x)
            records.append(
                SafetyRecord(
                    f"vlguard-{item.id}",
                    instruction,
                    (item.image,),
                    harmful=True,
                    category=item.category,
                    subcategory=item.subcategory,
                    response=response,
                    presentation="image",
                    source=where,
                    source_labels=labels,
                )
            )
            continue
        (safe_instr, safe_resp, _), (unsafe_instr, unsafe_resp, _) = item.pairs
        records.append(
            SafetyRecord(
                f"vlguard-{item.id}-safe", safe_instr, (item.image,), harmful=False, response=safe_resp, source=where
            )
        )
        records.append(
            SafetyRecord(
                f"vlguard-{item.id}-unsafe",
                unsafe_instr,
                (item.image,),
                harmful=True,
                response=unsafe_resp,
                source=where,
            )
        )
    return records


def _find(pairs: list, key: str, source: str, index: int, *, with_response: bool = False) -> tuple[str, str | None]:
    """(instruction under `key`, its response) from VLGuard's instr-resp list; the response required if asked."""
    for i, pair in enumerate(pairs):
        if key in pair:
            text = _text(pair, key, source=source, index=index)
            response = _optional(pair.get("response"))
            if with_response and response is None:
                raise SampleError(
                    "expected a non-empty response", source=source, row=index, field=f"instr-resp[{i}].response"
                )
            return text, response
    raise SampleError(f"no entry with the key {key!r}", source=source, row=index, field="instr-resp")


# ---------------------------------------------------------------- LLaVA instruction data

_LLAVA_ROLES = ("human", "gpt")
_IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class InstructionSample:
    """One instruction-tuning sample in LLaVA's format: an optional image and its (user, assistant) turns.

    The `<image>` token is taken out of the text; the image belongs before the first user turn's text.
    """

    id: str
    image: str | None
    turns: tuple[tuple[str, str], ...]
    file: str
    row: int


def read_llava_instructions(
    path: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> list[InstructionSample]:
    """LLaVA instruction data (`llava_v1_5_mix665k.json` style: {id, image?, conversations: [{from, value}]},
    human and gpt turns alternating, `<image>` once in the first human turn) as samples."""
    path = Path(path)
    root = Path(data_root) if data_root is not None else path.parent
    source, samples = str(path), []
    for index, raw in _read_rows(path):
        row = _check_object(raw, source, index)
        image = row.get("image")
        image = None if image is None else _image(image, root, source=source, index=index, field="image")
        turns = row.get("conversations")
        if not isinstance(turns, list) or not turns or len(turns) % 2:
            raise SampleError(
                "expected a non-empty list of alternating human / gpt turns", source=source, row=index,
                field="conversations",
            )  # fmt: skip
        texts = []
        for i, turn in enumerate(turns):
            where = f"conversations[{i}]"
            if not isinstance(turn, Mapping) or turn.get("from") != _LLAVA_ROLES[i % 2]:
                got = turn.get("from") if isinstance(turn, Mapping) else turn
                raise SampleError(
                    f"expected from={_LLAVA_ROLES[i % 2]!r} (turns alternate, human first), got {got!r}",
                    source=source,
                    row=index,
                    field=f"{where}.from",
                )
            text = turn.get("value")
            if not isinstance(text, str) or not text.strip():
                raise SampleError(
                    f"expected a non-empty string, got {text!r}", source=source, row=index, field=f"{where}.value"
                )
            if _IMAGE_TOKEN in text and (i != 0 or image is None or text.count(_IMAGE_TOKEN) > 1):
                raise SampleError(
                    "<image> may appear once, in the first human turn of a record with an image",
                    source=source,
                    row=index,
                    field=f"{where}.value",
                )
            texts.append(text.replace(_IMAGE_TOKEN, "").strip())
        pairs = tuple(zip(texts[::2], texts[1::2], strict=True))
        samples.append(InstructionSample(str(row.get("id", index)), image, pairs, source, index))
    return samples


# ---------------------------------------------------------------- SPA-VL


def load_spavl(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    harmful: bool = True,
    image_dir: str | os.PathLike | None = None,
    require_pair: bool = False,
    allow_text_only: bool = False,
) -> list[SafetyRecord]:
    """SPA-VL Parquet or JSON/JSONL rows as records, with their chosen and rejected responses.

    Args:
        harmful: the label of every row (SPA-VL train and test `harm`: True; test `help`: False).
        image_dir: where embedded image bytes (Parquet image structs) are written; required if there are any.
        require_pair: every row must hold a preference pair (safety_dpo trains on it): chosen and rejected
            non-empty and different.
        allow_text_only: a null `image` makes a text-only record (the offline stand-in's text presentation);
            real SPA-VL rows always have an image.
    """
    path = Path(path)
    root = Path(data_root) if data_root is not None else path.parent
    source = str(path)
    if path.suffix == ".parquet":
        import pandas as pd

        if not path.is_file():
            raise SampleError(f"file not found: {path}")
        rows: Iterable[tuple[int, Any]] = enumerate(pd.read_parquet(path).to_dict(orient="records"))
    else:
        rows = _read_rows(path)
    records = []
    for index, raw in rows:
        row = _check_object(raw, source, index)
        _check_spavl_columns(row, source, index, require_pair=require_pair)
        question = _text(row, "question", source=source, index=index)
        text_only = allow_text_only and row.get("image") is None
        images = () if text_only else (_spavl_image(row.get("image"), root, image_dir, source=source, index=index),)
        labels = tuple(str(row[k]).strip() for k in ("class1", "class2", "class3") if row.get(k))
        # The help split's chosen answer is its reference answer, so it must be there.
        needs_chosen = require_pair or not harmful
        chosen = _text(row, "chosen", source=source, index=index) if needs_chosen else _optional(row.get("chosen"))
        rejected = (
            _text(row, "rejected", source=source, index=index) if require_pair else _optional(row.get("rejected"))
        )
        if require_pair and " ".join(chosen.split()) == " ".join(rejected.split()):
            raise SampleError(
                "chosen and rejected are the same response: a preference pair must prefer one answer over another; "
                "fix or drop the row",
                source=source,
                row=index,
                field="rejected",
            )
        records.append(
            SafetyRecord(
                f"spavl-{path.stem}-{index}",
                question,
                images,
                harmful=harmful,
                category=_optional(row.get("class1")),
                subcategory=_optional(row.get("class2")),
                response=None if harmful else chosen,
                chosen=chosen,
                rejected=rejected,
                presentation="text" if text_only else "image",
                source=f"spavl:{path.name}:{index}",
                source_labels=labels,
            )
        )
    return records


_SPAVL_COLUMNS = ("image", "question", "chosen", "rejected", "class1", "class2", "class3")


def _check_spavl_columns(row: Mapping, source: str, index: int, *, require_pair: bool) -> None:
    """A row of another format (a VLGuard record, a chat row) fails here, naming what an SPA-VL row holds."""
    needed = ("image", "question", "chosen", "rejected") if require_pair else ("image", "question")
    missing = [key for key in needed if key not in row]
    if missing:
        raise SampleError(
            f"not an SPA-VL row: no {', '.join(repr(k) for k in missing)}; SPA-VL rows have the fields "
            f"{', '.join(_SPAVL_COLUMNS)} (found: {', '.join(map(str, row)) or 'none'})",
            source=source,
            row=index,
            field=missing[0],
        )


def _spavl_image(value: Any, root, image_dir, *, source: str, index: int) -> str:
    if isinstance(value, Mapping):  # an HF image struct
        data, ref = value.get("bytes"), value.get("path")
        if data:
            if image_dir is None:
                raise SampleError(
                    "the image is embedded as bytes; pass image_dir to write it out",
                    source=source,
                    row=index,
                    field="image",
                )
            out = Path(image_dir) / f"{hashlib.sha1(bytes(data)).hexdigest()[:16]}.png"
            if not out.is_file():
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(bytes(data))
            return str(out)
        value = ref
    return _image(value, root, source=source, index=index, field="image")


# ---------------------------------------------------------------- JailBreakV-28K

_JAILBREAKV_COLUMNS = ("jailbreak_query", "redteam_query", "format", "policy", "image_path")
_UNRELATED_IMAGE_FORMATS = ("template", "persuade", "logic")  # LLM-transfer attacks: the image is incidental


def load_jailbreakv(
    path: str | os.PathLike, data_root: str | os.PathLike | None = None, *, query: str = "jailbreak_query"
) -> list[SafetyRecord]:
    """JailBreakV-28K CSV rows as harmful records (request from the `query` column)."""
    if query not in ("jailbreak_query", "redteam_query"):
        raise ValueError(f"query must be 'jailbreak_query' or 'redteam_query', got {query!r}")
    path = Path(path)
    if not path.is_file():
        raise SampleError(f"file not found: {path}")
    root = Path(data_root) if data_root is not None else path.parent
    source, records = str(path), []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _JAILBREAKV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SampleError(
                f"missing columns {missing}; expected {list(_JAILBREAKV_COLUMNS)}",
                source=source,
                row=1,
                field=missing[0],
            )
        for lineno, row in enumerate(reader, start=2):  # row = line number in the file (header is line 1)
            prompt = _text(row, query, source=source, index=lineno)
            redteam = _text(row, "redteam_query", source=source, index=lineno)
            image = _image(row.get("image_path"), root, source=source, index=lineno, field="image_path")
            fmt, policy = (row.get("format") or "").strip(), (row.get("policy") or "").strip()
            low = fmt.lower()
            presentation = (
                "typographic" if low == "figstep" else "unrelated_image" if low in _UNRELATED_IMAGE_FORMATS else "image"
            )
            records.append(
                SafetyRecord(
                    f"jailbreakv-{row.get('id') or lineno}",
                    prompt,
                    (image,),
                    harmful=True,
                    category=policy or None,
                    presentation=presentation,
                    base_request=redteam,
                    source=f"jailbreakv:{path.name}:{lineno}",
                    source_labels=tuple(x for x in (policy, fmt) if x),
                )
            )
    return records


# ---------------------------------------------------------------- STAIR-SFT

_PROMPT_KEYS = ("prompt", "instruction", "question", "query")
_RESPONSE_KEYS = ("response", "output", "answer", "chosen")
_STEP = re.compile(r"<\|Reasoning_step\|>(.*?)<\|/Reasoning_step\|>", re.S)
_OUTPUT = re.compile(r"<\|Output\|>(.*?)<\|/Output\|>", re.S)
_HARMFUL_LABELS = ("safety", "harmful", "unsafe")
_BENIGN_LABELS = ("helpfulness", "benign", "safe", "helpful")


def split_stair_response(text: str) -> tuple[list[tuple[str | None, str]], str] | None:
    """A STAIR structured response as ([(step title or None, step body)], final answer); None if malformed.

    Malformed: no reasoning step, no output block, or an empty final answer.
    """
    steps = []
    for step in (s.strip() for s in _STEP.findall(text)):
        match = re.match(r"Title:\s*(.+?):?\s*\n(.*)", step, re.S)
        steps.append((match.group(1).strip().rstrip(":"), match.group(2).strip()) if match else (None, step))
    output = _OUTPUT.search(text)
    if not steps or not output:
        return None
    answer = re.sub(r"^\s*Final Answer:\s*", "", output.group(1).strip())
    return (steps, answer) if answer else None


def load_stair_sft(path: str | os.PathLike) -> list[SafetyRecord]:
    """STAIR-SFT-style rows as text-only records; `response` is the structured response as written."""
    path = Path(path)
    source, records = str(path), []
    for index, raw in _read_rows(path):
        row = _check_object(raw, source, index)
        prompt_key = next((k for k in _PROMPT_KEYS if k in row), _PROMPT_KEYS[0])
        prompt = _text(row, prompt_key, source=source, index=index)
        extra = row.get("input")
        if isinstance(extra, str) and extra.strip():
            prompt = f"{prompt}\n{extra.strip()}"
        response_key = next((k for k in _RESPONSE_KEYS if k in row), _RESPONSE_KEYS[0])
        response = _text(row, response_key, source=source, index=index)
        parts = split_stair_response(response)
        if parts is None:
            raise SampleError(
                "expected <|Reasoning_step|> blocks and an <|Output|> block",
                source=source,
                row=index,
                field=response_key,
            )
        records.append(
            SafetyRecord(
                f"stair-{row.get('id', index)}",
                prompt,
                (),
                harmful=_stair_label(row, parts[1], source, index),
                response=response,
                presentation="text",
                source=f"stair:{path.name}:{index}",
            )
        )
    return records


def _stair_label(row: Mapping, answer: str, source: str, index: int) -> bool:
    """The row's `type`/`label` as a harm label; without one, whether the final answer refuses."""
    label = row.get("type", row.get("label"))
    if label is None:
        return is_refusal(answer)
    if isinstance(label, bool):
        return label
    if str(label).lower() in _HARMFUL_LABELS:
        return True
    if str(label).lower() in _BENIGN_LABELS:
        return False
    raise SampleError(
        f"unknown label {label!r}; use safety/harmful or helpfulness/benign",
        source=source,
        row=index,
        field="type" if "type" in row else "label",
    )
