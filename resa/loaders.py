"""Users' safety data as `OfflineRecord`s: RESA's conversion of `mitigation.data.loaders`' `SafetyRecord`s.

The formats (VLGuard, SPA-VL, JailBreakV-28K, STAIR-SFT), their validation and their errors live in
`mitigation.data.loaders`. What is RESA's is here: mapping each source's categories onto RESA's `CATEGORIES`
(`categorize`, VLGuard's taxonomy table), RESA's presentation names for benign records ("vqa",
"benign_text"), and STAIR's structured responses rewritten as RESA reasoning traces.
"""

from __future__ import annotations

import os

from eval_bridge.reasoning import DEFAULT_FORMAT, ReasoningFormat
from mitigation.data import loaders as formats
from mitigation.data.offline import OfflineRecord, categorize
from mitigation.data.records import SafetyRecord

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


def _to_resa(record: SafetyRecord, category: str | None, *, reference: bool = True) -> OfflineRecord:
    """A `SafetyRecord` as a RESA record: benign ones get RESA's presentations and (if `reference`) their answer."""
    if record.harmful:
        presentation, answer = record.presentation, None
    else:
        presentation = "vqa" if record.images else "benign_text"
        answer = record.response if reference else None
    return OfflineRecord(
        record.id,
        record.request,
        record.images,
        harmful=record.harmful,
        category=category if record.harmful else None,
        presentation=presentation,
        reference_answer=answer,
        source=record.source,
        source_labels=record.source_labels,
    )


def _vlguard_category(record: SafetyRecord) -> str:
    """VLGuard's subcategory, else its category, mapped onto RESA's; keywords decide catch-alls and unlabelled rows."""
    sub, category = record.subcategory, record.category
    mapped = (
        (_VLGUARD_SUBCATEGORY.get(sub.lower()) if sub else None)
        or (_VLGUARD_CATEGORY.get(category.lower()) if category else None)
        or categorize(record.request)
    )
    return categorize(record.request, "other") if mapped == "other" else mapped


def load_vlguard(path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> list[OfflineRecord]:
    """VLGuard `train.json`/`test.json` as records (images resolved under `data_root`, default the file's folder)."""
    return [_to_resa(r, _vlguard_category(r)) for r in formats.load_vlguard(path, data_root)]


def load_spavl(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    harmful: bool = True,
    image_dir: str | os.PathLike | None = None,
) -> list[OfflineRecord]:
    """SPA-VL Parquet or JSON/JSONL rows as records (class1..3 kept in `source_labels`, mapped onto RESA's).

    Args:
        harmful: the label of every row (SPA-VL train and test `harm`: True; test `help`: False, when chosen
            becomes the reference answer).
        image_dir: where embedded image bytes (Parquet image structs) are written; required if there are any.
    """
    records = formats.load_spavl(path, data_root, harmful=harmful, image_dir=image_dir)
    # The finest class first: categorize tries the label as a whole, then keywords in it.
    return [_to_resa(r, categorize(r.request, " ".join(r.source_labels[::-1]) or None)) for r in records]


def load_jailbreakv(
    path: str | os.PathLike, data_root: str | os.PathLike | None = None, *, query: str = "jailbreak_query"
) -> list[OfflineRecord]:
    """JailBreakV-28K CSV rows as harmful records (prompt from the `query` column; category from the red-team
    query and the policy)."""
    return [
        _to_resa(r, categorize(r.base_request or r.request, r.category))
        for r in formats.load_jailbreakv(path, data_root, query=query)
    ]


def parse_stair_response(text: str, fmt: ReasoningFormat = DEFAULT_FORMAT) -> str | None:
    """A STAIR structured response rewritten in the RESA format; None if it has no steps or no output."""
    parts = formats.split_stair_response(text)
    if parts is None:
        return None
    steps, answer = parts
    rendered = [
        f"Step {i} ({(title or 'step').lower()}): {' '.join(body.split())}" for i, (title, body) in enumerate(steps, 1)
    ]
    return fmt.render(rendered, answer)


def load_stair_sft(
    path: str | os.PathLike, fmt: ReasoningFormat = DEFAULT_FORMAT
) -> tuple[list[OfflineRecord], dict[str, str]]:
    """STAIR-SFT-style rows as text-only records and their traces (by record id) in the RESA format.

    The step titles stay STAIR's own; the label is the row's `type`/`label`, else whether the answer refuses.
    """
    records, traces = [], {}
    for record in formats.load_stair_sft(path):
        # The response is the trace's source, not a short reference answer.
        records.append(_to_resa(record, categorize(record.request), reference=False))
        traces[record.id] = parse_stair_response(record.response, fmt)
    return records, traces
