"""DeepSpeed ZeRO-2 / ZeRO-3 under `accelerate launch`: the process group on CPU, and full weights at the end.

Three things the TRL/transformers/accelerate stack does not do by itself here:

- On a machine without GPUs, accelerate (1.15) initialises DeepSpeed's process group (gloo) but records no
  backend for it, and then treats the run as a single process: `TrainingArguments.world_size` is 1 and every
  rank is process 0. The "auto" batch fields of the DeepSpeed config are filled for one process, and DeepSpeed
  stops before the first step ("train_batch_size is not equal to micro_batch_per_gpu * gradient_acc_step *
  world_size 2 != 2 * 1 * 2"). `ddp_backend()` names the backend so the training arguments see every process.
- DeepSpeed reduces gradients in buckets as they become ready (ZeRO-1/2), and under ZeRO-3 also gathers each
  module's weights when it runs, so every rank must run the same modules in the same order. A text-only batch
  (TRL passes `pixel_values=None`) skips the vision tower, and a step where one rank's batch has images and
  the other's has none stops in a collective-size mismatch (ZeRO-3; ZeRO-2 once the vision tower trains).
  `run_vision_tower_every_step()` passes a blank image through the vision tower and projector of text-only
  batches and adds 0 x its features to the token embeddings: the same modules run in the same order on every
  rank, and the loss and gradients are unchanged.
- Under ZeRO-3 each rank holds only a shard of every parameter, so a merged or saved `trainer.model` would be
  empty. `full_parameters()` gathers the weights for the duration of a merge and save.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator

import torch


def deepspeed_launched() -> bool:
    """Whether `accelerate launch` runs this process under DeepSpeed (a DeepSpeed accelerate config)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true")


def ddp_backend() -> str | None:
    """The `ddp_backend` training argument for this launch: "gloo" for several CPU processes under DeepSpeed.

    Returns None (let accelerate choose) otherwise. Without it, accelerate sees one process on CPU (module
    docstring), so the DeepSpeed batch-size check fails and every rank believes it is the main process.
    """
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return "gloo" if deepspeed_launched() and several and not torch.cuda.is_available() else None


def is_zero3_partitioned(model: torch.nn.Module) -> bool:
    """Whether the model's parameters are ZeRO-3 shards (DeepSpeed tags each one with a `ds_id`)."""
    return any(hasattr(p, "ds_id") for p in model.parameters())


@contextlib.contextmanager
def full_parameters(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Inside the block every parameter of `model` is whole on every rank (a no-op unless ZeRO-3 partitioned).

    Every rank must enter the block. Changes made on rank 0 (e.g. merging LoRA into the base weights) are kept:
    they are broadcast and partitioned again on exit. The whole model is held on each rank meanwhile, as in a
    single-process run; a ZeRO-3 run that must not do that can save with `accelerator.get_state_dict` instead,
    which gathers layer by layer onto rank 0 (full fine-tuning only: it cannot merge LoRA).
    """
    if not is_zero3_partitioned(model):
        yield model
        return
    import deepspeed

    # A list, not the generator: merge_and_unload removes the LoRA modules, whose parameters must still be
    # partitioned again on exit.
    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=0):
        yield model


def zero_stage(trainer) -> int | None:
    """The DeepSpeed ZeRO stage a trainer runs under (None without DeepSpeed)."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return None if plugin is None else plugin.zero_stage


def keep_vision_tower_in_every_step(trainer, processor) -> None:
    """Under DeepSpeed, make the policy (and DPO's reference model) run the vision tower on text-only batches too.

    A no-op without DeepSpeed, with one process, or for a model without a vision tower. See
    `run_vision_tower_every_step`.
    """
    if zero_stage(trainer) is None or trainer.args.world_size < 2:
        return
    for model in (trainer.model, getattr(trainer, "ref_model", None)):
        if model is not None:
            run_vision_tower_every_step(model, processor)  # False for a text-only model: nothing to keep in step


def _vision_language_backbone(model: torch.nn.Module) -> torch.nn.Module | None:
    """The innermost module that embeds images and runs the language model (e.g. LlavaModel)."""
    found = None
    for module in model.modules():
        if hasattr(module, "get_image_features") and hasattr(module, "get_decoder"):
            found = module
    return found


def _blank_image_inputs(processor, backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The image processor's inputs for one white 64x64 image, restricted to what `get_image_features` takes."""
    from PIL import Image

    image_processor = getattr(processor, "image_processor", processor)
    inputs = image_processor(images=[Image.new("RGB", (64, 64), "white")], return_tensors="pt")
    accepted = inspect.signature(backbone.get_image_features).parameters
    return {k: v for k, v in inputs.items() if k in accepted and torch.is_tensor(v)}


def _total(features) -> torch.Tensor:
    """The sum of every element of a features tensor or a (nested) sequence of them."""
    if torch.is_tensor(features):
        return features.float().sum()
    return sum(_total(f) for f in features)


def run_vision_tower_every_step(model: torch.nn.Module, processor) -> bool:
    """On text-only forward passes, run a blank image through the vision tower and add 0 x its features.

    The blank image's features enter where real ones do, between the token embeddings and the language model
    (a pre-hook on the decoder adds them to `inputs_embeds`), so the ZeRO-3 gathers (forward) and reductions
    (backward) come in the same module order as on a rank whose batch has images: DeepSpeed records that order
    per rank, and ranks whose orders differ stop in a collective. Only the projected features (`pooler_output`,
    what the model uses) are added, so the same parameters receive gradients (zeros here). Returns False if the
    model has no such backbone.
    """
    backbone = _vision_language_backbone(model)
    if backbone is None:
        return False
    blank = _blank_image_inputs(processor, backbone)
    text_only = [False]

    def before_backbone(module, args, kwargs):
        pixel_values = kwargs.get("pixel_values", args[1] if len(args) > 1 else None)
        text_only[0] = pixel_values is None

    def after_backbone(module, args, kwargs, output):
        text_only[0] = False

    def before_decoder(module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if not text_only[0] or embeds is None:
            return None
        text_only[0] = False
        inputs = {k: v.to(embeds.device, embeds.dtype if v.is_floating_point() else v.dtype) for k, v in blank.items()}
        features = backbone.get_image_features(**inputs, return_dict=True)
        zero = 0.0 * _total(getattr(features, "pooler_output", features)).to(embeds.dtype)
        return args, {**kwargs, "inputs_embeds": embeds + zero}

    backbone.register_forward_pre_hook(before_backbone, with_kwargs=True)
    backbone.register_forward_hook(after_backbone, with_kwargs=True)
    # prepend: the blank image must run before any other pre-hook of the decoder (e.g. DeepSpeed's, which
    # fetches the decoder's weights), as real image features are computed before the decoder is entered.
    backbone.get_decoder().register_forward_pre_hook(before_decoder, with_kwargs=True, prepend=True)
    return True
