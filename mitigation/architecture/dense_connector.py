"""Dense Connector: the projector also reads intermediate vision layers (Yao et al., "Dense Connector for MLLMs",
NeurIPS 2024, arXiv 2405.13800; code HJYao00/DenseConnector). Targets truthfulness through better perception
(unverified as a trust gain), at the cost of retraining the projector. METHODS.md section 3.4.

The architecture (STI / SCI / DCI) is `eval_bridge.models.dense_connector`, so that saved models load anywhere the
toolkit loads a model; this module is the recipe:

1. `to_dense_connector`: a LLaVA model (the embedded default, LLaVA-1.5) becomes a
   `LlavaDenseConnectorForConditionalGeneration` sharing its vision tower and language model, with a widened
   projector warm-started so that at step 0 it *is* the base model (SCI / DCI): the original first-layer weights
   read V, the columns that read the new features are zero (project design; upstream trains from scratch). STI
   keeps the projector's width but shows the LLM more image tokens, so its step 0 differs from the base.
2. The connector stage (upstream stage 1): the projector trained with the vision tower and the language model
   frozen (or with LoRA on the language model: `use_lora`), by SFT through the shared pipeline, on LLaVA-format
   caption data (`connector_file`, upstream LCS-558K) or offline on captions of easy-VQA train images plus the
   shared benign easy-VQA training records. `stages: connector,finetune` adds upstream's stage 2 (the language
   model and the projector, tower frozen) on instruction data.
3. Every checkpoint through the eval bridge (`run_recipe`): the shared held-out tracks plus the mini suite's
   truthfulness tasks (T1, T2, T5, T6) by default.

Qwen2-VL (SCI / DCI through hooks on `visual.blocks` and a widened merger) is not built: it is refused with an
error naming what is supported.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from pathlib import Path

import torch

from eval_bridge.data import assets
from eval_bridge.files import BUILD_MARKER, build_once, is_built
from mitigation.architecture.dense_connector_config import DenseConnectorConfig, parse_groups, parse_layers
from mitigation.training.method_recipe import RecipePlan, heldout_eval_files, run_recipe, shared_sources

log = logging.getLogger(__name__)

SUPPORTED = "LLaVA-1.5-style LlavaForConditionalGeneration (llava-hf/llava-1.5-7b-hf, the embedded default)"
CAPTION_PROMPTS = ("Describe the image briefly.", "What does the image show?", "Write a short caption for the image.")


class UnsupportedModelError(ValueError):
    """A model the dense connector cannot be built on (the message names what is supported)."""


def check_family(model) -> None:
    """Raise `UnsupportedModelError` unless `model` is a plain LLaVA model with one feature layer."""
    model_type = getattr(model.config, "model_type", type(model).__name__)
    if model_type == "llava_dense_connector":
        raise UnsupportedModelError(
            "the model already has a dense connector; start from its LLaVA base model, or train it further with "
            "another method"
        )
    if model_type in ("qwen2_vl", "qwen2_5_vl"):
        raise UnsupportedModelError(
            f"dense_connector does not support {model_type} yet: Qwen2-VL needs forward hooks on visual.blocks and "
            f"a widened merger (METHODS.md 3.4), not built. Supported: {SUPPORTED}"
        )
    if model_type != "llava":
        raise UnsupportedModelError(
            f"dense_connector does not support model_type {model_type!r} ({type(model).__name__}). Supported: "
            f"{SUPPORTED}"
        )
    if not isinstance(model.config.vision_feature_layer, int):
        raise UnsupportedModelError(
            f"the model already reads several vision layers (vision_feature_layer="
            f"{model.config.vision_feature_layer}); the dense connector starts from a one-layer LLaVA projector"
        )


def dense_config(
    base_config,
    *,
    variant: str = "dci",
    feature_layer: int | None = None,
    sparse_layers: list[int] | None = None,
    dense_groups: list[list[int]] | None = None,
    pool_stride: int = 8,
):
    """A `LlavaDenseConnectorConfig` of a LLaVA config with the dense connector's settings (None: defaults)."""
    from eval_bridge.models.dense_connector import LlavaDenseConnectorConfig

    values = base_config.to_dict()
    for key in ("model_type", "architectures", "transformers_version"):
        values.pop(key, None)
    if feature_layer is not None:
        values["vision_feature_layer"] = feature_layer
    return LlavaDenseConnectorConfig(
        **values,
        dense_connector_type=variant,
        dense_sparse_layers=sparse_layers,
        dense_groups=dense_groups,
        dense_pool_stride=pool_stride,
    )


def warm_start_projector(old, config):
    """A `DenseConnectorProjector` for `config` that computes what `old` (LLaVA's projector) computes on V.

    linear_1's columns that read V are the old weights, the columns that read the extra features are zero;
    linear_1's bias and linear_2 are copied.
    """
    from eval_bridge.models.dense_connector import DenseConnectorProjector

    weight = old.linear_1.weight
    width = config.vision_config.hidden_size
    if weight.shape[1] != width:
        raise UnsupportedModelError(
            f"the projector's first layer reads {weight.shape[1]} channels, not the vision width {width}: it is not "
            "a one-layer LLaVA projector"
        )
    new = DenseConnectorProjector(config).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.linear_1.weight.zero_()
        new.linear_1.weight[:, :width].copy_(weight)
        if new.linear_1.bias is not None:
            new.linear_1.bias.copy_(old.linear_1.bias)
        new.linear_2.load_state_dict(old.linear_2.state_dict())
    return new


def to_dense_connector(model, processor, **settings):
    """`(dense model, processor)` of a LLaVA `(model, processor)`: the tower, LLM and LM head are `model`'s own
    modules (moved, not copied: `model` must not be used afterwards), the projector warm-started.

    Args:
        settings: `dense_config`'s keyword arguments (variant, feature_layer, sparse_layers, dense_groups,
            pool_stride).

    Raises:
        UnsupportedModelError: not a LLaVA model with a one-layer projector (Qwen2-VL, LLaVA-NeXT, ...).
        DenseConnectorError: settings that do not fit the tower (a layer out of range, STI with too few patches).
    """
    from eval_bridge.models.dense_connector import LlavaDenseConnectorForConditionalGeneration, sti_processor_tokens

    check_family(model)
    config = dense_config(model.config, **settings)
    with torch.device("meta"):  # every submodule is replaced below: no memory for a second copy of the weights
        dense = LlavaDenseConnectorForConditionalGeneration(config)
    dense.model.vision_tower = model.model.vision_tower
    dense.model.language_model = model.model.language_model
    dense.lm_head = model.lm_head
    dense.model.multi_modal_projector = warm_start_projector(model.model.multi_modal_projector, config)
    left = [name for name, t in [*dense.named_parameters(), *dense.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"dense connector: weights left uninitialised after the transplant: {left[:3]}")
    dense.generation_config = copy.deepcopy(model.generation_config)
    dense.train(model.training)
    processor = copy.deepcopy(processor)
    if config.dense_connector_type == "sti":
        processor.num_additional_image_tokens = sti_processor_tokens(processor, config)
    return dense, processor


def settings(cfg: DenseConnectorConfig) -> dict:
    """`to_dense_connector`'s settings from the recipe config."""
    return dict(
        variant=cfg.variant,
        feature_layer=cfg.feature_layer,
        sparse_layers=parse_layers(cfg.sparse_layers),
        dense_groups=parse_groups(cfg.dense_groups),
        pool_stride=cfg.pool_stride,
    )


def build_dense_model(cfg: DenseConnectorConfig, base: str) -> Path:
    """`<output_dir>/dense_init`: `base` with the warm-started dense connector, saved with its processor (built once;
    a build with other settings or another base is an error naming the directory)."""
    from eval_bridge.models.adapter import load_pretrained

    out = Path(cfg.output_dir) / "dense_init"
    wanted = {"base": str(base), **settings(cfg)}
    if is_built(out):
        found = json.loads((out / BUILD_MARKER).read_text())
        if found != wanted:
            raise ValueError(
                f"{out} holds a dense connector built with {found}, but this run asks for {wanted}: use another "
                "output_dir (or delete that run) to change the architecture"
            )
        return out

    def build(tmp: Path) -> None:
        dtype = torch.bfloat16 if cfg.bf16 else torch.float32
        model, processor = load_pretrained(base, trust_remote_code=cfg.trust_remote_code, dtype=dtype)
        dense, processor = to_dense_connector(model, processor, **settings(cfg))
        dense.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / BUILD_MARKER).write_text(json.dumps(wanted, indent=1) + "\n")
        c = dense.config
        log.info(
            "dense connector %s: main layer %d, sparse %s, groups %s; projector input %d; %d image tokens",
            c.dense_connector_type,
            c.vision_feature_layer,
            c.dense_sparse_layers,
            c.dense_groups,
            dense.model.multi_modal_projector.linear_1.in_features,
            c.image_tokens(),
        )

    return build_once(out, build)


# ---------------------------------------------------------------- freezing


def trainable_summary(model) -> dict[str, int]:
    """Trainable parameter elements by part ("language_model", "vision_tower", "projector", "lora", "other")."""
    from mitigation.training.parts import PART_NAMES, part_parameters, resolve_parts

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    parts = resolve_parts(base)
    owner = {id(p): part for part in PART_NAMES for _, p in part_parameters(base, part, parts)}
    counts = dict.fromkeys((*PART_NAMES, "lora", "other"), 0)
    for name, param in base.named_parameters():
        if param.requires_grad:
            key = "lora" if "lora_" in name else owner.get(id(param), "other")
            counts[key] += param.numel()
    return counts


def freeze_for_stage(model, *, train_language_model: bool) -> dict[str, int]:
    """Freeze a model for a dense-connector stage: the vision tower always, the language model unless
    `train_language_model`; the projector trains. LoRA (a PEFT-wrapped model) keeps its own trainable set.

    Returns `trainable_summary` after freezing.
    """
    from mitigation.training.parts import freeze, resolve_parts, unfreeze

    if hasattr(model, "get_base_model"):  # PEFT froze the base and left LoRA + modules_to_save trainable
        base = model.get_base_model()
        freeze(base, "vision_tower", resolve_parts(base))
        return trainable_summary(model)
    parts = resolve_parts(model)
    for param in model.parameters():
        param.requires_grad_(False)
    unfreeze(model, "projector", parts)
    if train_language_model:
        unfreeze(model, "language_model", parts)
    return trainable_summary(model)


def connector_trainer(*, train_language_model: bool) -> type:
    """TRL's `SFTTrainer` that trains the projector (+ the language model if `train_language_model`, + LoRA) only.

    With LoRA the projector is a PEFT `modules_to_save` module: saved with each adapter checkpoint (so the bridge
    evaluates the trained projector on the widened base) and merged into the final model.
    """
    from trl import SFTTrainer

    class ConnectorSFTTrainer(SFTTrainer):
        """SFT of the dense connector's projector; the vision tower frozen (upstream: `freeze_vision_tower`)."""

        def __init__(self, *args, peft_config=None, **kwargs):
            if peft_config is not None:
                peft_config = copy.deepcopy(peft_config)
                peft_config.modules_to_save = [*(peft_config.modules_to_save or []), "multi_modal_projector"]
            super().__init__(*args, peft_config=peft_config, **kwargs)
            counts = freeze_for_stage(self.model, train_language_model=train_language_model)
            log.info("dense connector stage: trainable parameters by part %s", counts)

    ConnectorSFTTrainer.train_language_model = train_language_model
    return ConnectorSFTTrainer


# ---------------------------------------------------------------- data


def caption_rows(n: int, seed: int = 0) -> list[dict]:
    """SFT rows captioning `n` easy-VQA *train* images ("A red circle."): the offline stand-in for LCS-558K."""
    from mitigation.data import rows

    if n <= 0:
        return []
    images = list(assets.easy_vqa_images("train"))
    if n > len(images):
        raise ValueError(f"captions={n}, but easy-VQA has {len(images)} train images: lower captions")
    rng = random.Random(f"dense-connector-captions:{seed}")
    out = []
    for image in rng.sample(images, n):
        prompt = rng.choice(CAPTION_PROMPTS)
        out.append(
            rows.sft_row(prompt, [image.path], f"A {image.color} {image.shape}.", row=f"caption-{image.image_id}")
        )
    return out


def file_rows(path: str, image_root: str | None, max_records: int, seed: int) -> list[dict]:
    """SFT rows of LLaVA-format data (`{id, image, conversations}`), `max_records` drawn with the seed (-1: all)."""
    from mitigation.data.loaders import read_llava_instructions
    from mitigation.data.vlguard import instruction_row

    samples = read_llava_instructions(path, image_root)
    if 0 <= max_records < len(samples):
        samples = random.Random(f"dense-connector-records:{seed}").sample(samples, max_records)
    return [instruction_row(s) for s in samples]


def stage_rows(cfg: DenseConnectorConfig, name: str, splits) -> list[dict]:
    """A stage's rows: its file if given; offline, the connector stage reads captions + the benign easy-VQA
    training records (text-only rows cannot train a projector), the finetune stage every benign training record."""
    from mitigation.data.vlguard import instruction_row

    path = cfg.connector_file if name == "connector" else cfg.finetune_file
    root = cfg.connector_image_root if name == "connector" else cfg.finetune_image_root
    if path:
        return file_rows(path, root, cfg.max_records, cfg.seed)
    benign = [r for r in splits.train if not r.harmful]
    if name == "connector":
        out = caption_rows(cfg.captions, cfg.seed) + [instruction_row(r) for r in benign if r.images]
    else:
        out = [instruction_row(r) for r in benign]
    random.Random(f"dense-connector-rows:{cfg.seed}:{name}").shuffle(out)
    return out


def plan(cfg: DenseConnectorConfig, base: str) -> RecipePlan:
    """The widened model, then the connector (and finetune) stage(s), evaluated on the shared held-out sets."""
    from mitigation.training.pipeline import Stage

    splits = shared_sources(cfg)
    model_dir = build_dense_model(cfg, base)
    stages = []
    for name in cfg.stage_names():
        p = f"{name}_"
        data = stage_rows(cfg, name, splits)
        log.info(
            "dense connector %s stage: %d rows (%d with an image)",
            name,
            len(data),
            sum(bool(r["images"]) for r in data),
        )
        stages.append(
            Stage.from_config(
                name,
                "sft",
                data,
                cfg,
                p,
                trainer_cls=connector_trainer(train_language_model=name == "finetune"),
                args={"assistant_only_loss": True},  # LLaVA trains on the answers (captions) only
            )
        )
    return RecipePlan(stages, heldout_eval_files(cfg, splits), model=str(model_dir))


def run_dense_connector(cfg: DenseConnectorConfig) -> str | None:
    """Run Dense Connector: widen -> connector stage (-> finetune) -> every checkpoint through the bridge; returns
    the trade-off table (main process)."""
    return run_recipe(cfg, plan, data_phase="dense connector + data")
