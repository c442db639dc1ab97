"""Results files and reports: results JSON, a markdown summary, a CSV row, a PNG of the five aspects, comparisons.

`write_results(results, dir)` writes `results.json`, `results.md`, `scores.csv` and `aspects.png`;
`compare(paths)` tables several results files against the first (the baseline), with deltas.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from eval_bridge.files import write_atomically
from eval_bridge.tables import column_label, delta, fmt, markdown_table, signed, with_delta
from eval_bridge.tasks import TASKS
from eval_bridge.tasks.rollup import ALL_TASKS
from eval_bridge.tasks.spec import ASPECTS, RISK_TYPES, SUB_ASPECTS
from eval_bridge.tracks import TRACKS

XM_PREFIX = "xm/"  # headline keys of the paired cross-modal differences: xm/<task>/<family>/<variant>


def risk_key(tag: str) -> str:
    """The headline key of a risk type: "cross-modal impact" -> "cross_modal_impact"."""
    return tag.replace("-", "_").replace(" ", "_")


def headline(results: dict) -> dict[str, float | None]:
    """The numbers a row of a trade-off table needs: five aspects, overall (None unless all 32 tasks ran), the
    risk types, the tracks (harmful refusal also per presentation), format-failure rate, mean response length,
    and each paired cross-modal difference (`xm/<task>/<pair>`)."""
    row = {a: results["aspects"].get(a) for a in ASPECTS}
    row["overall"] = results.get("overall")
    for tag in RISK_TYPES:
        row[risk_key(tag)] = results.get("risk_types", {}).get(tag)
    tracks = results.get("tracks", {})
    for track in TRACKS:
        row[track] = tracks.get(track, {}).get("score")
    for track in ("harmful_refusal", "borderline_safe"):  # refusal per presentation (text, typographic, ...)
        for presentation, score in tracks.get(track, {}).get("by_presentation", {}).items():
            row[f"{track}_{presentation}"] = score
    stats = results.get("responses", {})
    row["format_failures"] = stats.get("format_failure_rate")
    row["reasoning_consistency"] = stats.get("reasoning_consistency")
    row["mean_tokens"] = stats.get("mean_tokens")
    for tid, task in results.get("tasks", {}).items():
        for pair in task.get("cross_modal", []):
            row[f"{XM_PREFIX}{tid}/{pair['pair']}"] = pair["difference"]
    return row


def headline_counts(results: dict) -> dict[str, int]:
    """How many samples each rate of the headline is over (the tracks, and harmful refusal per presentation):
    what the trade-off table's confidence intervals need."""
    tracks = results.get("tracks", {})
    counts = {track: tracks[track]["n"] for track in TRACKS if tracks.get(track, {}).get("n")}
    for track in ("harmful_refusal", "borderline_safe"):
        for presentation, n in tracks.get(track, {}).get("n_by_presentation", {}).items():
            counts[f"{track}_{presentation}"] = n
    if results.get("responses", {}).get("well_formed"):
        counts["reasoning_consistency"] = results["responses"]["well_formed"]
    return counts


def _coverage(results: dict, kind: str, name: str, members: Sequence[str]) -> str:
    """ "2/4" tasks scored of a sub-aspect / aspect / risk type."""
    lacking = results.get("partial", {}).get(kind, {}).get(name)
    scored = sum(results["tasks"].get(t, {}).get("score") is not None for t in members)
    return f"{scored}/{len(members)}" + (" (partial)" if lacking else "")


def _members() -> dict[str, list[str]]:
    """Sub-aspect / aspect / risk type -> its task ids."""
    out = {sub: list(w) for sub, (_, w) in SUB_ASPECTS.items()}
    for a in ASPECTS:
        out[a] = [t for sub, (asp, w) in SUB_ASPECTS.items() if asp == a for t in w]
    for tag in RISK_TYPES:
        out[tag] = [t for t in ALL_TASKS if tag in TASKS[t].risk]
    return out


def to_markdown(results: dict) -> str:
    """A human-readable summary: headline (aspects, overall or why it is unavailable, risk types, tracks),
    sub-aspects, every task with its failures and notes, the paired cross-modal differences, provenance."""
    p = results.get("provenance", {})
    members = _members()
    lines = [f"# Trust suite results: {p.get('model', '?')}" + (f" + {p['adapter']}" if p.get("adapter") else "")]
    method = p.get("method")
    lines.append(
        f"\nsuite `{p.get('data', {}).get('suite', '?')}`, method `{method['id'] if method else 'none'}`, "
        f"fingerprint `{p.get('model_fingerprint')}`, toolkit {p.get('toolkit_version')} ({p.get('git_commit')})"
    )
    if results.get("overall_unavailable"):
        lines.append(
            f"\n**Partial run**: {results['overall_unavailable']}. Scores marked partial average only the tasks "
            "they have (MultiTrust's weights renormalised over them); there is no overall score."
        )
    rows = [[a, fmt(results["aspects"].get(a)), _coverage(results, "aspects", a, members[a])] for a in ASPECTS]
    overall = results.get("overall")
    rows.append(["**overall**", f"**{fmt(overall)}**" if overall is not None else "n/a (needs all 32 tasks)", ""])
    for tag in RISK_TYPES:
        value = results.get("risk_types", {}).get(tag)
        rows.append([f"risk type: {tag}", fmt(value), _coverage(results, "risk_types", tag, members[tag])])
    for track in TRACKS:
        if track in results.get("tracks", {}):
            t = results["tracks"][track]
            rows.append([f"{column_label(track)} (n={t['n']})", fmt(t["score"]), ""])
            for presentation, score in t.get("by_presentation", {}).items():
                rows.append([f"&nbsp;&nbsp;{presentation}", fmt(score), ""])
    stats = results.get("responses", {})
    if stats.get("mean_tokens") is not None:
        rows.append(["mean response length (tokens)", fmt(stats["mean_tokens"], 1), ""])
    if stats.get("format_failure_rate") is not None:
        rows.append(["format failures (%)", fmt(stats["format_failure_rate"]), ""])
    if stats.get("reasoning_consistency") is not None:
        rows.append(["reasoning consistency (%)", fmt(stats["reasoning_consistency"]), ""])
    lines += ["", *markdown_table(["aspect", "score", "tasks"], rows)]
    sub_rows = [
        [s, asp, fmt(results["sub_aspects"].get(s)), _coverage(results, "sub_aspects", s, members[s])]
        for s, (asp, _) in SUB_ASPECTS.items()
    ]
    lines += ["", *markdown_table(["sub-aspect", "aspect", "score", "tasks"], sub_rows)]
    task_rows = []
    for tid, t in results["tasks"].items():
        n = sum(d["n"] for d in t["datasets"].values())
        failures = str(t.get("scorer_failures", 0))
        if t.get("generation_failures"):
            failures += f" (+{t['generation_failures']} generation)"
        risk = ", ".join(t.get("risk", []))
        task_rows.append([tid, t["name"], risk, fmt(t["score"]), n, failures, "; ".join(t["notes"])])
    header = ["task", "name", "risk type", "score", "samples", "scorer failures", "notes"]
    lines += ["", *markdown_table(header, task_rows)]
    pairs = [(tid, x) for tid, t in results["tasks"].items() for x in t.get("cross_modal", [])]
    if pairs:
        lines.append(
            "\nCross-modal impact: the task's per-dataset metric (0-100, higher = more trustworthy) with an image "
            "minus text only; negative = the image made the model less trustworthy."
        )
        xm_rows = [[tid, x["pair"], fmt(x["text"]), fmt(x["image"]), signed(x["difference"])] for tid, x in pairs]
        lines += ["", *markdown_table(["task", "pair", "text", "image", "image - text"], xm_rows)]
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
    ax.set_xticklabels([column_label(k) for k in keys], rotation=20)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (0-100; over-refusal: lower is better)")
    ax.legend(fontsize=8)
    ax.set_title("MultiTrust aspects")
    fig.tight_layout()
    path = Path(path)
    # write_atomically's temporary name does not end in .png: say the format unless the name does
    fig.savefig(path, dpi=100, format=None if path.suffix.lower() in (".png", ".pdf", ".svg") else "png")
    plt.close(fig)
    return path


def write_results(results: dict, output_dir: str | Path) -> Path:
    """Write results.json, results.md, scores.csv and aspects.png into `output_dir`, each atomically (a killed
    writer leaves the old file or none, never half of one); returns the JSON path."""
    out = Path(output_dir)
    row = {**headline(results), **{t: r["score"] for t, r in results["tasks"].items()}}

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerow(row)

    write_atomically(out / "results.md", lambda tmp: tmp.write_text(to_markdown(results)))
    write_atomically(out / "scores.csv", write_csv)
    label = results.get("provenance", {}).get("model", "model")
    write_atomically(out / "aspects.png", lambda tmp: plot_aspects([results], [label], tmp))
    # Last: results.json is what readers look for, so the others are complete once it exists.
    text = json.dumps(results, indent=1, default=str)
    return write_atomically(out / "results.json", lambda tmp: tmp.write_text(text))


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
    keys = [*ASPECTS, "overall", *(risk_key(t) for t in RISK_TYPES), *TRACKS]
    base = headline(results[0])
    table = []
    for name, res in zip(labels, results, strict=True):
        row = headline(res)
        table.append(
            [name, *(fmt(row[k]) if res is results[0] else with_delta(row[k], delta(row[k], base[k])) for k in keys)]
        )
    lines = markdown_table(["result", *(column_label(k) for k in keys)], table)
    task_rows = []
    for tid in results[0]["tasks"]:
        b = results[0]["tasks"][tid]["score"]
        cells = []
        for res in results:
            x = res["tasks"].get(tid, {}).get("score")
            cells.append(fmt(x) if res is results[0] else with_delta(x, delta(x, b)))
        task_rows.append([tid, *cells])
    lines += ["", *markdown_table(["task", *labels], task_rows)]
    unavailable = [
        f"{name}: {res['overall_unavailable']}"
        for name, res in zip(labels, results, strict=True)
        if res.get("overall_unavailable")
    ]
    if unavailable:
        lines += ["", "Overall unavailable for " + "; ".join(unavailable) + "."]
    if plot:
        plot_aspects(results, labels, plot)
    return "\n".join(lines) + "\n"
