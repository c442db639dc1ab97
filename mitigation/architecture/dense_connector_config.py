"""`DenseConnectorConfig`: the Dense Connector recipe's fields (TRL-style dataclass, read from YAML + flags by
`TrlParser`).

Defaults are the offline CPU recipe on the embedded default model; `configs/mitigation/dense_connector/*.yaml`
spell them out and hold the GPU recipe (upstream's two stages, METHODS.md 3.4). Upstream values are cited next to
each CPU value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mitigation.training.config import TrainingConfig

STAGES = ("connector", "finetune")


def parse_layers(text: str | None, name: str = "sparse_layers") -> list[int] | None:
    """`"7,15"` -> [7, 15]; None or "" -> None (the tower-depth default)."""
    if text is None or not str(text).strip():
        return None
    try:
        return [int(item) for item in str(text).split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected comma-separated layer indices, e.g. '7,15'") from None


def parse_groups(text: str | None) -> list[list[int]] | None:
    """`"0..11;12..23"` (or `"0,1,2;3,4"`) -> [[0..11], [12..23]]; None or "" -> None (the two halves)."""
    if text is None or not str(text).strip():
        return None
    groups = []
    for part in str(text).split(";"):
        indices: list[int] = []
        for item in (s.strip() for s in part.split(",")):
            if not item:
                continue
            try:
                if ".." in item:
                    start, end = (int(x) for x in item.split(".."))
                    if end < start:
                        raise ValueError
                    indices += range(start, end + 1)
                else:
                    indices.append(int(item))
            except ValueError:
                raise ValueError(
                    f"dense_groups={text!r}: {item!r} is not a layer index or an inclusive range 'a..b'; write "
                    "groups as '0..11;12..23' or '0,1,2;3,4'"
                ) from None
        if not indices:
            raise ValueError(f"dense_groups={text!r}: group {len(groups) + 1} is empty")
        groups.append(indices)
    return groups


@dataclass
class DenseConnectorConfig(TrainingConfig):
    """Dense Connector (Yao et al., NeurIPS 2024, arXiv 2405.13800): the projector also reads intermediate vision
    layers (STI / SCI / DCI); the widened projector is retrained as LLaVA's connector stage.

    The shared fields (model, LoRA, precision, trackers, resume, the eval bridge) are `TrainingConfig`'s."""

    # --- run (Dense Connector's defaults for shared fields) ------------------------------------------------
    output_dir: str = field(
        default="runs/dense_connector", metadata={"help": "Where the widened model, checkpoints and reports go."}
    )
    cache_dir: str = field(
        default=".cache/dense_connector", metadata={"help": "Generated data and the trust-suite cache."}
    )
    use_lora: bool = field(
        default=False,
        metadata={
            "help": "LoRA on the language model next to the trained projector. Off: the connector stage trains the "
            "projector only with the language model frozen (upstream stage 1), the finetune stage the full "
            "language model + projector (upstream stage 2). The vision tower is always frozen (upstream)."
        },
    )

    # --- the architecture ------------------------------------------------------------------------------------
    variant: str = field(
        default="dci",
        metadata={
            "help": "sti (sparse token integration: pooled tokens of sparse_layers appended; +25% image tokens on "
            "LLaVA-1.5), sci (sparse channel integration: sparse_layers concatenated along channels) or dci (dense "
            "channel integration: the mean of each of dense_groups; upstream's best and default)."
        },
    )
    feature_layer: int | None = field(
        default=None,
        metadata={
            "help": "The main vision layer V (hidden_states index); null: the model's vision_feature_layer (-2 on "
            "LLaVA-1.5, upstream's select layer)."
        },
    )
    sparse_layers: str | None = field(
        default=None,
        metadata={
            "help": "STI / SCI: comma-separated hidden_states indices (0 = the embedding output); null: "
            "(floor(L/3) - 1, floor(2L/3) - 1) for a tower of L blocks, upstream's 7,15 on CLIP ViT-L/14."
        },
    )
    dense_groups: str | None = field(
        default=None,
        metadata={
            "help": "DCI: groups of hidden_states indices, each averaged: '0..11;12..23' (inclusive ranges) or "
            "'0,1;2,3'; null: the two halves of hidden_states[0..L-1], upstream's 0..11;12..23 on CLIP ViT-L/14."
        },
    )
    pool_stride: int = field(
        default=8,
        metadata={"help": "STI: 1-D average-pooling kernel and stride over the raster-ordered tokens (upstream 8)."},
    )

    # --- the stages ------------------------------------------------------------------------------------------
    stages: str = field(
        default="connector",
        metadata={
            "help": "Comma-separated stages to run, in order: connector (the projector, LM frozen or LoRA; "
            "upstream stage 1 on LCS-558K) and finetune (LM + projector; upstream stage 2 on LLaVA-665k). The "
            "project default is the connector stage on local data; 'connector,finetune' is upstream's recipe."
        },
    )
    connector_file: str | None = field(
        default=None,
        metadata={
            "help": "Connector-stage data in LLaVA's format ({id, image, conversations}; upstream LCS-558K, "
            "blip_laion_cc_sbu_558k.json); null: offline captions of easy-VQA train images + the shared benign "
            "easy-VQA training records."
        },
    )
    connector_image_root: str | None = field(
        default=None, metadata={"help": "Folder the image paths of connector_file are relative to; null: its folder."}
    )
    finetune_file: str | None = field(
        default=None,
        metadata={
            "help": "Finetune-stage data in LLaVA's format (upstream llava_v1_5_mix665k.json); null: the shared "
            "offline benign training records (easy-VQA + text)."
        },
    )
    finetune_image_root: str | None = field(
        default=None, metadata={"help": "Folder the image paths of finetune_file are relative to; null: its folder."}
    )
    max_records: int = field(
        default=-1,
        metadata={
            "help": "Cap on the records read from each of connector_file / finetune_file (a seeded draw; -1: all). "
            "The pipeline holds a stage's images in memory, so cap what a machine cannot hold."
        },
    )
    captions: int = field(
        default=120,
        metadata={
            "help": "Offline connector data: captions ('A red circle.') of this many easy-VQA train images "
            "(METHODS.md section 4's stand-in for LCS-558K's captions); 0: none."
        },
    )

    connector_learning_rate: float = field(
        default=1e-3, metadata={"help": "Connector stage peak learning rate (upstream stage 1: 1e-3)."}
    )
    connector_epochs: float = field(default=1.0, metadata={"help": "Connector stage epochs (upstream: 1)."})
    connector_max_steps: int = field(
        default=40, metadata={"help": "Cap on connector-stage steps (-1: epochs decide); 40 x 6 ~ 1 epoch offline."}
    )
    connector_batch_size: int = field(
        default=6, metadata={"help": "Connector stage per-device batch size (upstream 32 per GPU, 256 total)."}
    )
    connector_grad_accum: int = field(default=1, metadata={"help": "Connector stage gradient accumulation steps."})
    connector_save_steps: int = field(
        default=0, metadata={"help": "Connector stage: checkpoint (and evaluate) every N steps; 0: the end only."}
    )

    finetune_learning_rate: float = field(
        default=2e-5, metadata={"help": "Finetune stage peak learning rate (upstream stage 2: 2e-5)."}
    )
    finetune_epochs: float = field(default=1.0, metadata={"help": "Finetune stage epochs (upstream: 1)."})
    finetune_max_steps: int = field(default=40, metadata={"help": "Cap on finetune-stage steps (-1: epochs decide)."})
    finetune_batch_size: int = field(
        default=6, metadata={"help": "Finetune stage per-device batch size (upstream 16 per GPU, 128 total)."}
    )
    finetune_grad_accum: int = field(default=1, metadata={"help": "Finetune stage gradient accumulation steps."})
    finetune_save_steps: int = field(
        default=0, metadata={"help": "Finetune stage: checkpoint (and evaluate) every N steps; 0: the end only."}
    )

    # --- the eval bridge (Dense Connector's defaults) --------------------------------------------------------
    eval_tasks: str = field(
        default="T1,T2,T5,T6",
        metadata={
            "help": "Trust-suite tasks on every checkpoint besides the tracks: the mini suite's perception and "
            "misleading-input truthfulness tasks (the aspect a better perception should move); 'none': tracks only."
        },
    )
    eval_max_new_tokens: int = field(
        default=32, metadata={"help": "Generation length: easy-VQA answers and yes/no take a few tokens."}
    )
    eval_batch_size: int = field(default=96, metadata={"help": "Generation batch size of the evaluations."})

    def __post_init__(self):
        super().__post_init__()
        if self.variant not in ("sti", "sci", "dci"):
            raise ValueError(f"unknown variant {self.variant!r}; choose one of sti, sci, dci")
        parse_layers(self.sparse_layers)
        parse_groups(self.dense_groups)
        if self.pool_stride < 1:
            raise ValueError(f"pool_stride must be at least 1, got {self.pool_stride}")
        names = self.stage_names()
        unknown = [s for s in names if s not in STAGES]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(
                f"stages={self.stages!r}: name connector and/or finetune once each, in order (e.g. "
                "'connector' or 'connector,finetune')"
            )
        if self.captions < 0:
            raise ValueError(f"captions must be 0 or more, got {self.captions}")

    def stage_names(self) -> list[str]:
        """The stages to run, in order."""
        return [s.strip() for s in str(self.stages).split(",") if s.strip()]
