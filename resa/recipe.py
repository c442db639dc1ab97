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
import os
from pathlib import Path

from eval_bridge.bridge import SuiteSpec
from eval_bridge.callback import TrustEvalCallback
from eval_bridge.distributed import init_distributed, main_process_first
from eval_bridge.reasoning import DEFAULT_FORMAT
from resa.config import ResaConfig
from resa.timing import PhaseClock

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
        device=cfg.eval_device,
    )


def _use_all_cores(world: int) -> None:
    """On CPU, give each process its share of the cores: launchers set OMP_NUM_THREADS=1, which halves a 2-core
    machine for a single-process run."""
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))


def run_resa(cfg: ResaConfig) -> str | None:
    """Run the whole recipe; returns the trade-off table (on the main process; None elsewhere)."""
    from eval_bridge.tradeoff import write_report
    from resa.stages import run_dpo, run_sft

    if "wandb" in cfg.trackers():
        os.environ.setdefault("WANDB_MODE", "offline")  # no account needed; `wandb sync` later if wanted
        os.environ.setdefault("WANDB_DIR", cfg.output_dir)
    rank, world = init_distributed()
    _use_all_cores(world)
    out = Path(cfg.output_dir)
    clock = PhaseClock()
    with main_process_first():
        if cfg.model is None:
            from resa.base_model import ensure_base_model

            base = str(ensure_base_model())
        else:
            base = cfg.model
        clock.lap("base model")
        data = prepare_data(cfg, out)
        clock.lap("data and traces")
    spec = suite_spec(cfg, data["eval_files"])
    bridge = dict(mode=cfg.eval_mode, run_dir=str(out), wait_at_end=False)

    sft_bridge = TrustEvalCallback(spec, base_model=base, stage="sft", **bridge)
    sft_final, sft_steps = run_sft(cfg, base, data["sft"], out / "sft", callbacks=[sft_bridge])
    if rank == 0:
        sft_bridge.submit(sft_final, sft_steps, stage="sft")
    clock.lap("SFT + evaluations")

    dpo_bridge = TrustEvalCallback(
        spec, base_model=str(sft_final), stage="dpo", evaluate_start=False, step_offset=sft_steps, **bridge
    )
    dpo_final, dpo_steps = run_dpo(cfg, str(sft_final), data["dpo"], out / "dpo", callbacks=[dpo_bridge])
    if rank != 0:
        return None
    dpo_bridge.submit(dpo_final, sft_steps + dpo_steps, stage="dpo")
    for callback in (sft_bridge, dpo_bridge):
        callback.finish()
    clock.lap("DPO + evaluations")
    # Without trust-suite tasks there is no overall score: pick by refusing harm without refusing the benign.
    weights = {"harmful_refusal": 1.0, "over_refusal": -1.0} if cfg.eval_tasks == "none" else None
    table = write_report(out, weights=weights)
    clock.lap("report")
    (out / "timings.json").write_text(json.dumps(clock.laps, indent=1) + "\n")
    log.info("RESA finished in %.1f min: %s", sum(clock.laps.values()) / 60, clock.summary())
    return table
