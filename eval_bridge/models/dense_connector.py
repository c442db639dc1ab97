"""The Dense Connector architecture for LLaVA-family VLMs (Yao et al., "Dense Connector for MLLMs", NeurIPS 2024,
arXiv 2405.13800; upstream `HJYao00/DenseConnector`): the projector reads features from several vision layers.

Three variants (METHODS.md 3.4), V being the main feature layer (`vision_feature_layer`, -2 on LLaVA-1.5) with
the CLS token dropped under strategy "default", as LLaVA does; `hidden_states[0]` is the embedding output:

    sti  tokens    [V; pool(H_a); pool(H_b)]: each sparse layer average-pooled along the raster-ordered token axis
                   (kernel = stride = `pool_stride`); N + k * floor(N / stride) image tokens, projector width unchanged
    sci  channels  [V, H_a, H_b]: the sparse layers concatenated along channels (projector input (1 + k) * C)
    dci  channels  [V, mean(G_1), mean(G_2)]: the mean of each group of layers (projector input (1 + groups) * C)

The architecture lives here, in `eval_bridge`, and not next to the recipe (`mitigation/architecture/
dense_connector.py`), because the eval bridge and `scripts/evaluate.py` must load a saved dense-connector model and
`eval_bridge` imports nothing from `mitigation`. Importing this module registers `model_type
"llava_dense_connector"` with transformers' Auto classes (the toolkit's loader, `load_pretrained`, imports it), so
a saved model reloads with `AutoModelForImageTextToText.from_pretrained(dir)` without `trust_remote_code`. The
processor stays transformers' `LlavaProcessor`; STI's extra image tokens are counted in its
`num_additional_image_tokens` (tokens beyond the patch grid).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaModel,
    LlavaProcessor,
)
from transformers.activations import ACT2FN
from transformers.models.llava.modeling_llava import LlavaPreTrainedModel

MODEL_TYPE = "llava_dense_connector"
VARIANTS = ("sti", "sci", "dci")


class DenseConnectorError(ValueError):
    """A dense-connector setting that does not fit the model (the message says what to change)."""


def default_sparse_layers(depth: int) -> list[int]:
    """(floor(L/3) - 1, floor(2L/3) - 1) for a tower of L blocks: upstream's (7, 15) on CLIP ViT-L's 24 (at least
    0: a tower of under 3 blocks would otherwise count from the end)."""
    return [max(0, depth // 3 - 1), max(0, 2 * depth // 3 - 1)]


def default_dense_groups(depth: int) -> list[list[int]]:
    """The two halves of `hidden_states[0..L-1]` (the embedding output included): upstream's [0..11], [12..23]."""
    if depth < 2:
        raise DenseConnectorError(f"a vision tower of {depth} block(s) has no two halves: set dense_groups")
    return [list(range(depth // 2)), list(range(depth // 2, depth))]


@strict
class LlavaDenseConnectorConfig(LlavaConfig):
    """A `LlavaConfig` plus the dense connector's settings (None picks the tower-depth default).

    Attributes:
        dense_connector_type: "sti", "sci" or "dci".
        dense_sparse_layers: hidden-state indices of STI / SCI (default `default_sparse_layers`).
        dense_groups: DCI's groups of hidden-state indices, averaged each (default `default_dense_groups`).
        dense_pool_stride: STI's 1-D pooling kernel and stride along the token axis.
    """

    model_type = MODEL_TYPE

    dense_connector_type: str = "dci"
    dense_sparse_layers: list[int] | None = None
    dense_groups: list[list[int]] | None = None
    dense_pool_stride: int = 8

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.dense_connector_type not in VARIANTS:
            raise DenseConnectorError(
                f"unknown dense connector variant {self.dense_connector_type!r}; choose one of {', '.join(VARIANTS)}"
            )
        if not isinstance(self.vision_feature_layer, int):
            raise DenseConnectorError(
                f"vision_feature_layer={self.vision_feature_layer!r}: the dense connector takes one main layer (an "
                "int, e.g. -2); name the extra layers in sparse_layers (variant sci) instead"
            )
        depth = self.vision_config.num_hidden_layers
        if self.dense_sparse_layers is None:
            self.dense_sparse_layers = default_sparse_layers(depth)
        if self.dense_groups is None:
            self.dense_groups = default_dense_groups(depth)
        self.dense_sparse_layers = [int(i) for i in self.dense_sparse_layers]
        self.dense_groups = [[int(i) for i in group] for group in self.dense_groups]
        _check_layers("vision_feature_layer", [self.vision_feature_layer], depth)
        if self.dense_connector_type in ("sti", "sci"):
            if not self.dense_sparse_layers:
                raise DenseConnectorError("sparse_layers is empty: name at least one vision layer")
            _check_layers("sparse_layers", self.dense_sparse_layers, depth)
        if self.dense_connector_type == "dci":
            if not self.dense_groups or any(not g for g in self.dense_groups):
                raise DenseConnectorError(f"dense_groups={self.dense_groups}: every group needs at least one layer")
            for group in self.dense_groups:
                _check_layers("dense_groups", group, depth)
        if self.dense_connector_type == "sti":
            if self.dense_pool_stride < 1:
                raise DenseConnectorError(f"pool_stride must be at least 1, got {self.dense_pool_stride}")
            n = self.feature_tokens()
            if n < self.dense_pool_stride:
                raise DenseConnectorError(
                    f"STI pools {n} image tokens with stride {self.dense_pool_stride}: fewer tokens than the stride "
                    "leave nothing to pool. Lower pool_stride (at most the token count) or use variant sci / dci"
                )
            self.image_seq_length = self.image_tokens()

    def feature_tokens(self) -> int:
        """Tokens per image of one vision layer after the CLS selection (N; 576 on LLaVA-1.5)."""
        vision = self.vision_config
        n = (vision.image_size // vision.patch_size) ** 2
        return n if self.vision_feature_select_strategy == "default" else n + 1

    def image_tokens(self) -> int:
        """Image tokens the language model reads per image: N, or N + k * floor(N / stride) for STI."""
        n = self.feature_tokens()
        if self.dense_connector_type != "sti":
            return n
        return n + len(self.dense_sparse_layers) * (n // self.dense_pool_stride)

    def channel_factor(self) -> int:
        """The projector's input width in vision widths: 1 (STI), 1 + sparse layers (SCI), 1 + groups (DCI)."""
        if self.dense_connector_type == "sci":
            return 1 + len(self.dense_sparse_layers)
        if self.dense_connector_type == "dci":
            return 1 + len(self.dense_groups)
        return 1


def _check_layers(name: str, indices: Sequence[int], depth: int) -> None:
    bad = [i for i in indices if not -(depth + 1) <= i <= depth]
    if bad:
        raise DenseConnectorError(
            f"{name} {list(indices)}: index {bad[0]} is out of range for a vision tower of {depth} blocks "
            f"(hidden_states has {depth + 1} entries, index 0 being the embedding output: use -{depth + 1}..{depth})"
        )


def dense_features(
    hidden_states: Sequence[torch.Tensor],
    config: LlavaDenseConnectorConfig,
    *,
    main_layer: int | None = None,
    drop_cls: bool | None = None,
) -> torch.Tensor:
    """The features the projector reads, [B, tokens, C * channel_factor], from the tower's `hidden_states`.

    Group means are taken in float32 (bfloat16 sums of 12 layers lose bits); the caller casts to the projector.
    """
    main = config.vision_feature_layer if main_layer is None else main_layer
    drop = config.vision_feature_select_strategy == "default" if drop_cls is None else drop_cls

    def layer(i: int) -> torch.Tensor:
        h = hidden_states[i]
        return h[:, 1:] if drop else h

    v = layer(main)
    kind = config.dense_connector_type
    if kind == "sci":
        return torch.cat([v, *(layer(i).to(v.dtype) for i in config.dense_sparse_layers)], dim=-1)
    if kind == "dci":
        means = [torch.stack([layer(i).float() for i in group]).mean(0).to(v.dtype) for group in config.dense_groups]
        return torch.cat([v, *means], dim=-1)
    stride = config.dense_pool_stride
    # 1-D pooling over the raster order (upstream), not 2-D over the patch grid: [B, N, C] -> [B, N // stride, C]
    pooled = [
        F.avg_pool1d(layer(i).transpose(1, 2), stride, stride).transpose(1, 2).to(v.dtype)
        for i in config.dense_sparse_layers
    ]
    return torch.cat([v, *pooled], dim=1)


class DenseConnectorProjector(nn.Module):
    """LLaVA's two-layer projector (same module names, so weights keep their keys) reading C * channel_factor."""

    def __init__(self, config: LlavaDenseConnectorConfig):
        super().__init__()
        width = config.vision_config.hidden_size * config.channel_factor()
        hidden = config.text_config.hidden_size
        self.linear_1 = nn.Linear(width, hidden, bias=config.multimodal_projector_bias)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(hidden, hidden, bias=config.multimodal_projector_bias)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(image_features)))


class LlavaDenseConnectorModel(LlavaModel):
    """`LlavaModel` whose image features come from several vision layers (`dense_features`)."""

    config_class = LlavaDenseConnectorConfig

    def __init__(self, config: LlavaDenseConnectorConfig):
        LlavaPreTrainedModel.__init__(self, config)  # LlavaModel.__init__ would build a projector of the wrong width
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = DenseConnectorProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        vision_feature_layer: int | None = None,
        vision_feature_select_strategy: str | None = None,
        image_sizes: torch.Tensor | None = None,
        **kwargs,
    ):
        """Per image, the projected dense features ([tokens, text width] each) in `.pooler_output`."""
        if image_sizes is not None:
            raise NotImplementedError(
                "the dense connector takes fixed-size images (LLaVA-1.5's processor); image_sizes are not supported"
            )
        if vision_feature_layer is not None and not isinstance(vision_feature_layer, int):
            raise DenseConnectorError(
                f"vision_feature_layer={vision_feature_layer!r}: the dense connector takes one main layer (an int)"
            )
        strategy = vision_feature_select_strategy or self.config.vision_feature_select_strategy
        for name in ("output_hidden_states", "return_dict"):
            kwargs.pop(name, None)
        outputs = self.vision_tower(pixel_values, output_hidden_states=True, return_dict=True, **kwargs)
        features = dense_features(
            outputs.hidden_states, self.config, main_layer=vision_feature_layer, drop_cls=strategy == "default"
        )
        dtype = next(self.multi_modal_projector.parameters()).dtype
        outputs.pooler_output = list(self.multi_modal_projector(features.to(dtype)))
        return outputs


class LlavaDenseConnectorForConditionalGeneration(LlavaForConditionalGeneration):
    """`LlavaForConditionalGeneration` over a `LlavaDenseConnectorModel` (generation, loss and LM head unchanged)."""

    config_class = LlavaDenseConnectorConfig

    def __init__(self, config: LlavaDenseConnectorConfig):
        LlavaPreTrainedModel.__init__(self, config)
        self.model = LlavaDenseConnectorModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()


def sti_processor_tokens(processor: LlavaProcessor, config: LlavaDenseConnectorConfig) -> int:
    """The `num_additional_image_tokens` that makes `processor` expand `<image>` into `config.image_tokens()`."""
    vision = config.vision_config
    grid = (vision.image_size // vision.patch_size) ** 2
    drop = 1 if processor.vision_feature_select_strategy == "default" else 0
    return config.image_tokens() - grid + drop


AutoConfig.register(MODEL_TYPE, LlavaDenseConnectorConfig, exist_ok=True)
AutoModel.register(LlavaDenseConnectorConfig, LlavaDenseConnectorModel, exist_ok=True)
AutoModelForImageTextToText.register(
    LlavaDenseConnectorConfig, LlavaDenseConnectorForConditionalGeneration, exist_ok=True
)
AutoProcessor.register(LlavaDenseConnectorConfig, LlavaProcessor, exist_ok=True)
