"""Loaders of users' safety data in common public formats into `ResaRecord`s (METHODS.md sections 3.1, 4, 5).

- VLGuard (`ys-zong/VLGuard`, `train.json` / `test.json`): a JSON list of {id, image, safe, harmful_category,
  harmful_subcategory, instr-resp}. An unsafe image gives one harmful record ({instruction, response}); a safe
  image gives a benign record ({safe_instruction, response}: the response becomes the reference answer) and a
  harmful one ({unsafe_instruction, response}). Instruction keys are looked up by name, never by dict order.
- SPA-VL (`sqrti/SPA-VL`): Parquet (columns image, question, chosen, rejected, class1..3; `image` is a path or
  an HF image struct {bytes, path}) or the JSON/JSONL training files with an image path. SPA-VL's training
  questions are all built from its harm taxonomy, so records are harmful by default; its `test` config has a
  `harm` and a `help` split: load `help` with `harmful=False` (chosen becomes the reference answer). class1..3
  are kept in `source_labels` and mapped onto RESA's categories.
- JailBreakV-28K: CSV with columns id, jailbreak_query, redteam_query, format, policy, image_path (and `from`,
  `selected_mini`, `transfer_from_llm`). All rows are harmful; the prompt is `jailbreak_query` by default (or
  `redteam_query`); the category comes from the red-team query and `policy`. FigStep rows are typographic;
  LLM-transfer rows (Template, Persuade, Logic) carry unrelated images; the rest (query-relevant) "image".
- STAIR-SFT style (`thu-ml/STAIR-SFT`): JSON/JSONL rows with a prompt (`prompt`, `instruction`, `question` or
  `query`; alpaca `input` appended) and a structured CoT response (`response`, `output`, `answer` or
  `chosen`) made of `<|Reasoning_step|> Title: ...: ... <|/Reasoning_step|>` blocks and `<|Output|> Final
  Answer: ... <|/Output|>`. Text-only. Returns records and their traces converted to the RESA format (the step
  titles stay STAIR's own). The label is the row's `type`/`label` field if present ("safety"/"harmful"),
  otherwise whether the final answer is a refusal.

Every problem raises `eval_bridge.samples.SampleError` naming the file, the row and the field. Image paths are
resolved under a data root (`resolve_under_root`) and must exist.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from eval_bridge.reasoning import DEFAULT_FORMAT, ReasoningFormat
from eval_bridge.samples import SampleError, resolve_under_root
from eval_bridge.tracks import is_refusal
from resa.data import ResaRecord, categorize

_VLGUARD_SUBCATEGORY = {
    "violence": "violence",
    "sexually explicit": "sexual",
    "political": "misinformation",
    "professional advice": "other",
    "race": "hate",
    "sex": "hate",
    "other": "hate",  # under "discrimination"
    "personal data": "privacy",
    "disinformation": "misinformation",
}
_VLGUARD_CATEGORY = {
    "risky behavior": "other",
    "discrimination": "hate",
    "privacy": "privacy",
    "deception": "misinformation",
}


def _text(row: Mapping, key: str, *, source: str, index: int, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SampleError(f"expected a non-empty string, got {value!r}", source=source, row=index, field=key)
    return value.strip()


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
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as err:
                    raise SampleError(f"invalid JSON ({err.msg})", source=str(path), row=lineno) from None
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SampleError(f"invalid JSON ({err.msg} at line {err.lineno})", source=str(path)) from None
    if not isinstance(data, list):
        raise SampleError("expected a JSON list of records", source=str(path))
    yield from enumerate(data)


def _check_object(row: Any, source: str, index: int) -> Mapping:
    if not isinstance(row, Mapping):
        raise SampleError(f"expected a JSON object, got {type(row).__name__}", source=source, row=index)
    return row


# ---------------------------------------------------------------- VLGuard


def load_vlguard(path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> list[ResaRecord]:
    """VLGuard `train.json`/`test.json` as records (images resolved under `data_root`, default the file's folder)."""
    path = Path(path)
    root = Path(data_root) if data_root is not None else path.parent
    source, records = str(path), []
    for index, raw in _read_rows(path):
        row = _check_object(raw, source, index)
        rid = str(row.get("id", index))
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
        where = f"vlguard:{path.name}:{index}"
        if not safe:
            instruction = _find(pairs, "instruction", source, index)
            category, sub = row.get("harmful_category"), row.get("harmful_subcategory")
            labels = tuple(str(x) for x in (category, sub) if x)
            mapped = (
                (_VLGUARD_SUBCATEGORY.get(str(sub).lower()) if sub else None)
                or _VLGUARD_CATEGORY.get(str(category).lower())
                or categorize(instruction)
            )
            if mapped == "other":
                mapped = categorize(instruction, "other")
            records.append(
                ResaRecord(
                    f"vlguard-{rid}",
                    instruction,
                    (image,),
                    harmful=True,
                    category=mapped,
                    presentation="image",
                    source=where,
                    source_labels=labels,
                )
            )
            continue
        safe_instr, safe_resp = _find(pairs, "safe_instruction", source, index, with_response=True)
        unsafe_instr = _find(pairs, "unsafe_instruction", source, index)
        records.append(
            ResaRecord(
                f"vlguard-{rid}-safe",
                safe_instr,
                (image,),
                harmful=False,
                category=None,
                presentation="vqa",
                reference_answer=safe_resp,
                source=where,
            )
        )
        records.append(
            ResaRecord(
                f"vlguard-{rid}-unsafe",
                unsafe_instr,
                (image,),
                harmful=True,
                category=categorize(unsafe_instr),
                presentation="image",
                source=where,
            )
        )
    return records


def _find(pairs: list, key: str, source: str, index: int, *, with_response: bool = False):
    for i, pair in enumerate(pairs):
        if key in pair:
            text = _text(pair, key, source=source, index=index)
            if not with_response:
                return text
            response = pair.get("response")
            if not isinstance(response, str) or not response.strip():
                raise SampleError(
                    "expected a non-empty response", source=source, row=index, field=f"instr-resp[{i}].response"
                )
            return text, response.strip()
    raise SampleError(f"no entry with the key {key!r}", source=source, row=index, field="instr-resp")


# ---------------------------------------------------------------- SPA-VL


def load_spavl(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    harmful: bool = True,
    image_dir: str | os.PathLike | None = None,
) -> list[ResaRecord]:
    """SPA-VL Parquet or JSON/JSONL rows as records.

    Args:
        harmful: the label of every row (SPA-VL train and test `harm`: True; test `help`: False).
        image_dir: where embedded image bytes (Parquet image structs) are written; required if there are any.
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
        question = _text(row, "question", source=source, index=index)
        image = _spavl_image(row.get("image"), root, image_dir, source=source, index=index)
        labels = tuple(str(row[k]).strip() for k in ("class1", "class2", "class3") if row.get(k))
        rid = f"spavl-{path.stem}-{index}"
        if harmful:
            category = categorize(question, " ".join(labels[::-1]) or None)
            records.append(
                ResaRecord(
                    rid,
                    question,
                    (image,),
                    harmful=True,
                    category=category,
                    presentation="image",
                    source=f"spavl:{path.name}:{index}",
                    source_labels=labels,
                )
            )
        else:
            chosen = _text(row, "chosen", source=source, index=index)
            records.append(
                ResaRecord(
                    rid,
                    question,
                    (image,),
                    harmful=False,
                    category=None,
                    presentation="vqa",
                    reference_answer=chosen,
                    source=f"spavl:{path.name}:{index}",
                    source_labels=labels,
                )
            )
    return records


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


def load_jailbreakv(
    path: str | os.PathLike, data_root: str | os.PathLike | None = None, *, query: str = "jailbreak_query"
) -> list[ResaRecord]:
    """JailBreakV-28K CSV rows as harmful records (prompt from the `query` column)."""
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
                "typographic"
                if low == "figstep"
                else "unrelated_image"
                if low in ("template", "persuade", "logic")
                else "image"
            )
            rid = str(row.get("id") or lineno)
            records.append(
                ResaRecord(
                    f"jailbreakv-{rid}",
                    prompt,
                    (image,),
                    harmful=True,
                    category=categorize(redteam, policy or None),
                    presentation=presentation,
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


def parse_stair_response(text: str, fmt: ReasoningFormat = DEFAULT_FORMAT) -> str | None:
    """A STAIR structured response rewritten in the RESA format; None if it has no steps or no output."""
    steps = [s.strip() for s in _STEP.findall(text)]
    output = _OUTPUT.search(text)
    if not steps or not output:
        return None
    rendered = []
    for i, step in enumerate(steps, start=1):
        match = re.match(r"Title:\s*(.+?):?\s*\n(.*)", step, re.S)
        title, body = (match.group(1).strip().rstrip(":"), match.group(2).strip()) if match else ("step", step)
        rendered.append(f"Step {i} ({title.lower()}): {' '.join(body.split())}")
    answer = re.sub(r"^\s*Final Answer:\s*", "", output.group(1).strip())
    return fmt.render(rendered, answer) if answer else None


def load_stair_sft(
    path: str | os.PathLike, fmt: ReasoningFormat = DEFAULT_FORMAT
) -> tuple[list[ResaRecord], dict[str, str]]:
    """STAIR-SFT-style rows as text-only records and their traces (by record id) in the RESA format."""
    path = Path(path)
    source, records, traces = str(path), [], {}
    for index, raw in _read_rows(path):
        row = _check_object(raw, source, index)
        prompt_key = next((k for k in _PROMPT_KEYS if k in row), _PROMPT_KEYS[0])
        prompt = _text(row, prompt_key, source=source, index=index)
        extra = row.get("input")
        if isinstance(extra, str) and extra.strip():
            prompt = f"{prompt}\n{extra.strip()}"
        response_key = next((k for k in _RESPONSE_KEYS if k in row), _RESPONSE_KEYS[0])
        response = _text(row, response_key, source=source, index=index)
        trace = parse_stair_response(response, fmt)
        if trace is None:
            raise SampleError(
                "expected <|Reasoning_step|> blocks and an <|Output|> block",
                source=source,
                row=index,
                field=response_key,
            )
        label = row.get("type", row.get("label"))
        if label is None:
            harmful = is_refusal(fmt.parse(trace).answer)
        elif isinstance(label, bool):
            harmful = label
        elif str(label).lower() in ("safety", "harmful", "unsafe"):
            harmful = True
        elif str(label).lower() in ("helpfulness", "benign", "safe", "helpful"):
            harmful = False
        else:
            raise SampleError(
                f"unknown label {label!r}; use safety/harmful or helpfulness/benign",
                source=source,
                row=index,
                field="type" if "type" in row else "label",
            )
        rid = f"stair-{row.get('id', index)}"
        records.append(
            ResaRecord(
                rid,
                prompt,
                (),
                harmful=harmful,
                category=categorize(prompt) if harmful else None,
                presentation="text" if harmful else "benign_text",
                source=f"stair:{path.name}:{index}",
            )
        )
        traces[rid] = trace
    return records, traces
