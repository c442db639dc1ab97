"""The RESA recipe, top to bottom: base model -> data -> reasoning traces -> SFT -> preference pairs -> DPO, with
every checkpoint (the base model as step 0, each saved checkpoint, each stage's final model) passed through the
eval bridge, and the run ending with its trade-off table.

Evaluation tracks on every checkpoint: refusal of held-out harmful requests in three presentations (text,
typographic image, harmful text + unrelated image), refusal of held-out benign requests (over-refusal), general
utility (held-out easy-VQA), format failures and mean response length; plus any trust-suite tasks
(`eval_tasks`). Responses are scored on their answer section only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from eval_bridge.bridge import SuiteSpec
from eval_bridge.distributed import main_process_first
from eval_bridge.reasoning import DEFAULT_FORMAT
from mitigation.timing import PhaseClock
from resa.config import ResaConfig

log = logging.getLogger(__name__)


def prepare_data(cfg: ResaConfig, out: Path) -> dict:
    """Records, traces, SFT rows, DPO rows and the held-out eval files (deterministic for the seed)."""
    from resa.data import build_offline_sources, write_eval_sets
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
    train = list(splits.train) + _user_records(cfg)
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
    pairs = build_pairs(kept, traces, harmful_ratio=cfg.dpo_harmful_ratio, seed=cfg.seed, fmt=DEFAULT_FORMAT)
    pairs = pairs[: cfg.dpo_pairs]
    files = write_eval_sets(splits, out / "eval_data")
    log.info("RESA data: %d train records, traces %s, %d DPO pairs", len(train), stats, len(pairs))
    return {"sft": sft_rows(kept, traces, DEFAULT_FORMAT), "dpo": dpo_rows(pairs), "eval_files": files, "stats": stats}


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
    """What the bridge runs on every RESA checkpoint."""
    return SuiteSpec(
        suite=cfg.eval_suite,
        data_root=cfg.eval_data_root,
        tasks=cfg.eval_tasks,
        max_new_tokens=cfg.eval_max_new_tokens,
        batch_size=cfg.eval_batch_size,
        cache_dir=str(Path(cfg.cache_dir) / "suite"),
        harmful_file=str(eval_files["harmful"]),
        over_refusal_file=str(eval_files["benign"]),
        tracks=("utility", "over_refusal", "harmful_refusal"),
        response_format="reasoning",
        judge=cfg.eval_judge,
        refusal_classifier=cfg.eval_refusal_classifier,
        toxicity_classifier=cfg.eval_toxicity_classifier,
        device=cfg.eval_device,
        server=cfg.eval_server,
    )


def run_resa(cfg: ResaConfig) -> str | None:
    """Run the whole recipe; returns the trade-off table (on the main process; None elsewhere)."""
    from mitigation.training.pipeline import resolve_base_model, run_stages, start_run
    from resa.stages import dpo_stage, sft_stage

    start_run(cfg)
    out = Path(cfg.output_dir)
    clock = PhaseClock()
    with main_process_first():
        base = resolve_base_model(cfg)
        clock.lap("base model")
        data = prepare_data(cfg, out)
        clock.lap("data and traces")
    stages = [sft_stage(cfg, data["sft"]), dpo_stage(cfg, data["dpo"])]
    # Without trust-suite tasks there is no overall score: pick by refusing harm without refusing the benign.
    weights = {"harmful_refusal": 1.0, "over_refusal": -1.0} if cfg.eval_tasks == "none" else None
    _, table = run_stages(
        cfg,
        stages,
        base,
        suite_spec(cfg, data["eval_files"]),
        report_weights=weights,
        on_stage_end=lambda result: clock.lap(f"{result.name.upper()} + evaluations"),
    )
    clock.lap("report")
    if table is not None:
        (out / "timings.json").write_text(json.dumps(clock.laps, indent=1) + "\n")
        log.info("RESA finished in %.1f min: %s", sum(clock.laps.values()) / 60, clock.summary())
    return table
