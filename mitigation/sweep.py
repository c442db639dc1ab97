"""Ablation sweeps: a grid and/or list of config overrides of any registered training method, each run trained and
bridged into its own directory, then one table and plot over the runs.

A sweep file (YAML):

    method: resa                            # a registry id of kind "recipe"
    config: configs/resa/default_cpu.yaml   # the base recipe (optional); every run starts from it
    output_dir: runs/sweeps/resa_dpo        # run directories go under it, one per run
    overrides: {dpo_max_steps: 4}           # applied to every run (optional)
    grid:                                   # cartesian product (optional)
      dpo_beta: [0.05, 0.1]
      dpo_learning_rate: [1.0e-5, 5.0e-5]
    runs:                                   # extra runs, each a dict of overrides (optional)
      - {dpo_beta: 0.5}
    metric: harmful_refusal                 # the trade-off-table column the summary reports
    launcher: local                         # local | accelerate | slurm (--launcher overrides it)
    accelerate_config: configs/accelerate/multi_gpu.yaml
    slurm: {partition: gpu, gpus_per_node: 8, cpus_per_task: 16, timeout_min: 240, array_parallelism: 4}

An inference-time method (e.g. `vcd`) sweeps the same way: each run evaluates `model:` (default: the embedded
default) through the method with the run's overrides as its config, on the suite the `evaluation:` block sets
(any `eval_*` field of the training config, e.g. `{eval_tasks: truthfulness}`, plus `cache_dir`, shared by the runs).

Each run's directory holds `sweep_run.json` (its overrides and, once it ends, its status: done or failed with the
error). A finished run is skipped by a rerun; a failed one is recorded and the sweep goes on (a rerun retries it).
Launchers: `local` trains the runs one after another in this process; `accelerate` runs each through
`accelerate launch --config_file ... scripts/train_mitigation.py` (the same sweep on a multi-GPU node); `slurm`
submits them as a job array with submitit (partition, GPUs, time limit and array parallelism from `slurm:`) and
gathers the results the same way. No scheduler of our own: the Slurm path is submitit's.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval_bridge.files import write_atomically

log = logging.getLogger(__name__)

LAUNCHERS = ("local", "accelerate", "slurm")
STATE = "sweep_run.json"
REPO = Path(__file__).resolve().parents[1]
_KEYS = {
    "model",
    "evaluation",
    "method",
    "config",
    "output_dir",
    "overrides",
    "grid",
    "runs",
    "metric",
    "launcher",
    "accelerate_config",
    "slurm",
}


class SweepError(ValueError):
    """A sweep file that cannot be run; the message names the file, the key and what to change."""


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its name (its directory under the sweep's output_dir) and its overrides."""

    name: str
    overrides: dict[str, Any]


@dataclass
class Sweep:
    """A parsed sweep file (see the module docstring)."""

    method: str
    output_dir: Path
    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    metric: str = "harmful_refusal"
    launcher: str = "local"
    accelerate_config: str | None = None
    slurm: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)
    source: str = "<sweep>"

    def expand(self) -> list[Run]:
        """Every run: the grid's cartesian product, then the listed runs; each on top of `overrides`."""
        keys = list(self.grid)
        points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.grid.values())]
        points = (points if keys else []) + [dict(r) for r in self.runs]
        if not points:
            points = [{}]  # no grid and no runs: the base recipe once
        out, seen = [], set()
        for point in points:
            name = run_name(point)
            if name in seen:
                raise SweepError(f"{self.source}: two runs have the same overrides ({name}); remove one")
            seen.add(name)
            out.append(Run(name, {**self.overrides, **point}))
        return out

    def run_dir(self, run: Run) -> Path:
        return self.output_dir / run.name


def run_name(point: Mapping[str, Any]) -> str:
    """A directory name from a run's own overrides: `dpo_beta=0.1,dpo_learning_rate=1e-05` ("base" if none)."""
    if not point:
        return "base"
    parts = [f"{k}={_short(v)}" for k, v in sorted(point.items())]
    return re.sub(r"[^\w.=,+-]", "_", ",".join(parts))


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read and check a sweep file: known keys, a registered recipe method, override keys that are its fields."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: expected a mapping of sweep keys ({', '.join(sorted(_KEYS))})")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise SweepError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(_KEYS))}")
    for key in ("method", "output_dir"):
        if not data.get(key):
            raise SweepError(f"{path}: `{key}` is required")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise SweepError(f"{path}: `grid` must map each field to a non-empty list of values")
    runs = data.get("runs") or []
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise SweepError(f"{path}: `runs` must be a list of mappings of overrides")
    sweep = Sweep(
        method=str(data["method"]),
        output_dir=Path(data["output_dir"]),
        config=data.get("config"),
        overrides=dict(data.get("overrides") or {}),
        grid=grid,
        runs=runs,
        metric=str(data.get("metric", "harmful_refusal")),
        launcher=str(data.get("launcher", "local")),
        accelerate_config=data.get("accelerate_config"),
        slurm=dict(data.get("slurm") or {}),
        model=data.get("model"),
        evaluation=dict(data.get("evaluation") or {}),
        source=str(path),
    )
    check_sweep(sweep)
    return sweep


def check_sweep(sweep: Sweep) -> None:
    """Every override key of every run is a field of the method's config (before anything trains)."""
    from mitigation.config_overrides import unknown_key_message
    from mitigation.registry import get_method, load_config_class

    if sweep.launcher not in LAUNCHERS:
        raise SweepError(f"{sweep.source}: launcher must be one of {', '.join(LAUNCHERS)}, got {sweep.launcher!r}")
    try:
        entry = get_method(sweep.method)
    except ValueError as err:
        raise SweepError(f"{sweep.source}: {err}") from None
    if entry.kind == "inference":
        _check_evaluation(sweep)
    elif entry.kind != "recipe":
        raise SweepError(
            f"{sweep.source}: method {sweep.method!r} is not a training recipe (kind {entry.kind}): sweeps train"
        )
    config_class = load_config_class(entry)
    valid = sorted(f.name for f in dataclasses.fields(config_class))
    for run in sweep.expand():
        for key, value in run.overrides.items():
            if key not in valid:
                raise SweepError(f"{sweep.source}: run {run.name}: {unknown_key_message(key, config_class, valid)}")
            if key == "output_dir":
                raise SweepError(f"{sweep.source}: output_dir is the sweep's (each run gets its own directory)")
            if value is None or isinstance(value, dict | list):
                raise SweepError(
                    f"{sweep.source}: run {run.name}: {key} must be a plain value (a number, string or bool), "
                    f"got {value!r}"
                )


# --- one run -----------------------------------------------------------------------------------------------------


def read_state(run_dir: Path) -> dict:
    """A run's recorded state ({} before it started)."""
    path = run_dir / STATE
    return json.loads(path.read_text()) if path.is_file() else {}


def _record(run_dir: Path, **state) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(run_dir / STATE, lambda tmp: tmp.write_text(json.dumps(state, indent=1, default=str) + "\n"))


def train_flags(sweep: Sweep, run: Run) -> list[str]:
    """`scripts/train_mitigation.py` arguments of a run: the method, the base recipe, its overrides, its directory."""
    flags = ["--method", sweep.method]
    if sweep.config:
        flags += ["--config", str(sweep.config)]
    for key, value in run.overrides.items():
        flags += [f"--{key}", json.dumps(value) if isinstance(value, bool) else str(value)]
    return [*flags, "--output_dir", str(sweep.run_dir(run))]


def is_inference(sweep: Sweep) -> bool:
    """Whether the sweep's method is an inference-time one (its runs evaluate; they do not train)."""
    from mitigation.registry import get_method

    return get_method(sweep.method).kind == "inference"


def _check_evaluation(sweep: Sweep) -> None:
    """An inference sweep's `evaluation:` keys are the training config's eval fields (or cache_dir)."""
    import dataclasses

    from mitigation.training.config import TrainingConfig

    valid = [*sorted(f.name for f in dataclasses.fields(TrainingConfig) if f.name.startswith("eval_")), "cache_dir"]
    bad = sorted(set(sweep.evaluation) - set(valid))
    if bad:
        raise SweepError(f"{sweep.source}: evaluation: unknown key {bad[0]!r}; valid keys: {', '.join(valid)}")


def evaluation_suite(sweep: Sweep, model: str):
    """The suite an inference sweep's runs are evaluated on (the tracks on the shared held-out sets + tasks)."""
    from mitigation.config_overrides import build_config
    from mitigation.training.config import TrainingConfig
    from mitigation.training.method_recipe import heldout_eval_files, shared_sources, track_suite

    fields = {"cache_dir": str(sweep.output_dir / "cache"), **sweep.evaluation, "model": model}
    cfg = build_config(TrainingConfig, {**fields, "output_dir": str(sweep.output_dir)})
    return track_suite(cfg, heldout_eval_files(cfg, shared_sources(cfg)))


def evaluate_run(sweep: Sweep, run: Run) -> None:
    """Evaluate the sweep's model through the inference method configured by the run's overrides."""
    from eval_bridge.bridge import Manifest, evaluate_manifest
    from mitigation.registry import build_inference_method

    if sweep.model:
        model = sweep.model
    else:
        from mitigation.base_model import ensure_base_model

        model = str(ensure_base_model())
    method = build_inference_method(sweep.method, **run.overrides)
    manifest = Manifest(0, model, None, str(sweep.run_dir(run)), suite=evaluation_suite(sweep, model))
    evaluate_manifest(manifest, method=method)


def run_in_process(sweep: Sweep, run: Run) -> None:
    """Run one run in this process: train it through the same parser as `scripts/train_mitigation.py`, or
    evaluate it for an inference method."""
    from mitigation.registry import get_method, load_config_class, load_target

    entry = get_method(sweep.method)
    if entry.kind == "inference":
        evaluate_run(sweep, run)
        return
    config = parse_config(load_config_class(entry), train_flags(sweep, run)[2:])
    load_target(entry)(config)


def parse_config(config_class: type, flags: list[str]):
    """A config from `--config FILE` and `--key value` flags, as TRL's TrlParser reads them on the command line."""
    from trl import TrlParser

    parser = TrlParser((config_class,), allow_abbrev=False)
    (config,) = parser.parse_args_and_config(flags)
    return config


def run_with_accelerate(sweep: Sweep, run: Run) -> None:
    """Train one run through `accelerate launch --config_file ...` (a failure raises with the log's tail)."""
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    if sweep.accelerate_config:
        launch += ["--config_file", str(sweep.accelerate_config)]
    cmd = [*launch, str(REPO / "scripts" / "train_mitigation.py"), *train_flags(sweep, run)]
    run_dir = sweep.run_dir(run)
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "launch.log").open("w") as logfile:
        proc = subprocess.run(cmd, stdout=logfile, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode != 0:
        tail = (run_dir / "launch.log").read_text()[-2000:]
        raise RuntimeError(f"accelerate launch exited with {proc.returncode}; last lines of launch.log:\n{tail}")


def execute(sweep: Sweep, run: Run, launcher: str) -> dict:
    """Run one run with `launcher` and record its outcome; never raises for a failed run."""
    run_dir = sweep.run_dir(run)
    try:
        _record(run_dir, name=run.name, overrides=run.overrides, status="running", pid=os.getpid())
        # An inference run evaluates in this process whatever the launcher (it has no training to distribute).
        accelerate = launcher == "accelerate" and not is_inference(sweep)
        (run_with_accelerate if accelerate else run_in_process)(sweep, run)
    except BaseException as err:  # a run's failure is recorded; the sweep goes on (KeyboardInterrupt stops it)
        state = dict(name=run.name, overrides=run.overrides, status="failed", error=f"{type(err).__name__}: {err}")
        _record(run_dir, **state, traceback=traceback.format_exc(limit=8))
        log.error("run %s failed: %s", run.name, state["error"])
        if isinstance(err, KeyboardInterrupt):
            raise
        return state
    state = dict(name=run.name, overrides=run.overrides, status="done")
    _record(run_dir, **state)
    return state


def _slurm_job(sweep: Sweep, run: Run) -> dict:
    """What a Slurm array task runs (module-level, so submitit can pickle it)."""
    return execute(sweep, run, "local")


# --- the sweep ---------------------------------------------------------------------------------------------------


def pending(sweep: Sweep) -> list[Run]:
    """The runs not yet done (failed and interrupted ones are run again)."""
    return [r for r in sweep.expand() if read_state(sweep.run_dir(r)).get("status") != "done"]


def run_sweep(sweep: Sweep, launcher: str | None = None, *, slurm_cluster: str | None = None) -> list[dict]:
    """Run every pending run with `launcher` (default the sweep's), then write the summary; returns the states.

    `slurm_cluster` is submitit's `cluster` (None: Slurm when available; "local": submitit's local executor, the
    same code path without a cluster, for tests).
    """
    from tqdm.auto import tqdm

    launcher = launcher or sweep.launcher
    if launcher not in LAUNCHERS:
        raise SweepError(f"launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    todo = pending(sweep)
    skipped = len(sweep.expand()) - len(todo)
    if skipped:
        log.info("%d of %d runs already done: skipped", skipped, len(sweep.expand()))
    if launcher == "slurm" and todo:
        _submit(sweep, todo, slurm_cluster)
    else:
        for run in tqdm(todo, desc=f"sweep {sweep.method}", unit="run"):
            execute(sweep, run, launcher)
    write_summary(sweep)
    return [read_state(sweep.run_dir(r)) for r in sweep.expand()]


def _submit(sweep: Sweep, runs: Sequence[Run], cluster: str | None) -> None:
    import submitit

    executor = submitit.AutoExecutor(folder=str(sweep.output_dir / "slurm" / "%j"), cluster=cluster)
    options = dict(sweep.slurm)
    params = {"timeout_min": int(options.pop("timeout_min", 240))}
    for key in ("gpus_per_node", "cpus_per_task", "nodes", "tasks_per_node", "mem_gb"):
        if key in options:
            params[key] = options.pop(key)
    for key in ("partition", "array_parallelism", "account", "qos", "constraint"):
        if key in options:
            params[f"slurm_{key}"] = options.pop(key)
    if options:
        raise SweepError(f"{sweep.source}: unknown slurm option(s) {sorted(options)}")
    executor.update_parameters(name=f"sweep-{sweep.method}", **params)
    jobs = executor.map_array(_slurm_job, [sweep] * len(runs), list(runs))
    log.info("submitted %d runs as %s", len(jobs), jobs[0].job_id.split("_")[0] if jobs else "-")
    for run, job in zip(runs, jobs, strict=True):
        try:
            job.result()  # waits; the run records its own state in its directory
        except Exception as err:  # the job itself died (time limit, node failure): record it
            _record(sweep.run_dir(run), name=run.name, overrides=run.overrides, status="failed", error=str(err))


# --- the summary -------------------------------------------------------------------------------------------------


def summary_rows(sweep: Sweep) -> list[dict]:
    """One row per run: its overrides, status, the metric at its best checkpoint and at its final one."""
    from eval_bridge.bridge import bridge_dir
    from eval_bridge.tradeoff import rows as tradeoff_rows

    out = []
    for run in sweep.expand():
        run_dir = sweep.run_dir(run)
        state = read_state(run_dir)
        row: dict[str, Any] = {"run": run.name, **{k: run.overrides.get(k) for k in _swept_keys(sweep)}}
        row["status"] = state.get("status", "not run")
        row["error"] = state.get("error")
        row["best_step"] = row["best"] = row["final"] = None
        if state.get("status") == "done" and (run_dir / "results.json").is_file():  # an inference run
            from mitigation.reproduce import scores_of

            results = json.loads((run_dir / "results.json").read_text())
            row["best"] = row["final"] = scores_of(results).get(sweep.metric)
        elif state.get("status") == "done":
            table = [r for r in tradeoff_rows(run_dir) if not r.get("error")]
            best_file = bridge_dir(run_dir) / "best_checkpoint.json"
            best = json.loads(best_file.read_text()) if best_file.is_file() else None
            if table:
                row["final"] = table[-1].get(sweep.metric)
            if best:
                row["best_step"] = best["step"]
                row["best"] = next((r.get(sweep.metric) for r in table if r["step"] == best["step"]), None)
        out.append(row)
    return out


def _swept_keys(sweep: Sweep) -> list[str]:
    return list(dict.fromkeys([*sweep.grid, *(k for r in sweep.runs for k in r)]))


def write_summary(sweep: Sweep) -> Path:
    """`sweep.md`, `sweep.csv` and `sweep.png` (the metric per run, best and final) under the sweep's output_dir."""
    import csv

    from eval_bridge.tables import fmt, markdown_table

    rows = summary_rows(sweep)
    out = sweep.output_dir
    out.mkdir(parents=True, exist_ok=True)
    keys = _swept_keys(sweep)
    header = ["run", *keys, "status", f"{sweep.metric} (best)", "best step", f"{sweep.metric} (final)"]
    body = [
        [r["run"], *(r[k] for k in keys), r["status"] + (f": {r['error']}" if r["error"] else ""), fmt(r["best"]),
         r["best_step"] if r["best_step"] is not None else "", fmt(r["final"])]
        for r in rows
    ]  # fmt: skip
    text = f"# Sweep of `{sweep.method}` ({len(rows)} runs; {sweep.source})\n\n" + "\n".join(
        markdown_table(header, body)
    )
    (out / "sweep.md").write_text(text + "\n")
    with (out / "sweep.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run", *keys, "status", "error", "best", "best_step", "final"])
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, sweep.metric, out / "sweep.png")
    return out / "sweep.md"


def _plot(rows: list[dict], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4))
    xs = range(len(rows))
    for offset, key, label in ((-0.2, "best", "best checkpoint"), (0.2, "final", "final checkpoint")):
        ax.bar([x + offset for x in xs], [r[key] if r[key] is not None else 0 for r in rows], 0.4, label=label)
    ax.set_xticks(list(xs), [r["run"] for r in rows], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(metric.replace("_", "-"))
    ax.set_title(f"{metric.replace('_', '-')} per run (failed runs: 0)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
