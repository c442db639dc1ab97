"""General-VQA files for the utility track: our sample schema, plain {image, question, answers} JSON Lines, or a
Hugging Face dataset saved to disk (`datasets.Dataset.save_to_disk`) with those columns.

Accepted answers may be one string or a list; the utility track counts a response correct if one of them occurs
in it as a whole word.
"""

from __future__ import annotations

import json
from pathlib import Path

from eval_bridge.samples import Sample, SampleError, load_samples, sample_from_record

QUESTION_KEYS = ("question", "prompt")
ANSWER_KEYS = ("answers", "answer", "target")


def _normalise(record: dict, *, source: str, row: int) -> dict:
    """Map {image, question, answers} onto the sample schema's {image, prompt, target}."""
    if "prompt" in record or "messages" in record:
        return record
    question = next((record[k] for k in QUESTION_KEYS if k in record), None)
    answers = next((record[k] for k in ANSWER_KEYS if k in record), None)
    if question is None:
        raise SampleError(
            "missing: a VQA record needs 'question' (or 'prompt')", source=source, row=row, field="question"
        )
    if answers is None:
        raise SampleError(
            "missing: a VQA record needs 'answers' (accepted answers)", source=source, row=row, field="answers"
        )
    out = {"id": record.get("id", row), "prompt": question, "target": answers}
    if record.get("image") is not None:
        out["image"] = record["image"]
    return out


def load_vqa(path: str | Path) -> list[Sample]:
    """Read a utility-track file: a saved HF dataset folder, or .jsonl/.json in either record form."""
    path = Path(path)
    if path.is_dir():
        return _load_hf_dataset(path)
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows and all("prompt" in r or "messages" in r for r in rows):
            return load_samples(path)
        return [
            sample_from_record(_normalise(r, source=str(path), row=i), source=str(path), row=i, data_root=path.parent)
            for i, r in enumerate(rows, start=1)
        ]
    return load_samples(path)


def _load_hf_dataset(path: Path) -> list[Sample]:
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except FileNotFoundError as err:
        raise SampleError(f"{path} is not a dataset saved with save_to_disk ({err})", source=str(path)) from None
    samples = []
    for i, row in enumerate(dataset):
        record = _normalise(dict(row), source=str(path), row=i)
        image = record.pop("image", None)
        sample = sample_from_record(record, source=str(path), row=i)
        if image is not None:  # a PIL image decoded by `datasets`
            sample = Sample(sample.id, sample.prompt, (image,), sample.target, source=sample.source)
        samples.append(sample)
    return samples
