"""The trade-off report of a training run: what each checkpoint gained in one aspect and lost in another.

`write_report(run_dir)` reads the eval bridge's records (`trust_eval/done/`; a queued checkpoint without one is a
failed row saying why: never evaluated, or its worker died) and writes, atomically, into `trust_eval/`:
- `tradeoff.md` / `tradeoff.csv`: one row per checkpoint, step 0 first; the five aspects, overall (only when all
  32 tasks ran; otherwise the mean of the aspects, labelled partial), the two risk types, utility and
  over-refusal, each with its delta against step 0; then the paired cross-modal differences (image minus text
  per dataset family) per checkpoint (a section of the markdown, `xm/...` columns of the CSV);
- `tradeoff.png`: aspect scores over steps, and safety vs utility across checkpoints with the Pareto front;
- `best_checkpoint.json`: the pick under the documented objective (`pick_best`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from eval_bridge.bridge import bridge_dir, completed, unfinished
from eval_bridge.files import write_atomically
from eval_bridge.report import XM_PREFIX, risk_key
from eval_bridge.tables import column_label, delta, fmt, markdown_table, signed, wilson_interval, with_delta
from eval_bridge.tasks.metrics import avg
from eval_bridge.tasks.rollup import ALL_TASKS
from eval_bridge.tasks.spec import ASPECTS, RISK_TYPES

ASPECTS_MEAN = "aspects_mean"  # the labelled stand-in for overall when a run has not scored all 32 tasks
COLUMNS = (
    *ASPECTS,
    "overall",
    ASPECTS_MEAN,
    *(risk_key(t) for t in RISK_TYPES),
    "utility",
    "over_refusal",
    "harmful_refusal",
    "borderline_safe",
)
TRAILING = ("format_failures", "reasoning_consistency", "mean_tokens")
_META = ("step", "stage", "checkpoint", "error", "tasks_scored")
N_PREFIX = "n/"  # row keys of the sample counts behind a rate column: n/harmful_refusal


def columns(records: Sequence[Mapping]) -> list[str]:
    """The score columns present in a run: the fixed ones (aspects mean only where some row lacks overall),
    per-presentation refusal, format stats, then the cross-modal differences."""
    ok = [r for r in records if not r.get("error")]
    keys = {k for r in ok for k, v in r["headline"].items() if v is not None}
    if any(r["headline"].get("overall") is None and _aspects_mean(r) is not None for r in ok):
        keys.add(ASPECTS_MEAN)
    extra = sorted(k for k in keys if k.startswith(("harmful_refusal_", "borderline_safe_")))
    cross_modal = sorted(k for k in keys if k.startswith(XM_PREFIX))
    return [k for k in (*COLUMNS, *extra, *TRAILING) if k in keys or k == "utility"] + cross_modal


def _aspects_mean(record: Mapping) -> float | None:
    return avg(*(record["headline"].get(a) for a in ASPECTS))


def rows(run_dir: str | Path) -> list[dict]:
    """One row per queued or evaluated checkpoint (step order): step, checkpoint, headline scores, deltas, error
    (for a checkpoint not evaluated: why), how many of the 32 tasks have a score (`tasks_scored`), and the sample
    count behind each rate (`n/<key>`)."""
    records = sorted([*completed(run_dir), *unfinished(run_dir)], key=lambda r: (r["step"], bool(r.get("final"))))
    base = next((r for r in records if r["step"] == 0 and not r.get("error")), None)
    keys = columns(records)
    out = []
    for r in records:
        row = {
            "step": r["step"],
            "stage": r.get("stage", "") + (" (final)" if r.get("final") else ""),
            "checkpoint": r.get("adapter") or r["model"],
            "error": r.get("error"),
            "tasks_scored": sum(v is not None for v in r.get("tasks", {}).values()),
        }
        for key in keys:
            row[key] = None if r.get("error") else _value(r, key)
            row[f"d_{key}"] = delta(row[key], _value(base, key) if base else None)
        for key, n in ({} if r.get("error") else r.get("counts", {})).items():
            if key in keys:
                row[f"{N_PREFIX}{key}"] = n
        out.append(row)
    return out


def _value(record: Mapping, key: str) -> float | None:
    return _aspects_mean(record) if key == ASPECTS_MEAN else record["headline"].get(key)


@dataclass(frozen=True)
class Objective:
    """What `pick_best` maximises: a weighted sum of columns, how the report names it, and why it was chosen."""

    weights: dict[str, float]
    name: str
    note: str | None = None


def default_objective(table: Sequence[Mapping]) -> Objective | None:
    """MultiTrust's overall when every evaluated checkpoint has one (all 32 tasks scored). Otherwise the mean of
    the available aspects, labelled "aspects mean (partial: N/32 tasks)", so the pick never optimises a number
    that claims to be overall. None when no aspect was scored either (tracks only): name an objective then."""
    ok = [r for r in table if not r.get("error")]
    if ok and all(r.get("overall") is not None for r in ok):
        return Objective({"overall": 1.0}, "overall")
    if not any(r.get(ASPECTS_MEAN) is not None for r in ok):
        return None
    counts = sorted({r["tasks_scored"] for r in ok})
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return Objective(
        {ASPECTS_MEAN: 1.0},
        f"aspects mean (partial: {n}/{len(ALL_TASKS)} tasks)",
        f"overall unavailable: MultiTrust's overall needs all {len(ALL_TASKS)} tasks; this run scored {n}",
    )


def objective_for(table: Sequence[Mapping], weights: Mapping[str, float] | None) -> Objective | None:
    """The objective of a pick: the named weights, or `default_objective`."""
    if weights:
        return Objective(dict(weights), " + ".join(f"{w:g} * {k}" for k, w in weights.items()))
    return default_objective(table)


def pick_best(
    table: Sequence[Mapping], *, weights: Mapping[str, float] | None = None, utility_tolerance: float = 5.0
) -> dict | None:
    """The checkpoint with the best objective among those whose utility fell at most `utility_tolerance` points.

    Objective: the weighted sum of the named columns (e.g. `{"safety": 2, "truthfulness": 1}`), or by default
    MultiTrust's overall score, which exists only when all 32 tasks ran; a run of fewer tasks is picked by the
    mean of its aspects, labelled as such (`default_objective`). Utility drop is measured against step 0; rows
    without a utility score are not constrained. Step 0 competes too, so a run that only hurt keeps its starting
    point. None when no row qualifies or there is no objective.
    """
    objective = objective_for(table, weights)
    if objective is None:
        return None
    best, best_value = None, None
    for row in table:
        if row.get("error"):
            continue
        drop = -(row.get("d_utility") or 0.0)
        if drop > utility_tolerance:
            continue
        if any(row.get(k) is None for k in objective.weights):
            continue
        value = sum(w * row[k] for k, w in objective.weights.items())
        if best_value is None or value > best_value:
            best, best_value = row, value
    if best is None:
        return None
    return {
        "step": best["step"],
        "checkpoint": best["checkpoint"],
        "objective": best_value,
        "objective_name": objective.name,
        "weights": objective.weights,
        "note": objective.note,
        "utility_tolerance": utility_tolerance,
    }


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (both maximised)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def _columns_of(table: Sequence[Mapping]) -> list[str]:
    keys = dict.fromkeys(k for r in table for k in r)  # every row's keys, in first-seen order
    return [k for k in keys if k not in _META and not k.startswith(("d_", N_PREFIX))]


def interval(row: Mapping, key: str) -> tuple[float, float] | None:
    """The 95% Wilson interval of a rate column of `row`; None for a score that is not a rate over samples."""
    n, value = row.get(f"{N_PREFIX}{key}"), row.get(key)
    return None if not n or value is None else wilson_interval(value, n)


def _uniform_n(table: Sequence[Mapping], key: str) -> int | None:
    counts = {r.get(f"{N_PREFIX}{key}") for r in table if not r.get("error")}
    return counts.pop() if len(counts) == 1 and None not in counts else None


def _header(key: str, table: Sequence[Mapping]) -> str:
    if key != ASPECTS_MEAN:
        n = _uniform_n(table, key)
        return column_label(key) + (f" (n={n})" if n else "")
    objective = default_objective(table)
    return objective.name if objective and objective.weights == {ASPECTS_MEAN: 1.0} else "aspects mean (partial)"


def _cell(row: Mapping, key: str, n_in_header: bool = True) -> str:
    """ "score (delta)"; a rate also gets its 95% Wilson interval, and its n unless the header names it."""
    d = None if row["step"] == 0 else row[f"d_{key}"]
    ci = interval(row, key)
    if ci is None:
        return with_delta(row[key], d)
    n = "" if n_in_header else f" n={row[f'{N_PREFIX}{key}']}"
    return f"{fmt(row[key])} [{ci[0]:.1f}, {ci[1]:.1f}]{n}" + ("" if d is None else f" ({signed(d)})")


def to_markdown(table: Sequence[Mapping], best: Mapping | None, weights: Mapping[str, float] | None = None) -> str:
    """The trade-off table, the cross-modal differences per checkpoint, and the best-checkpoint line."""
    cols = [c for c in _columns_of(table) if not c.startswith(XM_PREFIX)]
    body = []
    for row in table:
        if row.get("error"):
            body.append([row["step"], row["stage"], f"evaluation failed: {row['error']}", *[""] * (len(cols) - 1)])
        else:
            body.append([row["step"], row["stage"], *(_cell(row, c, _uniform_n(table, c) is not None) for c in cols)])
    lines = markdown_table(["step", "stage", *(_header(c, table) for c in cols)], body)
    if any(interval(r, c) for r in table for c in cols):
        lines.append("\nRates (percent) carry their 95% Wilson interval [low, high] over n samples.")
    pairs = [c for c in _columns_of(table) if c.startswith(XM_PREFIX)]
    ok = [r for r in table if not r.get("error")]
    if pairs and ok:
        lines.append(
            "\nCross-modal impact per checkpoint: the task's per-dataset metric with an image minus text only "
            "(negative = the image made the model less trustworthy; in parentheses the change since step 0)."
        )
        xm_rows = [[c[len(XM_PREFIX) :], *(_cell(r, c) for r in ok)] for c in pairs]
        lines += ["", *markdown_table(["pair", *(f"step {r['step']}" for r in ok)], xm_rows)]
    objective = objective_for(table, weights)
    if best:
        lines.append(
            f"\nBest checkpoint: step {best['step']} ({best['checkpoint']}), objective {best['objective']:.2f} "
            f"= {best['objective_name']} with utility at most {best['utility_tolerance']} points below step 0."
        )
        if best.get("note"):
            lines.append(f"({best['note']}.)")
    elif objective is None:
        lines.append(
            "\nNo best checkpoint: the default objective, MultiTrust's overall, needs all 32 tasks and no aspect "
            "was scored; name an objective (e.g. `scripts/report.py RUN --weights harmful_refusal=1,over_refusal=-1`)."
        )
    else:
        lines.append(f"\nNo checkpoint has {objective.name} with utility within the tolerance.")
    return "\n".join(lines) + "\n"


def plot(table: Sequence[Mapping], path: str | Path) -> Path:
    """Scores over steps, and safety vs utility with the Pareto front (safety = the safety aspect, or the
    harmful-request refusal rate when no trust-suite tasks ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in table if not r.get("error")]
    cols = [c for c in _columns_of(table) if c != "mean_tokens" and not c.startswith(XM_PREFIX)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = [r["step"] for r in ok]
    for key in cols:
        ax1.plot(
            steps,
            [r[key] if r[key] is not None else float("nan") for r in ok],
            marker="o",
            label=column_label(key),
            linewidth=2.5 if key in ("overall", ASPECTS_MEAN) else 1.2,
        )
    ax1.set_xlabel("step")
    ax1.set_ylabel("score (0-100)")
    ax1.set_title("scores over training")
    ax1.legend(fontsize=7)
    safety = "safety" if "safety" in cols else "harmful_refusal"
    labelled = [r for r in ok if r.get("utility") is not None and r.get(safety) is not None]
    pts = [(r["utility"], r[safety]) for r in labelled]
    if pts:
        front = pareto_front(pts)
        ax2.scatter([p[0] for p in pts], [p[1] for p in pts], c="tab:blue")
        for r, (x, y) in zip(labelled, pts, strict=True):
            ax2.annotate(f"step {r['step']}", (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
        fp = sorted(pts[i] for i in front)
        ax2.plot([p[0] for p in fp], [p[1] for p in fp], "r--", label="Pareto front")
        ax2.legend(fontsize=8)
    ax2.set_xlim(-2, 102)
    ax2.set_ylim(-2, 102)
    ax2.set_xlabel("utility")
    ax2.set_ylabel(safety.replace("_", "-"))
    ax2.set_title(f"{safety.replace('_', '-')} vs utility across checkpoints")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100, format="png")  # the name may not end in .png (write_atomically's temporary)
    plt.close(fig)
    return path


def write_report(
    run_dir: str | Path, *, weights: Mapping[str, float] | None = None, utility_tolerance: float = 5.0
) -> str:
    """Write the run's trade-off table, plot and best-checkpoint pick; returns the markdown table."""
    table = rows(run_dir)
    best = pick_best(table, weights=weights, utility_tolerance=utility_tolerance)
    out = bridge_dir(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(table, best, weights)
    write_atomically(out / "tradeoff.md", lambda tmp: tmp.write_text(markdown))
    write_atomically(out / "tradeoff.csv", lambda tmp: _write_csv(table, tmp))
    write_atomically(out / "best_checkpoint.json", lambda tmp: tmp.write_text(json.dumps(best, indent=1)))
    if table:
        write_atomically(out / "tradeoff.png", lambda tmp: plot(table, tmp))
    return markdown


def _write_csv(table: Sequence[Mapping], path: Path) -> None:
    with path.open("w", newline="") as f:
        cols = _columns_of(table)
        rated = [c for c in cols if any(f"{N_PREFIX}{c}" in r for r in table)]
        fields = ["step", "stage", "checkpoint", "tasks_scored", *cols, *(f"d_{c}" for c in cols)]
        fields += [f"{part}{c}" for c in rated for part in (N_PREFIX, "ci_low/", "ci_high/")]
        writer = csv.DictWriter(f, fieldnames=[*fields, "error"], extrasaction="ignore")
        writer.writeheader()
        for row in table:
            cis = {c: interval(row, c) for c in rated}
            extra = {f"ci_{side}/{c}": ci[k] for c, ci in cis.items() if ci for k, side in enumerate(("low", "high"))}
            writer.writerow({**row, **extra})
