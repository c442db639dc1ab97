"""The trade-off report of a training run: what each checkpoint gained in one aspect and lost in another.

`write_report(run_dir)` reads the eval bridge's records (`trust_eval/done/`) and writes, into `trust_eval/`:
- `tradeoff.md` / `tradeoff.csv`: one row per checkpoint, step 0 first; the five aspects, overall, utility and
  over-refusal, each with its delta against step 0;
- `tradeoff.png`: aspect scores over steps, and safety vs utility across checkpoints with the Pareto front;
- `best_checkpoint.json`: the pick under the documented objective (`pick_best`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from eval_bridge.bridge import bridge_dir, completed
from eval_bridge.tasks.spec import ASPECTS

COLUMNS = (*ASPECTS, "overall", "utility", "over_refusal", "harmful_refusal")
TRAILING = ("format_failures", "mean_tokens")


def _delta(x, base):
    return None if x is None or base is None else x - base


def columns(records: Sequence[Mapping]) -> list[str]:
    """The score columns present in a run: the fixed ones, per-presentation refusal, format stats."""
    keys = {k for r in records if not r.get("error") for k, v in r["headline"].items() if v is not None}
    extra = sorted(k for k in keys if k.startswith("harmful_refusal_"))
    return [k for k in (*COLUMNS, *extra, *TRAILING) if k in keys or k == "utility"]


def rows(run_dir: str | Path) -> list[dict]:
    """One row per evaluated checkpoint (step order): step, checkpoint, headline scores, deltas, error."""
    records = completed(run_dir)
    base = next((r["headline"] for r in records if r["step"] == 0 and not r.get("error")), None)
    out = []
    for r in records:
        row = {
            "step": r["step"],
            "stage": r.get("stage", "") + (" (final)" if r.get("final") else ""),
            "checkpoint": r.get("adapter") or r["model"],
            "error": r.get("error"),
        }
        for key in columns(records):
            value = None if r.get("error") else r["headline"].get(key)
            row[key] = value
            row[f"d_{key}"] = _delta(value, base.get(key) if base else None)
        out.append(row)
    return out


def pick_best(
    table: Sequence[Mapping], *, weights: Mapping[str, float] | None = None, utility_tolerance: float = 5.0
) -> dict | None:
    """The checkpoint with the best objective among those whose utility fell at most `utility_tolerance` points.

    Objective: the overall trust score by default, or the weighted sum of the named columns (e.g.
    `{"safety": 2, "truthfulness": 1}`). Utility drop is measured against step 0; rows without a utility score
    are not constrained. Step 0 competes too, so a run that only hurt keeps its starting point.
    """
    weights = dict(weights or {"overall": 1.0})
    best, best_value = None, None
    for row in table:
        if row.get("error"):
            continue
        drop = -(row.get("d_utility") or 0.0)
        if drop > utility_tolerance:
            continue
        if any(row.get(k) is None for k in weights):
            continue
        value = sum(w * row[k] for k, w in weights.items())
        if best_value is None or value > best_value:
            best, best_value = row, value
    if best is None:
        return None
    return {
        "step": best["step"],
        "checkpoint": best["checkpoint"],
        "objective": best_value,
        "weights": weights,
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


def _fmt(value, delta=None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if delta is None else f"{value:.2f} ({delta:+.2f})"


def _columns_of(table: Sequence[Mapping]) -> list[str]:
    return [
        k
        for k in (table[0] if table else {})
        if k not in ("step", "stage", "checkpoint", "error") and not k.startswith("d_")
    ]


def to_markdown(table: Sequence[Mapping], best: Mapping | None) -> str:
    cols = _columns_of(table)
    head = "| step | stage | " + " | ".join(c.replace("_", "-") for c in cols) + " |"
    lines = [head, "|---" * (len(cols) + 2) + "|"]
    for row in table:
        if row.get("error"):
            lines.append(
                f"| {row['step']} | {row['stage']} | evaluation failed: {row['error']} |" + " |" * (len(cols) - 1)
            )
            continue
        cells = [_fmt(row[c], None if row["step"] == 0 else row[f"d_{c}"]) for c in cols]
        lines.append(f"| {row['step']} | {row['stage']} | " + " | ".join(cells) + " |")
    if best:
        lines.append(
            f"\nBest checkpoint: step {best['step']} ({best['checkpoint']}), objective {best['objective']:.2f} "
            f"= {best['weights']} with utility at most {best['utility_tolerance']} points below step 0."
        )
    else:
        lines.append("\nNo checkpoint meets the utility tolerance.")
    return "\n".join(lines) + "\n"


def plot(table: Sequence[Mapping], path: str | Path) -> Path:
    """Scores over steps, and safety vs utility with the Pareto front (safety = the safety aspect, or the
    harmful-request refusal rate when no trust-suite tasks ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in table if not r.get("error")]
    cols = [c for c in _columns_of(table) if c != "mean_tokens"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = [r["step"] for r in ok]
    for key in cols:
        ax1.plot(
            steps,
            [r[key] if r[key] is not None else float("nan") for r in ok],
            marker="o",
            label=key.replace("_", "-"),
            linewidth=2.5 if key == "overall" else 1.2,
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
    fig.savefig(path, dpi=100)
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
    markdown = to_markdown(table, best)
    (out / "tradeoff.md").write_text(markdown)
    with (out / "tradeoff.csv").open("w", newline="") as f:
        cols = _columns_of(table)
        fields = ["step", "stage", "checkpoint", *cols, *(f"d_{c}" for c in cols), "error"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(table)
    (out / "best_checkpoint.json").write_text(json.dumps(best, indent=1))
    if table:
        plot(table, out / "tradeoff.png")
    return markdown
