"""The paper-style mitigation table (MultiTrust-X's mitigation analysis): the base model and every registered method,
evaluated on one suite, one row per method with its scores, its deltas against the base, and what it cost.

    rows = reproduce(ReproduceConfig(methods="all", budget_steps=20, output="runs/mitigation_table"))

- The base model is evaluated once (`base/`); every method is measured against that row.
- A training method (registry kind "recipe") runs its default recipe from the base model (each stage capped at
  `budget_steps` optimizer steps when given: an equal budget), every checkpoint through its bridge on the same
  suite; its row is its final checkpoint. Its cost: training seconds (the TRL stages' own `train_runtime`) and
  optimizer steps.
- An inference method (kind "inference") wraps the base model for the same suite; its cost: evaluation time
  relative to the base's (its inference slowdown; for a training method, its final checkpoint's evaluation time
  relative to the base's, e.g. RESA's longer answers).
- All share one cache (`<output>/cache`): the held-out sets, the mini suite, and the responses, so the base row,
  every recipe's step 0 and a rerun cost nothing twice. A finished method (`<output>/<id>/row.json`) is neither
  retrained nor re-evaluated.

Written to `<output>/`: `mitigation_table.{md,csv}` (score and delta against base per column), `deltas.png` (a heat
map of the deltas) and `safety_utility.png` (safety vs utility, the Pareto front marked).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval_bridge.files import write_atomically
from eval_bridge.tasks.spec import ASPECTS, SUB_ASPECTS

log = logging.getLogger(__name__)

TRACK_COLUMNS = ("utility", "over_refusal", "harmful_refusal", "borderline_safe")
SCORE_COLUMNS = (*ASPECTS, *SUB_ASPECTS, "overall", *TRACK_COLUMNS)
COST_COLUMNS = ("train_minutes", "train_steps", "inference_slowdown")
ROW = "row.json"


@dataclass
class ReproduceConfig:
    """What `reproduce` runs (the flags of `scripts/reproduce_tables.py`).

    Attributes:
        base: the base model (path or hub id); None: the embedded default.
        methods: "all" or comma-separated registry ids.
        suite, data_root, tasks: the trust suite every row is measured on ("mini" offline; "full" with the
            MultiTrust data root); tasks None = all 32.
        budget_steps: cap on every training stage's optimizer steps (an equal budget), None: each recipe's own.
        overrides: `key=value` applied to every training method whose config has the field (e.g. smaller data).
        method_overrides: per method id, `key=value` for that method only (they win over `overrides`).
        method_args: per inference method id, its config fields (`--method-arg`).
    """

    base: str | None = None
    methods: str = "all"
    suite: str = "mini"
    data_root: str | None = None
    tasks: str | None = None
    budget_steps: int | None = None
    output: str = "runs/mitigation_table"
    seed: int = 0
    eval_batch_size: int = 32
    eval_max_new_tokens: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def cache_dir(self) -> str:
        return str(Path(self.output) / "cache")


def selected_methods(spec: str) -> list:
    """The registry entries named by `spec` ("all": by axis, then id; or "id,id" in that order), training and
    inference methods only."""
    from mitigation.registry import AXES, get_method, list_methods

    if spec.strip().lower() == "all":
        # by axis (data, architecture, training, inference), as the paper's tables; by id within an axis
        return [e for axis in AXES for e in list_methods(axis) if e.kind in ("recipe", "inference")]
    entries = [get_method(m.strip()) for m in spec.split(",") if m.strip()]
    bad = [e.id for e in entries if e.kind not in ("recipe", "inference")]
    if bad:
        raise ValueError(
            f"method(s) {', '.join(bad)} cannot be run by the table (kind data/model): no command runs them"
        )
    return entries


# --- the shared suite ----------------------------------------------------------------------------------------------


def _eval_settings(cfg: ReproduceConfig) -> dict[str, Any]:
    """The TrainingConfig fields that decide the suite: the same for the base row and every recipe's bridge."""
    fields = dict(
        seed=cfg.seed,
        cache_dir=cfg.cache_dir,
        eval_suite=cfg.suite,
        eval_data_root=cfg.data_root,
        eval_tasks=cfg.tasks or "all",
        eval_batch_size=cfg.eval_batch_size,
    )
    if cfg.eval_max_new_tokens is not None:
        fields["eval_max_new_tokens"] = cfg.eval_max_new_tokens
    return fields


def base_suite(cfg: ReproduceConfig, base: str):
    """The SuiteSpec every row is measured on (the tracks on the shared held-out sets, plus the tasks)."""
    from mitigation.config_overrides import build_config
    from mitigation.training.config import TrainingConfig
    from mitigation.training.method_recipe import heldout_eval_files, shared_sources, track_suite

    train_cfg = build_config(TrainingConfig, {**_eval_settings(cfg), "model": base, "output_dir": cfg.output})
    train_cfg = _apply_known(train_cfg, cfg.overrides)
    return track_suite(train_cfg, heldout_eval_files(train_cfg, shared_sources(train_cfg)))


def _apply_known(config, overrides: Mapping[str, Any]):
    """`config` with the `overrides` its class has as fields (converted from strings)."""
    import dataclasses

    from mitigation.config_overrides import build_config

    names = {f.name for f in dataclasses.fields(config)}
    current = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
    return build_config(type(config), {**current, **{k: v for k, v in overrides.items() if k in names}})


# --- rows ----------------------------------------------------------------------------------------------------------


def scores_of(results: Mapping) -> dict[str, float | None]:
    """A results file's table columns: the five aspects, ten sub-aspects, overall and the tracks."""
    row = {a: results.get("aspects", {}).get(a) for a in ASPECTS}
    row.update({s: results.get("sub_aspects", {}).get(s) for s in SUB_ASPECTS})
    row["overall"] = results.get("overall")
    row.update({t: results.get("tracks", {}).get(t, {}).get("score") for t in TRACK_COLUMNS})
    return row


def _save_row(out: Path, row: dict) -> dict:
    write_atomically(out / ROW, lambda tmp: tmp.write_text(json.dumps(row, indent=1) + "\n"))
    return row


def _finished(out: Path) -> dict | None:
    path = out / ROW
    return json.loads(path.read_text()) if path.is_file() else None


def evaluate_base(cfg: ReproduceConfig, base: str, suite) -> dict:
    """The base row (evaluated once; its evaluation time is what slowdowns are measured against)."""
    from eval_bridge.bridge import Manifest, evaluate_manifest

    out = Path(cfg.output) / "base"
    if done := _finished(out):
        return done
    started = time.perf_counter()
    results = evaluate_manifest(Manifest(0, base, None, str(out), suite=suite, stage="base"))
    seconds = time.perf_counter() - started
    row = {"method": "base", "kind": "base", **scores_of(results), "eval_seconds": round(seconds, 1)}
    row.update(train_minutes=0.0, train_steps=0, inference_slowdown=1.0, results=str(out / "results.json"))
    return _save_row(out, row)


def run_inference_method(cfg: ReproduceConfig, entry, base: str, suite, base_row: dict) -> dict:
    """An inference method's row: the base model wrapped by it, on the same suite."""
    from eval_bridge.bridge import Manifest, evaluate_manifest
    from mitigation.registry import build_inference_method

    out = Path(cfg.output) / entry.id
    if done := _finished(out):
        return done
    method = build_inference_method(entry.id, **cfg.method_args.get(entry.id, {}))
    started = time.perf_counter()
    results = evaluate_manifest(Manifest(0, base, None, str(out), suite=suite, stage=entry.id), method=method)
    seconds = time.perf_counter() - started
    row = {"method": entry.id, "kind": "inference", **scores_of(results), "eval_seconds": round(seconds, 1)}
    row.update(train_minutes=0.0, train_steps=0, results=str(out / "results.json"))
    row["inference_slowdown"] = _ratio(seconds, base_row.get("eval_seconds"))
    return _save_row(out, row)


def recipe_config(cfg: ReproduceConfig, entry, base: str):
    """A training method's config: its defaults, the shared suite settings, the budget and the overrides."""
    from mitigation.config_overrides import ConfigError, build_config, unknown_key_message
    from mitigation.registry import load_config_class

    fields = {**_eval_settings(cfg), "model": base, "output_dir": str(Path(cfg.output) / entry.id), "report_to": "none"}
    if cfg.budget_steps is not None:
        fields["max_steps"] = cfg.budget_steps
    config = _apply_known(build_config(load_config_class(entry), fields), cfg.overrides)
    own = cfg.method_overrides.get(entry.id, {})
    unknown = sorted(set(own) - set(vars(config)))
    if unknown:
        valid = sorted(vars(config))
        raise ConfigError(f"method {entry.id!r}: {unknown_key_message(unknown[0], type(config), valid)}")
    return _apply_known(config, own)


def run_recipe_method(cfg: ReproduceConfig, entry, base: str, base_row: dict) -> dict:
    """A training method's row: its recipe trained from the base, its final checkpoint's scores and its cost."""
    from eval_bridge.bridge import completed
    from mitigation.registry import load_target
    from mitigation.training.pipeline import eval_mode

    out = Path(cfg.output) / entry.id
    config = recipe_config(cfg, entry, base)
    sync = eval_mode(config, 1) == "sync"
    if done := _finished(out):
        # the cost is re-derived from the run's files, so a row written by an older toolkit reads the same
        seconds, steps = _training_cost(out, completed(out), sync)
        return {**done, "train_minutes": round(seconds / 60, 2), "train_steps": steps}
    load_target(entry)(config)
    records = completed(out)
    finals = [r for r in records if r.get("final") and not r.get("error")]
    if not finals:
        raise RuntimeError(f"method {entry.id!r}: its run left no evaluated final checkpoint in {out}/trust_eval")
    final = finals[-1]
    results = json.loads(Path(final["results_path"]).read_text())
    seconds, steps = _training_cost(out, records, sync)
    row = {"method": entry.id, "kind": "training", **scores_of(results), "eval_seconds": final.get("seconds")}
    row.update(train_minutes=round(seconds / 60, 2), train_steps=steps, results=final["results_path"])
    row["inference_slowdown"] = _ratio(final.get("seconds"), base_row.get("eval_seconds"))
    return _save_row(out, row)


def _training_cost(run_dir: Path, records: list[dict], sync: bool) -> tuple[float, int]:
    """(seconds, optimizer steps) of a run. Seconds: in sync mode the run's phases (`timings.json`: data, stages,
    saving) less every evaluation's seconds, since the bridge evaluated inside them (TRL's `train_runtime` counts
    the step-0 evaluation); in worker mode, or without timings, the stages' `train_runtime`."""
    seconds, steps = 0.0, 0
    for history in sorted(run_dir.glob("*/log_history.json")):
        last = json.loads(history.read_text())[-1:] or [{}]
        seconds += float(last[0].get("train_runtime", 0.0))
        steps += int(last[0].get("step", 0))
    timings = run_dir / "timings.json"
    if sync and timings.is_file():
        phases = json.loads(timings.read_text())
        seconds = sum(phases.values()) - sum(float(r.get("seconds") or 0.0) for r in records)
    return max(seconds, 0.0), steps


def _ratio(x: float | None, base: float | None) -> float | None:
    return round(x / base, 2) if x and base else None


def reproduce(cfg: ReproduceConfig) -> list[dict]:
    """Evaluate the base and every selected method (resumable), write the table and plots; returns the rows."""
    from tqdm.auto import tqdm

    entries = selected_methods(cfg.methods)
    _check_overrides(cfg, entries)
    base = cfg.base or _embedded_default()
    suite = base_suite(cfg, base)
    rows = [evaluate_base(cfg, base, suite)]
    for entry in tqdm(entries, desc="methods", unit="method"):
        log.info("method %s (%s)", entry.id, entry.kind)
        if entry.kind == "inference":
            rows.append(run_inference_method(cfg, entry, base, suite, rows[0]))
        else:
            rows.append(run_recipe_method(cfg, entry, base, rows[0]))
    write_table(rows, Path(cfg.output))
    return rows


def _embedded_default() -> str:
    from mitigation.base_model import ensure_base_model

    return str(ensure_base_model())


def _check_overrides(cfg: ReproduceConfig, entries: list) -> None:
    """Every shared override is a field of some selected training method (a typo is an error, not a no-op)."""
    import dataclasses

    from mitigation.config_overrides import ConfigError, unknown_key_message
    from mitigation.registry import load_config_class
    from mitigation.training.config import TrainingConfig

    classes = [load_config_class(e) for e in entries if e.kind == "recipe"] or [TrainingConfig]
    valid = sorted({f.name for c in classes for f in dataclasses.fields(c)})
    for key in cfg.overrides:
        if key not in valid:
            raise ConfigError(f"--override: {unknown_key_message(key, classes[0], valid)}")


# --- the table -----------------------------------------------------------------------------------------------------


def with_deltas(rows: list[dict]) -> list[dict]:
    """Each row's score columns with `d_<column>` = score minus the base row's (None where either is missing)."""
    from eval_bridge.tables import delta

    base = rows[0]
    return [{**r, **{f"d_{c}": delta(r.get(c), base.get(c)) for c in SCORE_COLUMNS}} for r in rows]


def _columns(rows: list[dict]) -> list[str]:
    """The score columns some row has a value for, in the fixed order."""
    return [c for c in SCORE_COLUMNS if any(r.get(c) is not None for r in rows)]


def write_table(rows: list[dict], out: Path) -> str:
    """`mitigation_table.md` / `.csv`, `deltas.png`, `safety_utility.png`; returns the markdown."""
    import csv

    from eval_bridge.tables import column_label, fmt, markdown_table, with_delta

    table = with_deltas(rows)
    cols = _columns(table)
    header = ["method", "kind", *(column_label(c) for c in cols), "train (min)", "train steps", "inference slowdown"]
    body = []
    for r in table:
        scores = [fmt(r.get(c)) if r["method"] == "base" else with_delta(r.get(c), r.get(f"d_{c}")) for c in cols]
        slowdown = r.get("inference_slowdown")
        cost = [
            fmt(r.get("train_minutes")),
            r.get("train_steps", ""),
            "n/a" if slowdown is None else f"{slowdown:.2f}x",
        ]
        body.append([r["method"], r["kind"], *scores, *cost])
    text = "\n".join(markdown_table(header, body))
    text += (
        "\n\nScores 0-100 (deltas against base in parentheses). Train (min): the recipe's wall time (data, training,"
        " saving) less its evaluations; inference slowdown: evaluation time / the base's.\n"
    )
    for safety_key in dict.fromkeys((safety_axis(table), "harmful_refusal")):
        text += "\n" + "\n".join(pareto_lines(table, safety_key)) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "mitigation_table.md").write_text(text)
    with (out / "mitigation_table.csv").open("w", newline="") as f:
        fields = ["method", "kind", *cols, *(f"d_{c}" for c in cols), *COST_COLUMNS, "eval_seconds"]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)
    _heatmap(table, cols, out / "deltas.png")
    _scatter(table, out / "safety_utility.png")
    return text


def _heatmap(table: list[dict], cols: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = table[1:]
    if not methods or not cols:
        return
    values = np.array([[r.get(f"d_{c}") if r.get(f"d_{c}") is not None else np.nan for c in cols] for r in methods])
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(cols)), 0.6 * len(methods) + 2))
    image = ax.imshow(values, cmap="RdBu", vmin=-bound or -1, vmax=bound or 1, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), [c.replace("_", "-") for c in cols], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(methods)), [r["method"] for r in methods], fontsize=8)
    ax.set_title("change against the base model (points)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def safety_axis(table: list[dict]) -> str:
    """The safety coordinate of the scatter: the safety aspect when every row has it, else harmful refusal."""
    return "safety" if all(r.get("safety") is not None for r in table) else "harmful_refusal"


def dominates(a: Mapping, b: Mapping, safety_key: str) -> bool:
    """Whether row `a` is at least as safe and as useful as row `b`, and strictly better in one of the two."""
    pa, pb = (a.get(safety_key), a.get("utility")), (b.get(safety_key), b.get("utility"))
    if None in pa or None in pb:
        return False
    return pa[0] >= pb[0] and pa[1] >= pb[1] and pa != pb


def pareto_lines(table: list[dict], safety_key: str) -> list[str]:
    """The Pareto front of `safety_key` vs utility (the rows nothing dominates) and, for every other row, the rows
    that dominate it (markdown)."""
    label = safety_key.replace("_", " ")
    rows = [r for r in table if r.get(safety_key) is not None and r.get("utility") is not None]
    if not rows:
        return [f"{label.capitalize()} vs utility: no row has both."]
    over = {r["method"]: [o["method"] for o in rows if o is not r and dominates(o, r, safety_key)] for r in rows}
    front = [m for m, by in over.items() if not by]
    lines = [
        f"**{label.capitalize()} vs utility.** Pareto front (no other row is as good on both, better on one): "
        f"{', '.join(front)}."
    ]
    return lines + [f"- {m} is dominated by {', '.join(by)}" for m, by in over.items() if by]


def _scatter(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eval_bridge.tradeoff import pareto_front

    y_key = safety_axis(table)
    points = [(r, r.get("utility"), r.get(y_key)) for r in table]
    points = [(r, x, y) for r, x, y in points if x is not None and y is not None]
    fig, ax = plt.subplots(figsize=(6, 5))
    if points:
        front = set(pareto_front([(x, y) for _, x, y in points]))
        for i, (r, x, y) in enumerate(points):
            ax.scatter(
                [x], [y], c="tab:red" if i in front else "tab:blue", marker="*" if r["method"] == "base" else "o"
            )
            ax.annotate(r["method"], (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
        fp = sorted((x, y) for i, (_, x, y) in enumerate(points) if i in front)
        ax.plot([p[0] for p in fp], [p[1] for p in fp], "r--", label="Pareto front")
        ax.legend(fontsize=8)
    ax.set_xlabel("utility")
    ax.set_ylabel(y_key.replace("_", "-"))
    ax.set_title(f"{y_key.replace('_', '-')} vs utility per method")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
