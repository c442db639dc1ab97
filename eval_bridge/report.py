"""Results files and reports: results JSON, a markdown summary, a CSV row, a PNG of the five aspects, comparisons.

`write_results(results, dir)` writes `results.json`, `results.md`, `scores.csv` and `aspects.png`;
`compare(paths)` tables several results files against the first (the baseline), with deltas.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from eval_bridge.tasks.spec import ASPECTS, SUB_ASPECTS
from eval_bridge.tracks import TRACKS


def _fmt(x, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _delta(x, base) -> str:
    if x is None or base is None:
        return "n/a"
    return f"{x - base:+.2f}"


def headline(results: dict) -> dict[str, float | None]:
    """The numbers a row of a trade-off table needs: five aspects, overall, the tracks (harmful refusal also per
    presentation), format-failure rate and mean response length."""
    row = {a: results["aspects"].get(a) for a in ASPECTS}
    row["overall"] = results.get("overall")
    tracks = results.get("tracks", {})
    for track in TRACKS:
        row[track] = tracks.get(track, {}).get("score")
    for presentation, score in tracks.get("harmful_refusal", {}).get("by_presentation", {}).items():
        row[f"harmful_refusal_{presentation}"] = score
    stats = results.get("responses", {})
    row["format_failures"] = stats.get("format_failure_rate")
    row["mean_tokens"] = stats.get("mean_tokens")
    return row


def to_markdown(results: dict) -> str:
    """A human-readable summary: headline, sub-aspects, every task with its notes, provenance essentials."""
    p = results.get("provenance", {})
    lines = [f"# Trust suite results: {p.get('model', '?')}" + (f" + {p['adapter']}" if p.get("adapter") else "")]
    method = p.get("method")
    lines.append(
        f"\nsuite `{p.get('data', {}).get('suite', '?')}`, method `{method['id'] if method else 'none'}`, "
        f"fingerprint `{p.get('model_fingerprint')}`, toolkit {p.get('toolkit_version')} ({p.get('git_commit')})"
    )
    if not results.get("complete", False):
        lines.append("\n**Partial**: not every sub-aspect has a score (tasks not run or terms unavailable).")
    lines += ["", "| aspect | score |", "|---|---|"]
    lines += [f"| {a} | {_fmt(results['aspects'].get(a))} |" for a in ASPECTS]
    lines.append(f"| **overall** | **{_fmt(results.get('overall'))}** |")
    for track in TRACKS:
        if track in results.get("tracks", {}):
            t = results["tracks"][track]
            lines.append(f"| {track.replace('_', '-')} (n={t['n']}) | {_fmt(t['score'])} |")
            for presentation, score in t.get("by_presentation", {}).items():
                lines.append(f"| &nbsp;&nbsp;{presentation} | {_fmt(score)} |")
    stats = results.get("responses", {})
    if stats.get("mean_tokens") is not None:
        lines.append(f"| mean response length (tokens) | {_fmt(stats['mean_tokens'], 1)} |")
    if stats.get("format_failure_rate") is not None:
        lines.append(f"| format failures (%) | {_fmt(stats['format_failure_rate'])} |")
    lines += ["", "| sub-aspect | aspect | score |", "|---|---|---|"]
    lines += [f"| {s} | {asp} | {_fmt(results['sub_aspects'].get(s))} |" for s, (asp, _) in SUB_ASPECTS.items()]
    lines += ["", "| task | name | score | samples | notes |", "|---|---|---|---|---|"]
    for tid, t in results["tasks"].items():
        n = sum(d["n"] for d in t["datasets"].values())
        notes = "; ".join(t["notes"]) or ""
        lines.append(f"| {tid} | {t['name']} | {_fmt(t['score'])} | {n} | {notes} |")
    responses = p.get("responses", {})
    if responses:
        lines.append(
            f"\n{responses.get('total')} responses: {responses.get('from_cache')} from the cache, "
            f"{responses.get('total', 0) - responses.get('from_cache', 0)} generated."
        )
    return "\n".join(lines) + "\n"


def plot_aspects(results_list: Sequence[dict], labels: Sequence[str], path: str | Path) -> Path:
    """A grouped bar chart of the five aspect scores, overall and the tracks, one bar colour per result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [*ASPECTS, "overall", *TRACKS]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(1, len(results_list))
    for i, (res, label) in enumerate(zip(results_list, labels, strict=True)):
        row = headline(res)
        values = [row[k] if row[k] is not None else 0.0 for k in keys]
        ax.bar([x + i * width for x in range(len(keys))], values, width, label=label)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(keys))])
    ax.set_xticklabels([k.replace("_", "-") for k in keys], rotation=20)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (0-100; over-refusal: lower is better)")
    ax.legend(fontsize=8)
    ax.set_title("MultiTrust aspects")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_results(results: dict, output_dir: str | Path) -> Path:
    """Write results.json, results.md, scores.csv and aspects.png into `output_dir`; returns the JSON path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    (out / "results.md").write_text(to_markdown(results))
    row = {**headline(results), **{t: r["score"] for t, r in results["tasks"].items()}}
    with (out / "scores.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    plot_aspects([results], [results.get("provenance", {}).get("model", "model")], out / "aspects.png")
    return path


def load_results(path: str | Path) -> dict:
    """Read a results.json (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}; pass a results.json or the folder evaluate.py wrote")
    return json.loads(path.read_text())


def compare(paths: Sequence[str | Path], labels: Sequence[str] | None = None, plot: str | Path | None = None) -> str:
    """A markdown table of several results, each with its delta against the first (the baseline)."""
    results = [load_results(p) for p in paths]
    labels = list(labels or [str(p) for p in paths])
    keys = [*ASPECTS, "overall", *TRACKS]
    base = headline(results[0])
    lines = ["| result | " + " | ".join(k.replace("_", "-") for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for label, res in zip(labels, results, strict=True):
        row = headline(res)
        cells = [_fmt(row[k]) if res is results[0] else f"{_fmt(row[k])} ({_delta(row[k], base[k])})" for k in keys]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    task_ids = list(results[0]["tasks"])
    lines += ["", "| task | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for tid in task_ids:
        b = results[0]["tasks"][tid]["score"]
        cells = []
        for res in results:
            x = res["tasks"].get(tid, {}).get("score")
            cells.append(_fmt(x) if res is results[0] else f"{_fmt(x)} ({_delta(x, b)})")
        lines.append(f"| {tid} | " + " | ".join(cells) + " |")
    if plot:
        plot_aspects(results, labels, plot)
    return "\n".join(lines) + "\n"
