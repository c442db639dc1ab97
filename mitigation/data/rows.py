"""Training rows in TRL's conversational VLM format, the one shape every trained method hands to its stages.

    SFT: {"messages": [user turn, assistant turn], "images": [PIL images]}
    DPO: {"prompt": [user turn], "chosen": [assistant turn], "rejected": [assistant turn], "images": [PIL images]}

The user turn holds one `{"type": "image"}` placeholder per image, then the text (TRL's vision collators and the
chat templates of every supported family read this form); text-only rows have `images == []`. Images are opened
here, so an unreadable file is reported with the record it belongs to, not deep inside a collator.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from eval_bridge.samples import SampleError, load_image


def user_message(prompt: str, n_images: int) -> dict:
    """The user turn: `n_images` image placeholders, then the text."""
    return {
        "role": "user",
        "content": [*({"type": "image"} for _ in range(n_images)), {"type": "text", "text": prompt}],
    }


def assistant_message(text: str) -> dict:
    """An assistant turn holding `text`."""
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def open_images(paths: Sequence, *, source: str | None = None, row: int | str | None = None) -> list[Image.Image]:
    """The record's images as RGB PIL images; a SampleError naming the record and the file if one cannot be read."""
    images = []
    for k, path in enumerate(paths):
        try:
            images.append(load_image(path))
        except (OSError, ValueError) as err:  # missing, zero-byte, truncated or not an image at all
            raise SampleError(
                f"cannot read image {path}: {type(err).__name__}: {err}; fix or remove the file",
                source=source,
                row=row,
                field=f"images[{k}]",
            ) from None
    return images


def sft_row(prompt: str, images: Sequence, response: str, **where) -> dict:
    """One SFT row (`where`: `source=` and `row=` of the record, for errors)."""
    _check_text(response, "response", **where)
    return {
        "messages": [user_message(prompt, len(images)), assistant_message(response)],
        "images": open_images(images, **where),
    }


def dpo_row(prompt: str, images: Sequence, chosen: str, rejected: str, **where) -> dict:
    """One preference row; a SampleError if chosen or rejected is missing or they are the same text."""
    _check_text(chosen, "chosen", **where)
    _check_text(rejected, "rejected", **where)
    if " ".join(chosen.split()) == " ".join(rejected.split()):
        raise SampleError(
            "chosen and rejected are the same response: a pair must prefer one answer over another; drop the row "
            "or fix one of them",
            field="rejected",
            **where,
        )
    return {
        "prompt": [user_message(prompt, len(images))],
        "chosen": [assistant_message(chosen)],
        "rejected": [assistant_message(rejected)],
        "images": open_images(images, **where),
    }


def _check_text(value, name: str, *, source: str | None = None, row: int | str | None = None) -> None:
    if not isinstance(value, str) or not value.strip():
        raise SampleError(f"expected a non-empty response, got {value!r}", source=source, row=row, field=name)
