"""`SafetyRecord`: one request from a safety data set, as the source gives it, for any method to convert.

The record keeps the source's own labels and responses; what a method makes of them (RESA's categories and
reasoning traces, safety_dpo's preference pairs, VLGuard mixing) is that method's conversion.
"""

from __future__ import annotations

from dataclasses import dataclass

# How the request reaches the model: "text" (no image), "image" (an image the request is about),
# "typographic" (the request, or part of it, is written in the image), "unrelated_image" (an image that has
# nothing to do with the request, e.g. JailBreakV's LLM-transfer attacks).
PRESENTATIONS = ("text", "image", "typographic", "unrelated_image")


@dataclass(frozen=True)
class SafetyRecord:
    """One request with its harm label and whatever responses its source has.

    Attributes:
        id: unique within the loaded file ("vlguard-u1-safe", "spavl-train-3", "jailbreakv-7", "stair-12").
        request: the text the model sees (for a jailbreak, the wrapped prompt).
        images: image paths, in order, before the text; () for text-only records.
        harmful: the harm label.
        category: the source's own category string (VLGuard `harmful_category`, SPA-VL `class1`, JailBreakV
            `policy`); None where the source gives none.
        subcategory: the source's finer label (VLGuard `harmful_subcategory`, SPA-VL `class2`).
        response: the source's reference response (VLGuard's response, SPA-VL help's chosen answer, STAIR's
            structured response as written).
        chosen: the preferred response of a preference pair (SPA-VL).
        rejected: the dispreferred response of a preference pair (SPA-VL).
        presentation: one of `PRESENTATIONS`.
        base_request: the request a jailbreak wraps (JailBreakV `redteam_query`), when there is one.
        source: where the record came from: "<dataset>:<file name>:<row>" ("vlguard:train.json:12").
        source_labels: the source's labels kept for per-category reports (VLGuard category and subcategory,
            SPA-VL class1..3, JailBreakV policy and format).
    """

    id: str
    request: str
    images: tuple[str, ...]
    harmful: bool
    category: str | None = None
    subcategory: str | None = None
    response: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    presentation: str = "image"
    base_request: str | None = None
    source: str = ""
    source_labels: tuple[str, ...] = ()
