"""The RESA recipe, top to bottom: base model -> data -> reasoning traces -> SFT -> preference pairs -> DPO, with
every checkpoint (the base model as step 0, each saved checkpoint, each stage's final model) passed through the
eval bridge, and the run ending with its trade-off table.

Evaluation tracks on every checkpoint: refusal of held-out harmful requests in three presentations (text,
typographic image, harmful text + unrelated image), refusal of held-out benign requests (over-refusal) and of
held-out safe requests that only look risky (borderline_safe: text and beside an unrelated image), general
utility (held-out easy-VQA), format failures, reasoning consistency and mean response length; plus any
trust-suite tasks (`eval_tasks`). Responses are scored on their answer section only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from eval_bridge.bridge import SuiteSpec
from eval_bridge.reasoning import DEFAULT_FORMAT
from mitigation.training.method_recipe import RecipePlan, heldout_eval_files, run_recipe, track_suite
from resa.config import ResaConfig

log = logging.getLogger(__name__)


def prepare_data(cfg: ResaConfig, base: str | None = None) -> dict:
    """Records, traces, SFT rows, DPO rows and the held-out eval files (deterministic for the seed); `base` (the
    base model) answers the benign text requests when `benign_answers` is base_model."""
    from mitigation.data.offline import build_offline_sources
    from resa.pairs import build_pairs, dpo_rows
    from resa.traces import TeacherTraceBuilder, TemplateTraceBuilder, build_traces, sft_rows

    splits = build_offline_sources(
        Path(cfg.cache_dir) / "data",
        seed=cfg.seed,
        n_harmful_train=cfg.n_harmful_train,
        n_harmful_eval=cfg.n_harmful_eval,
        n_benign_train=cfg.n_benign_train,
        n_benign_eval=cfg.n_benign_eval,
        vqa_share=cfg.benign_vqa_share,
    )
    train = list(splits.train) + _borderline_records(cfg) + _user_records(cfg)
    if cfg.benign_answers == "base_model":
        train = _with_base_answers(cfg, base, train)
    elif cfg.benign_answers != "reference":
        raise ValueError(f"benign_answers must be 'reference' or 'base_model', got {cfg.benign_answers!r}")
    if cfg.trace_mode == "teacher":
        if not cfg.teacher:
            raise ValueError("trace_mode=teacher needs --teacher (openai:<model>@<base_url> or hf:<path>)")
        from eval_bridge.scorers.judges import judge_from_spec

        builder = TeacherTraceBuilder(judge_from_spec(cfg.teacher), DEFAULT_FORMAT)
    elif cfg.trace_mode == "template":
        builder = TemplateTraceBuilder(DEFAULT_FORMAT, seed=cfg.seed)
    else:
        raise ValueError(f"trace_mode must be 'template' or 'teacher', got {cfg.trace_mode!r}")
    traces, stats = build_traces(train, builder)
    kept = [r for r in train if r.id in traces]
    pairs = build_pairs(
        kept,
        traces,
        harmful_ratio=cfg.dpo_harmful_ratio,
        seed=cfg.seed,
        fmt=DEFAULT_FORMAT,
        inconsistent_share=cfg.dpo_inconsistent_share,
    )
    pairs = pairs[: cfg.dpo_pairs]
    files = heldout_eval_files(cfg, splits)
    log.info("RESA data: %d train records, traces %s, %d DPO pairs", len(train), stats, len(pairs))
    return {"sft": sft_rows(kept, traces, DEFAULT_FORMAT), "dpo": dpo_rows(pairs), "eval_files": files, "stats": stats}


def _borderline_records(cfg: ResaConfig) -> list:
    """The first `n_borderline_train` prompts of the borderline-safe train split (safe and contrast, seeded order)."""
    if cfg.n_borderline_train <= 0:
        return []
    if cfg.benign_answers != "base_model" and cfg.trace_mode != "teacher":
        raise ValueError(
            "n_borderline_train needs answers for its safe requests: set benign_answers=base_model (or "
            "trace_mode=teacher), or n_borderline_train=0"
        )
    import random

    from mitigation.data import borderline

    train, _ = borderline.split(seed=cfg.seed)
    random.Random(f"borderline-train:{cfg.seed}").shuffle(train)
    presentations = [p.strip() for p in cfg.borderline_presentations.split(",") if p.strip()]
    image_dir = Path(cfg.cache_dir) / "data" / "borderline_train"
    return borderline.to_records(
        train[: cfg.n_borderline_train], "train", presentations=presentations, image_dir=image_dir, seed=cfg.seed
    )


def _with_base_answers(cfg: ResaConfig, base: str | None, records: list) -> list:
    """`records` with the benign text requests answered by the base model (`resa.base_answers`)."""
    from resa.base_answers import base_model_answers, with_base_answers

    if base is None:
        raise ValueError("benign_answers=base_model needs the base model: pass `base` to prepare_data")
    text = [r for r in records if not r.harmful and r.presentation in ("benign_text", "unrelated_image")]
    return with_base_answers(records, base_model_answers(base, text, cache_dir=cfg.cache_dir))


def _user_records(cfg: ResaConfig) -> list:
    """Records from the user's own data files, in the public formats resa.loaders knows."""
    from resa import loaders

    records = []
    for path, load in (
        (cfg.vlguard_file, loaders.load_vlguard),
        (cfg.spa_vl_file, loaders.load_spavl),
        (cfg.jailbreakv_file, loaders.load_jailbreakv),
    ):
        if path:
            records += load(path, data_root=cfg.user_data_root or str(Path(path).parent))
    return records


def suite_spec(cfg: ResaConfig, eval_files: dict) -> SuiteSpec:
    """What the bridge runs on every RESA checkpoint: the shared tracks, scored on the answer section."""
    return track_suite(cfg, eval_files, response_format="reasoning")


def plan(cfg: ResaConfig, base: str) -> RecipePlan:
    """RESA's stages (SFT on traces, then DPO) and its held-out evaluation sets."""
    from resa.stages import dpo_stage, sft_stage

    data = prepare_data(cfg, base)
    stages = [sft_stage(cfg, data["sft"]), dpo_stage(cfg, data["dpo"])]
    return RecipePlan(stages, data["eval_files"], response_format="reasoning")


def run_resa(cfg: ResaConfig) -> str | None:
    """Run the whole recipe; returns the trade-off table (on the main process; None elsewhere)."""
    return run_recipe(cfg, plan, data_phase="data and traces")
