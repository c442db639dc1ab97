"""The run every trained method shares, top to bottom: base model -> the method's data -> its TRL stages -> every
checkpoint through the eval bridge -> the trade-off table (and `RUN/timings.json`).

A method supplies only its plan: the stages it trains, built from the shared offline sources (or the user's data),
and which evaluation sets its checkpoints go through:

    def plan(cfg: VlguardConfig, base: str) -> RecipePlan:
        splits = shared_sources(cfg)
        rows = ...  # the method's conversion of splits.train (or of the user's files)
        return RecipePlan([Stage("sft", "sft", rows, learning_rate=cfg.learning_rate)], heldout_eval_files(cfg, splits))

    def run_vlguard(cfg: VlguardConfig) -> str | None:
        return run_recipe(cfg, plan)

Every method builds the offline sources with the same sizes and seed (`SHARED_SIZES`, RESA's CPU recipe), so all
are evaluated on the same held-out harmful and benign requests, and none trains on one of them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eval_bridge.bridge import SuiteSpec
from eval_bridge.distributed import main_process_first
from mitigation.timing import PhaseClock
from mitigation.training.config import TrainingConfig

log = logging.getLogger(__name__)

# RESA's CPU recipe (configs/resa/default_cpu.yaml): the held-out requests every method's table is measured on.
SHARED_SIZES = dict(n_harmful_train=54, n_harmful_eval=10, n_benign_train=160, n_benign_eval=16, vqa_share=0.75)
TRACKS = ("utility", "over_refusal", "harmful_refusal", "borderline_safe")
# Without trust-suite tasks there is no overall score: pick by refusing harm without refusing the benign.
SAFETY_WEIGHTS = {"harmful_refusal": 1.0, "over_refusal": -1.0}


@dataclass
class RecipePlan:
    """What a method trains and how its checkpoints are evaluated.

    Attributes:
        stages: the TRL stages, in order (`mitigation.training.pipeline.Stage`).
        eval_files: {"harmful": path, "benign": path, "borderline": path or None}: held-out JSONL sample files
            of the harmful-refusal, over-refusal and borderline-safe tracks (`heldout_eval_files`).
        response_format: "reasoning" to score the answer section only (RESA); None for plain answers.
        report_weights: how the report picks the best checkpoint (default `report_weights(cfg)`: the overall
            trust score, or `SAFETY_WEIGHTS` when the run evaluates the tracks only).
        model: the model the first stage trains and step 0 evaluates, when the method changes the base model
            before training (dense_connector's widened model); None: the base model.
    """

    stages: list
    eval_files: dict[str, Path]
    response_format: str | None = None
    report_weights: dict[str, float] | None = None
    model: str | None = None


def shared_sources(cfg: TrainingConfig, **sizes):
    """The offline sources (`mitigation.data.offline.build_offline_sources`) at `SHARED_SIZES` unless overridden."""
    from mitigation.data.offline import build_offline_sources

    return build_offline_sources(Path(cfg.cache_dir) / "data", seed=cfg.seed, **{**SHARED_SIZES, **sizes})


def heldout_eval_files(cfg: TrainingConfig, splits) -> dict[str, Path | None]:
    """The held-out records of `splits`, and the borderline-safe requests, as the tracks' sample files, under
    `<output_dir>/eval_data`."""
    from mitigation.data.offline import write_eval_sets

    out = Path(cfg.output_dir) / "eval_data"
    return {**write_eval_sets(splits, out), "borderline": borderline_eval_file(cfg, out)}


def borderline_eval_file(cfg: TrainingConfig, out: Path) -> Path | None:
    """The borderline_safe track's file: the user's over-refusal set, or the held-out borderline-safe requests
    (never trained on: `mitigation.data.borderline.split`); None when `eval_borderline_file` is 'none'."""
    from mitigation.data import borderline

    choice = cfg.eval_borderline_file
    if choice is not None and str(choice).strip().lower() == "none":
        return None
    prompts = borderline.load_overrefusal_file(choice) if choice else borderline.split(seed=cfg.seed)[1]
    return borderline.write_track_file(prompts, out, seed=cfg.seed)


def report_weights(cfg: TrainingConfig) -> dict[str, float] | None:
    """`SAFETY_WEIGHTS` when the run evaluates the tracks only (no overall score), else None (the overall)."""
    return SAFETY_WEIGHTS if str(cfg.eval_tasks).strip().lower() == "none" else None


def track_suite(cfg: TrainingConfig, eval_files: dict, *, response_format: str | None = None) -> SuiteSpec:
    """What the bridge runs on every checkpoint: the tracks on `eval_files` (borderline_safe if it has a file) plus
    `cfg.eval_tasks`."""
    borderline = eval_files.get("borderline")
    return SuiteSpec(
        suite=cfg.eval_suite,
        data_root=cfg.eval_data_root,
        tasks=cfg.eval_tasks,
        max_new_tokens=cfg.eval_max_new_tokens,
        batch_size=cfg.eval_batch_size,
        cache_dir=str(Path(cfg.cache_dir) / "suite"),
        harmful_file=str(eval_files["harmful"]),
        over_refusal_file=str(eval_files["benign"]),
        borderline_file=str(borderline) if borderline else None,
        tracks=TRACKS if borderline else tuple(t for t in TRACKS if t != "borderline_safe"),
        response_format=response_format,
        judge=cfg.eval_judge,
        refusal_classifier=cfg.eval_refusal_classifier,
        toxicity_classifier=cfg.eval_toxicity_classifier,
        device=cfg.eval_device,
        server=cfg.eval_server,
    )


def run_recipe(
    cfg: TrainingConfig, plan: Callable[[TrainingConfig, str], RecipePlan], *, data_phase: str = "data"
) -> str | None:
    """Run a method: its `plan(cfg, base)` trained stage by stage, every checkpoint through the bridge.

    Phases are timed into `<output_dir>/timings.json` ("base model", `data_phase`, "<STAGE> + evaluations" for
    each stage, "report"). Returns the trade-off table (on the main process; None elsewhere).
    """
    from mitigation.training.pipeline import resolve_base_model, run_stages, start_run

    start_run(cfg)
    out = Path(cfg.output_dir)
    clock = PhaseClock()
    with main_process_first():  # the main process builds (and caches) the base model and the data first
        base = resolve_base_model(cfg)
        clock.lap("base model")
        planned = plan(cfg, base)
        clock.lap(data_phase)
    _, table = run_stages(
        cfg,
        planned.stages,
        planned.model or base,
        track_suite(cfg, planned.eval_files, response_format=planned.response_format),
        report_weights=planned.report_weights if planned.report_weights is not None else report_weights(cfg),
        on_stage_end=lambda result: clock.lap(f"{result.name.upper()} + evaluations"),
    )
    clock.lap("report")
    if table is not None:
        (out / "timings.json").write_text(json.dumps(clock.laps, indent=1) + "\n")
        log.info("run finished in %.1f min: %s", sum(clock.laps.values()) / 60, clock.summary())
    return table
