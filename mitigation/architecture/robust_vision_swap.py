"""`robust_vision`, mode `swap`: put robust CLIP vision weights into a LLaVA-style VLM (METHODS.md 3.3, "Hooks, LLaVA").

RobustVLM replaces only the tower; the projector and the LM stay. A robust CLIP usually comes at another resolution
than the VLM's tower (FARE's ViT-L/14 at 224 px vs LLaVA-1.5's 336 px), which changes the number of patch features
and so the number of `<image>` placeholders the processor must write (RobustVLM issues #12, #16). After a swap:

- the VLM's `vision_config` is the new tower's (so `from_pretrained` rebuilds it), at the new `image_size`;
- the processor resizes and crops to that size, with the tower's patch size;
- `image_seq_length` is the number of features the projector receives;
- `image_token_counts` confirms that placeholders == features on a real processor call.

With `image_size` the position embeddings are instead interpolated (bicubic, transformers' own
`CLIPVisionEmbeddings.interpolate_pos_encoding`) and stored at that size, so the saved model needs no runtime flag.
"""

from __future__ import annotations

import torch
from torch import nn

from mitigation.training.parts import get_submodule, resolve_parts

CLIP_TOWERS = ("CLIPVisionModel", "CLIPVisionModelWithProjection")


def load_clip_vision(source: str, *, dtype: torch.dtype = torch.float32, revision: str | None = None):
    """A `CLIPVisionModel` from a local directory or hub id: a CLIP vision checkpoint, or a full CLIPModel's vision
    part. A ValueError names `source` when it is not a CLIP vision model or lacks its vision weights."""
    from transformers import AutoConfig, CLIPVisionModel

    try:
        config = AutoConfig.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"swap_from={source!r}: cannot read a model config ({err}); pass a directory saved with save_pretrained "
            "or a hub id already in the local Hugging Face cache"
        ) from None
    if config.model_type not in ("clip", "clip_vision_model"):
        raise ValueError(
            f"swap_from={source!r} is a {config.model_type!r} model, not a CLIP vision model: robust_vision swaps "
            "in a CLIPVisionModel (or a CLIPModel's vision part), e.g. an HF-format FARE / TeCoA checkpoint"
        )
    try:
        tower, info = CLIPVisionModel.from_pretrained(source, dtype=dtype, revision=revision, output_loading_info=True)
    except OSError as err:
        raise ValueError(f"swap_from={source!r}: no CLIP weights could be loaded ({err})") from None
    missing = [k for k in info["missing_keys"] if "position_ids" not in k]
    if missing:
        raise ValueError(
            f"swap_from={source!r} holds no weights for {len(missing)} tensors of the CLIP vision model (e.g. "
            f"{missing[0]}): it is not a saved CLIP vision checkpoint"
        )
    return tower.eval()


def feature_layers(config) -> list[int]:
    """The VLM's `vision_feature_layer` as a list (LLaVA takes one index or a list, concatenated)."""
    layer = config.vision_feature_layer
    return list(layer) if isinstance(layer, (list, tuple)) else [layer]


def projector_input_width(projector: nn.Module) -> int:
    """The input width of the projector's first linear layer."""
    first = next((m for m in projector.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        raise ValueError(f"the projector ({type(projector).__name__}) has no linear layer to read its input width from")
    return first.in_features


def check_tower_fits(model, tower) -> None:
    """A ValueError when `tower` cannot feed the VLM's projector: its width x the number of feature layers must be
    the projector's input width, and every `vision_feature_layer` must exist in it."""
    parts = resolve_parts(model)
    layers = feature_layers(model.config)
    width = tower.config.hidden_size * len(layers)
    expected = projector_input_width(get_submodule(model, parts.projector))
    if width != expected:
        raise ValueError(
            f"the swapped tower's width {tower.config.hidden_size} (x {len(layers)} feature layer(s) = {width}) does "
            f"not match the projector's input width {expected}: pick a CLIP of width {expected // len(layers)} (the "
            "one the VLM was trained with, e.g. ViT-L/14 for LLaVA-1.5), or retrain the projector"
        )
    n = tower.config.num_hidden_layers
    bad = [x for x in layers if not -(n + 1) <= x <= n]
    if bad:
        raise ValueError(f"vision_feature_layer {bad} does not exist in the swapped tower ({n} layers)")


def resize_position_embeddings(tower, image_size: int) -> None:
    """Store `tower`'s position embeddings interpolated (bicubic) to `image_size` and set its config to it."""
    embeddings = getattr(tower, "vision_model", tower).embeddings  # transformers 5 flattened CLIPVisionModel
    patch = tower.config.patch_size
    if image_size % patch:
        raise ValueError(f"swap_image_size {image_size} is not a multiple of the tower's patch size {patch}")
    n_positions = (image_size // patch) ** 2 + 1
    old = embeddings.position_embedding.weight
    with torch.no_grad():
        shaped = torch.zeros(1, n_positions, old.shape[1], dtype=old.dtype, device=old.device)
        new = embeddings.interpolate_pos_encoding(shaped, image_size, image_size)[0]
    embeddings.position_embedding = nn.Embedding(n_positions, old.shape[1], dtype=old.dtype, device=old.device)
    embeddings.position_embedding.weight.data.copy_(new)
    embeddings.register_buffer(
        "position_ids", torch.arange(n_positions, device=old.device).expand((1, -1)), persistent=False
    )
    embeddings.image_size, embeddings.num_patches, embeddings.num_positions = image_size, n_positions - 1, n_positions
    tower.config.image_size = image_size


def image_seq_length(config, tower_config) -> int:
    """How many features the projector gets per image: one per patch, plus CLS under the 'full' strategy."""
    patches = (tower_config.image_size // tower_config.patch_size) ** 2
    return patches + (0 if config.vision_feature_select_strategy == "default" else 1)


def set_processor_resolution(processor, image_size: int, patch_size: int) -> None:
    """Resize / crop to `image_size` and count placeholders with `patch_size` (LlavaProcessor)."""
    image_processor = processor.image_processor
    image_processor.size = {"shortest_edge": image_size}
    image_processor.crop_size = {"height": image_size, "width": image_size}
    processor.patch_size = patch_size


def swap_tower(model, processor, tower, *, image_size: int | None = None) -> dict:
    """Replace the VLM's CLIP tower by `tower` (in place), at `image_size` (default: the tower's own).

    Returns:
        {"image_size": (before, after), "image_tokens": (before, after)}.

    Raises:
        ValueError: the VLM is not LLaVA-style with a CLIP tower, the tower does not fit the projector, or the
            processor's placeholders do not match the tower's features afterwards.
    """
    if model.config.model_type != "llava":
        raise ValueError(
            f"mode=swap supports LLaVA (LlavaForConditionalGeneration), got model_type {model.config.model_type!r}: "
            "other families change their image-token layout with the resolution; use mode=finetune"
        )
    parts = resolve_parts(model)
    old = get_submodule(model, parts.vision_tower)
    if type(old).__name__ not in CLIP_TOWERS:
        raise ValueError(f"the VLM's vision tower is a {type(old).__name__}, not a CLIP tower: use mode=finetune")
    check_tower_fits(model, tower)
    before = (old.config.image_size, model.config.image_seq_length)
    if image_size is not None and image_size != tower.config.image_size:
        resize_position_embeddings(tower, image_size)
    param = next(old.parameters())
    tower.to(device=param.device, dtype=param.dtype)
    parent, _, name = parts.vision_tower.rpartition(".")
    setattr(get_submodule(model, parent) if parent else model, name, tower)
    model.config.vision_config = tower.config
    model.config.image_seq_length = image_seq_length(model.config, tower.config)
    set_processor_resolution(processor, tower.config.image_size, tower.config.patch_size)
    placeholders, features = image_token_counts(model, processor)
    if placeholders != features:
        raise ValueError(
            f"after the swap the processor writes {placeholders} image placeholders but the tower gives {features} "
            "features: check the processor's vision_feature_select_strategy / num_additional_image_tokens"
        )
    return {
        "image_size": (before[0], tower.config.image_size),
        "image_tokens": (before[1], model.config.image_seq_length),
    }


def image_token_counts(model, processor) -> tuple[int, int]:
    """(placeholders the processor writes for one image, features the tower + select strategy give for it)."""
    from PIL import Image

    from mitigation.architecture.robust_vision import tower_features

    tower = get_submodule(model, resolve_parts(model).vision_tower)
    image = Image.new("RGB", (tower.config.image_size, tower.config.image_size), "gray")
    batch = processor(text=[processor.image_token], images=[image], return_tensors="pt")
    placeholders = int((batch["input_ids"] == model.config.image_token_id).sum())
    param = next(tower.parameters())
    with torch.no_grad():
        pixels = batch["pixel_values"].to(device=param.device, dtype=param.dtype)
        features = tower_features(tower, pixels, model.config, "projector_input")
    return placeholders, features.shape[1]
