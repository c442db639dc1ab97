"""Where a VLM keeps its language model, vision tower and projector, by family (METHODS.md section 3.0).

Submodule paths move between transformers versions, so each family's layout is a triple of dotted paths and
the first layout whose three paths all exist in the model wins. Paths are relative to the transformers model:
a PEFT-wrapped model resolves to the same paths as its base model, and `get_submodule` unwraps it the same way.

| family (transformers 5.24)          | language model         | vision tower         | projector                     |
|-------------------------------------|------------------------|----------------------|-------------------------------|
| LLaVA, LLaVA-NeXT, embedded default | `model.language_model` | `model.vision_tower` | `model.multi_modal_projector` |
| Qwen2-VL, Qwen2.5-VL                | `model.language_model` | `model.visual`       | `model.visual.merger`         |
| Idefics3, SmolVLM                   | `model.text_model`     | `model.vision_model` | `model.connector`             |

A part's own parameters (`part_parameters`, `freeze`) leave out any other part nested in it (Qwen's projector
lives inside its vision tower: freezing the tower keeps the merger trainable), and the language model's include
the output head (`lm_head`), which every family keeps outside the decoder stack.

Any other model: name the three paths with `--model_parts language_model=...,vision_tower=...,projector=...`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields

from torch import nn

PART_NAMES = ("language_model", "vision_tower", "projector")
OPTION = "--model_parts language_model=...,vision_tower=...,projector=..."


@dataclass(frozen=True)
class ModelParts:
    """Dotted paths (as in `model.named_modules()`) of a VLM's three parts."""

    language_model: str
    vision_tower: str
    projector: str


# (families, layout), tried in order; the layouts of older transformers come after today's.
LAYOUTS: tuple[tuple[str, ModelParts], ...] = (
    (
        "LLaVA / LLaVA-NeXT / embedded default",
        ModelParts("model.language_model", "model.vision_tower", "model.multi_modal_projector"),
    ),
    ("Qwen2-VL / Qwen2.5-VL", ModelParts("model.language_model", "model.visual", "model.visual.merger")),
    ("Idefics3 / SmolVLM", ModelParts("model.text_model", "model.vision_model", "model.connector")),
    ("LLaVA (transformers < 4.52)", ModelParts("language_model", "vision_tower", "multi_modal_projector")),
    ("Qwen2-VL (transformers < 4.52)", ModelParts("model", "visual", "visual.merger")),
)


class ModelPartsError(ValueError):
    """A model part that cannot be found, or a `--model_parts` value that cannot be read."""


def _unwrap(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper (the model itself if it is not wrapped)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _exists(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """The submodule at dotted `path` (relative to the transformers model, also when PEFT-wrapped)."""
    base = _unwrap(model)
    try:
        return base.get_submodule(path)
    except AttributeError:
        raise ModelPartsError(f"{type(base).__name__} has no submodule {path!r}") from None


def parse_parts_option(text: str | None) -> dict[str, str]:
    """`"language_model=a.b,vision_tower=c,projector=d"` as {part: path}; empty text gives {}."""
    parts: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not value:
            raise ModelPartsError(f"expected part=path in the model parts option, got {item.strip()!r}")
        _check_key(key)
        if key in parts:
            raise ModelPartsError(f"model part {key!r} is given twice")
        parts[key] = value
    return parts


def _check_key(key: str) -> None:
    if key not in PART_NAMES:
        raise ModelPartsError(f"unknown model part {key!r}; valid parts: {', '.join(PART_NAMES)}")


def resolve_parts(model: nn.Module, overrides: Mapping[str, str] | None = None) -> ModelParts:
    """The model's parts: the first known layout that matches, with `overrides` (part -> path) on top.

    Raises:
        ModelPartsError: an override names an unknown part or a path that does not exist, or the family is
            unknown and the overrides do not name all three parts.
    """
    base = _unwrap(model)
    overrides = dict(overrides or {})
    for key, path in overrides.items():
        _check_key(key)
        if not path or not _exists(base, path):
            raise ModelPartsError(f"model part {key}={path!r}: {type(base).__name__} has no submodule {path!r}")
    layout = next((parts for _, parts in LAYOUTS if all(_exists(base, p) for p in _paths(parts))), None)
    if layout is None and set(overrides) != set(PART_NAMES):
        raise ModelPartsError(_unknown_family(base))
    return ModelParts(**{f.name: overrides.get(f.name) or getattr(layout, f.name) for f in fields(ModelParts)})


def _paths(parts: ModelParts) -> tuple[str, str, str]:
    return parts.language_model, parts.vision_tower, parts.projector


def _unknown_family(model: nn.Module) -> str:
    tried = "; ".join(f"{family}: {', '.join(_paths(parts))}" for family, parts in LAYOUTS)
    top = ", ".join(name for name, _ in model.named_modules() if name and name.count(".") <= 1)
    return (
        f"unknown model family {type(model).__name__}: none of the known layouts matches ({tried}). "
        f"Name its parts with {OPTION} (dotted paths from model.named_modules(); its top modules: {top})"
    )


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def part_parameters(model: nn.Module, part: str, parts: ModelParts | None = None) -> Iterator[tuple[str, nn.Parameter]]:
    """(name, parameter) of one part, without another part nested in it (Qwen's merger); the LM's include lm_head."""
    _check_key(part)
    base = _unwrap(model)
    parts = parts or resolve_parts(base)
    prefixes = [getattr(parts, part)]
    if part == "language_model":
        prefixes += _output_head(base, parts)
    nested = [p for p in _paths(parts) if p not in prefixes and any(_under(p, q) for q in prefixes)]
    for name, param in base.named_parameters():
        if any(_under(name, q) for q in prefixes) and not any(_under(name, n) for n in nested):
            yield name, param


def _output_head(model: nn.Module, parts: ModelParts) -> list[str]:
    """The path of the output embeddings (lm_head) if they sit outside all three parts, else []."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if head is None:
        return []
    names = [name for name, module in model.named_modules() if module is head]
    return [n for n in names[:1] if not any(_under(n, p) for p in _paths(parts))]


def freeze(model: nn.Module, part: str, parts: ModelParts | None = None) -> int:
    """Stop gradients to one part's parameters; returns how many parameter tensors were frozen."""
    return _set_requires_grad(model, part, parts, False)


def unfreeze(model: nn.Module, part: str, parts: ModelParts | None = None) -> int:
    """Make one part's parameters trainable; returns how many parameter tensors were changed."""
    return _set_requires_grad(model, part, parts, True)


def _set_requires_grad(model: nn.Module, part: str, parts: ModelParts | None, value: bool) -> int:
    count = 0
    for _, param in part_parameters(model, part, parts):
        param.requires_grad_(value)
        count += 1
    return count


def lora_target_regex(model: nn.Module, module_names: Iterable[str], parts: ModelParts | None = None) -> str:
    """A PEFT `target_modules` regex for the layers named `module_names` (q_proj, ...) in the language model only.

    The vision tower's attention (and Qwen2.5-VL's vision MLP) uses the same names, hence the LM's prefix.
    PEFT full-matches a string `target_modules` against module names, as the check here does.

    Raises:
        ModelPartsError: no names, or a name that matches no module of the language model (the error lists the
            LM's linear layer names), or a match inside the vision tower or projector.
    """
    names = [n.strip() for n in module_names if n.strip()]
    if not names:
        raise ModelPartsError("no LoRA target module names given (e.g. q_proj,k_proj,v_proj,o_proj)")
    base = _unwrap(model)
    parts = parts or resolve_parts(base)
    lm = parts.language_model
    regex = rf"{re.escape(lm)}\.(?:.*\.)?(?:{'|'.join(re.escape(n) for n in names)})"
    matched = [name for name, _ in base.named_modules() if re.fullmatch(regex, name)]
    missing = [n for n in names if not any(m.rsplit(".", 1)[-1] == n for m in matched)]
    if missing:
        linear = sorted(
            {name.rsplit(".", 1)[-1] for name, mod in base.named_modules() if _under(name, lm) and _is_linear(mod)}
        )
        raise ModelPartsError(
            f"LoRA target modules {missing} match nothing in the language model {lm!r} of {type(base).__name__}; "
            f"its linear layers are named: {', '.join(linear) or 'none'}"
        )
    other = [p for p in (parts.vision_tower, parts.projector) if p != lm]
    leaked = [m for m in matched if any(_under(m, p) for p in other)]
    if leaked:
        raise ModelPartsError(
            f"the LoRA regex {regex!r} also matches modules of the vision tower or projector: {leaked[:3]}; "
            f"check the model parts ({OPTION})"
        )
    return regex


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__.endswith("Linear")
