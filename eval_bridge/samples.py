"""The sample record shared by the whole toolkit, and its validation.

A `Sample` is one request to a VLM: a user prompt, zero or more images attached to that prompt, optional
earlier turns and system prompt, and whatever the scorer needs (`target`, `metadata`). Files of samples are
JSON Lines (one record per line) or a JSON list, with records of this shape::

    {"id": "q17", "prompt": "What shape is this?", "images": ["shapes/17.png"], "target": "circle",
     "metadata": {"split": "test"}}

`image` (one path) may stand for `images`; `messages` (a list of `{"role", "content"}` text turns ending with
the user's) may stand for `prompt`. Image paths are relative to a data root and may not leave it.

Every problem is reported as a `SampleError` naming the file, the row and the field, and saying what to change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

ImageRef = str | os.PathLike | Image.Image
ROLES = ("system", "user", "assistant")


class SampleError(ValueError):
    """A sample that cannot be used, with where it came from (file, row, field) and what to change."""

    def __init__(self, message: str, *, source: str | None = None, row: int | None = None, field: str | None = None):
        self.source, self.row, self.field = source, row, field
        where = ", ".join(
            part
            for part in (
                str(source) if source else None,
                f"row {row}" if row is not None else None,
                f"field '{field}'" if field else None,
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class Sample:
    """One request to a VLM.

    Attributes:
        id: unique within its dataset; used as a cache key.
        prompt: the final user turn's text.
        images: attached to the final user turn, in order, placed before its text (paths or PIL images).
        target: what a scorer compares against (an answer, a label, a list of accepted answers...).
        system: optional system prompt.
        history: earlier turns as `{"role": "user"|"assistant", "content": str}`.
        metadata: free-form fields for scorers and reports (category, subset, harm label...).
        source: where the sample was read from (`file:row`), for error messages.
    """

    id: str
    prompt: str
    images: tuple[ImageRef, ...] = ()
    target: Any = None
    system: str | None = None
    history: tuple[Mapping[str, str], ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None

    def messages(self) -> list[dict]:
        """The conversation in the chat-template format of transformers processors (images as placeholders)."""
        msgs: list[dict] = []
        if self.system:
            msgs.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        for turn in self.history:
            msgs.append({"role": turn["role"], "content": [{"type": "text", "text": turn["content"]}]})
        content = [{"type": "image"} for _ in self.images] + [{"type": "text", "text": self.prompt}]
        msgs.append({"role": "user", "content": content})
        return msgs


def resolve_under_root(path: str | os.PathLike, data_root: str | os.PathLike) -> Path:
    """Resolve `path` against `data_root`, refusing any path (absolute, `..`, symlink) that ends up outside it."""
    root = Path(data_root).resolve()
    resolved = (root / path).resolve()
    if resolved != root and root not in resolved.parents:
        raise SampleError(
            f"path {str(path)!r} resolves to {resolved}, outside the data root {root}; "
            "keep data files under the data root or point --data-root at their folder"
        )
    return resolved


def load_image(ref: ImageRef) -> Image.Image:
    """Open an image reference as an RGB PIL image (already-open images are converted, not copied twice)."""
    if isinstance(ref, Image.Image):
        return ref if ref.mode == "RGB" else ref.convert("RGB")
    with Image.open(ref) as img:
        return img.convert("RGB")


def _check_image_file(path: Path, *, source, row, field_name) -> None:
    if not path.is_file():
        raise SampleError(
            f"image file not found: {path}; fix the path (relative to the data root) or the --data-root",
            source=source,
            row=row,
            field=field_name,
        )
    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise SampleError(
            f"cannot read image {path} ({err}); replace the file or drop the record",
            source=source,
            row=row,
            field=field_name,
        ) from err


def _text_field(record: Mapping, name: str, *, source, row) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SampleError(f"expected a string, got {type(value).__name__}", source=source, row=row, field=name)
    return value


def _parse_messages(value: Any, *, source, row) -> tuple[str | None, tuple[dict, ...], str]:
    """Split a `messages` list into (system, history, final user prompt)."""
    if not isinstance(value, list) or not value:
        raise SampleError(
            "expected a non-empty list of {role, content} turns", source=source, row=row, field="messages"
        )
    turns = []
    for i, turn in enumerate(value):
        name = f"messages[{i}]"
        if not isinstance(turn, Mapping) or not isinstance(turn.get("content"), str):
            raise SampleError("expected {'role': ..., 'content': <string>}", source=source, row=row, field=name)
        if turn.get("role") not in ROLES:
            raise SampleError(
                f"role must be one of {ROLES}, got {turn.get('role')!r}", source=source, row=row, field=f"{name}.role"
            )
        turns.append({"role": turn["role"], "content": turn["content"]})
    system = turns.pop(0)["content"] if turns[0]["role"] == "system" else None
    if not turns or turns[-1]["role"] != "user":
        raise SampleError(
            "the last turn must be the user's (the one the model answers)", source=source, row=row, field="messages"
        )
    return system, tuple(turns[:-1]), turns[-1]["content"]


def sample_from_record(
    record: Any,
    *,
    source: str | None = None,
    row: int | None = None,
    data_root: str | os.PathLike | None = None,
) -> Sample:
    """Validate one record (a dict as in the module docstring) and turn it into a `Sample`.

    Args:
        record: the parsed JSON object.
        source, row: where it came from, for error messages.
        data_root: folder that image paths are relative to; paths may not leave it. Required if the record
            names images.
    Raises:
        SampleError: naming source, row and field, on a missing or wrong-typed field, empty text, an image path
            outside the data root, a missing or unreadable image file.
    """
    if not isinstance(record, Mapping):
        raise SampleError(f"expected a JSON object, got {type(record).__name__}", source=source, row=row)
    where = dict(source=source, row=row)

    raw_id = record.get("id", row)
    if raw_id is None or isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise SampleError("expected a string or integer id", field="id", **where)

    if "messages" in record and "prompt" in record:
        raise SampleError("give either 'prompt' or 'messages', not both", field="messages", **where)
    if "messages" in record:
        system, history, prompt = _parse_messages(record["messages"], **where)
        prompt_field = "messages"
    else:
        system = _text_field(record, "system", **where)
        history, prompt = (), _text_field(record, "prompt", **where)
        prompt_field = "prompt"
        if prompt is None:
            raise SampleError("missing: every sample needs a 'prompt' (or 'messages')", field="prompt", **where)
    if not prompt.strip():
        raise SampleError("the prompt is empty; give the request text", field=prompt_field, **where)

    if "image" in record and "images" in record:
        raise SampleError("give either 'image' or 'images', not both", field="images", **where)
    refs = record.get("images", [record["image"]] if record.get("image") is not None else [])
    if not isinstance(refs, list):
        raise SampleError("expected a list of image paths", field="images", **where)
    images: list[Path] = []
    for i, ref in enumerate(refs):
        name = f"images[{i}]" if "images" in record else "image"
        if not isinstance(ref, str) or not ref:
            raise SampleError(f"expected an image path string, got {ref!r}", field=name, **where)
        if data_root is None:
            raise SampleError("the record names an image but no data root was given", field=name, **where)
        try:
            path = resolve_under_root(ref, data_root)
        except SampleError as err:
            raise SampleError(str(err), field=name, **where) from None
        _check_image_file(path, source=source, row=row, field_name=name)
        images.append(path)

    metadata = record.get("metadata", {})
    if not isinstance(metadata, Mapping):
        raise SampleError("expected a JSON object", field="metadata", **where)

    return Sample(
        id=str(raw_id),
        prompt=prompt,
        images=tuple(str(p) for p in images),
        target=record.get("target"),
        system=system,
        history=history,
        metadata=dict(metadata),
        source=f"{source}:{row}" if source is not None else None,
    )


def read_records(
    path: Path, *, not_a_list: str = "a .json sample file must hold a list of records (or use .jsonl)"
) -> Iterable[tuple[int, Any]]:
    """Yield (row, parsed record) from a JSONL file or a JSON list; rows are 1-based line numbers for JSONL,
    0-based list indices for JSON. Malformed JSON and a JSON file that is not a list (`not_a_list`) raise a
    `SampleError` naming the file (and the line)."""
    text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not data
    if path.suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                raise SampleError(
                    f"invalid JSON ({err.msg} at column {err.colno})", source=str(path), row=lineno
                ) from None
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SampleError(f"invalid JSON ({err.msg} at line {err.lineno})", source=str(path)) from None
    if not isinstance(data, list):
        raise SampleError(not_a_list, source=str(path))
    yield from enumerate(data)


def load_samples(path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> list[Sample]:
    """Read and validate a `.jsonl` or `.json` file of sample records.

    Args:
        path: the file.
        data_root: folder that image paths are relative to (default: the file's folder).
    Raises:
        SampleError: on the first invalid record, naming the file, row and field; or on duplicate ids.
    """
    path = Path(path)
    if not path.is_file():
        raise SampleError(f"sample file not found: {path}")
    root = Path(data_root) if data_root is not None else path.parent
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for row, record in read_records(path):
        sample = sample_from_record(record, source=str(path), row=row, data_root=root)
        if sample.id in seen:
            raise SampleError(
                f"duplicate id {sample.id!r} (first at row {seen[sample.id]}); ids must be unique",
                source=str(path),
                row=row,
                field="id",
            )
        seen[sample.id] = row
        samples.append(sample)
    return samples
