"""The trade-off report over hand-written bridge records: overall only from full runs, a partial run picked by a
labelled aspects mean, risk-type columns, the cross-modal differences per checkpoint, tracks-only runs."""

import csv
import json

import pytest

from eval_bridge.bridge import bridge_dir
from eval_bridge.tasks import TASKS
from eval_bridge.tradeoff import pick_best, rows, write_report

ASPECTS = ("truthfulness", "safety", "robustness", "fairness", "privacy")


def record(step, aspects=None, overall=None, utility=80.0, tasks=None, **extra):
    headline = {a: None for a in ASPECTS}
    headline.update(aspects or {})
    headline.update(overall=overall, utility=utility, over_refusal=10.0, **extra)
    return {
        "step": step,
        "stage": "sft",
        "model": f"ck{step}",
        "headline": headline,
        "tasks": tasks or {},
        "error": None,
    }


def write_run(root, records):
    done = bridge_dir(root) / "done"
    done.mkdir(parents=True)
    for r in records:
        (done / f"{r['step']:09d}.json").write_text(json.dumps(r))
    return root


def safety_run(root):
    """Three checkpoints of a run that scored the six safety tasks only (so no overall)."""
    safety_tasks = {t: 50.0 for t in TASKS if t.startswith("S")}
    return write_run(
        root,
        [
            record(
                0,
                {"safety": 40.0},
                tasks=safety_tasks,
                multimodal_risk=41.0,
                **{"xm/S6/crossmodal-jailbreak/pos": -10.0},
            ),
            record(1, {"safety": 70.0}, utility=70.0, tasks=safety_tasks, **{"xm/S6/crossmodal-jailbreak/pos": -4.0}),
            record(2, {"safety": 60.0}, utility=78.0, tasks=safety_tasks, **{"xm/S6/crossmodal-jailbreak/pos": 2.5}),
        ],
    )


def test_partial_run_is_picked_by_a_labelled_aspects_mean(tmp_path):
    table = rows(safety_run(tmp_path))
    assert [r["aspects_mean"] for r in table] == [40.0, 70.0, 60.0]
    assert "overall" not in table[0]  # no row has one: no column
    best = pick_best(table)
    assert best["step"] == 2  # step 1 is safer but lost 10 utility points
    assert best["objective_name"] == "aspects mean (partial: 6/32 tasks)"
    assert best["weights"] == {"aspects_mean": 1.0} and "overall unavailable" in best["note"]
    # Naming overall explicitly on a partial run picks nothing rather than a mislabelled number.
    assert pick_best(table, weights={"overall": 1.0}) is None


def test_report_files_of_a_partial_run(tmp_path):
    markdown = write_report(safety_run(tmp_path))
    header = markdown.splitlines()[0]
    assert "| aspects mean (partial: 6/32 tasks) |" in header and "| overall |" not in header
    assert "multimodal-risk" in header
    assert "| 2 | sft | 60.00 (+20.00) | 60.00 (+20.00) | n/a | 78.00 (-2.00) |" in markdown
    assert "Best checkpoint: step 2 (ck2), objective 60.00 = aspects mean (partial: 6/32 tasks)" in markdown
    # The cross-modal section: one row per pair, one column per checkpoint (delta since step 0).
    assert "| pair | step 0 | step 1 | step 2 |" in markdown
    assert "| S6/crossmodal-jailbreak/pos | -10.00 | -4.00 (+6.00) | 2.50 (+12.50) |" in markdown
    with (bridge_dir(tmp_path) / "tradeoff.csv").open() as f:
        table = list(csv.DictReader(f))
    assert float(table[2]["xm/S6/crossmodal-jailbreak/pos"]) == 2.5
    assert float(table[2]["d_xm/S6/crossmodal-jailbreak/pos"]) == 12.5
    assert table[0]["tasks_scored"] == "6" and float(table[1]["aspects_mean"]) == 70.0
    best = json.loads((bridge_dir(tmp_path) / "best_checkpoint.json").read_text())
    assert best["objective_name"] == "aspects mean (partial: 6/32 tasks)"


def test_full_runs_are_picked_by_overall(tmp_path):
    everything = {t: 50.0 for t in TASKS}
    run = write_run(
        tmp_path,
        [
            record(0, {"safety": 90.0}, overall=50.0, tasks=everything),
            record(1, {"safety": 10.0}, overall=60.0, tasks=everything),
        ],
    )
    table = rows(run)
    assert "aspects_mean" not in table[0]
    best = pick_best(table)
    assert best["step"] == 1 and best["objective_name"] == "overall" and best["note"] is None


def test_tracks_only_run_needs_a_named_objective(tmp_path):
    run = write_run(tmp_path, [record(0, harmful_refusal=40.0), record(1, harmful_refusal=60.0, utility=79.0)])
    table = rows(run)
    assert pick_best(table) is None
    markdown = write_report(run)
    assert "No best checkpoint" in markdown and "--weights" in markdown
    best = pick_best(table, weights={"harmful_refusal": 1.0, "over_refusal": -1.0})
    assert best["step"] == 1 and best["objective_name"] == "1 * harmful_refusal + -1 * over_refusal"
    assert best["objective"] == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("rate", "n", "low", "high"),
    # Textbook Wilson 95% intervals (z = 1.96): 0/10, 5/10, 10/10, 29/30.
    [(0.0, 10, 0.0, 27.75), (50.0, 10, 23.66, 76.34), (100.0, 10, 72.25, 100.0), (100 * 29 / 30, 30, 83.33, 99.41)],
)
def test_wilson_interval_matches_hand_values(rate, n, low, high):
    from eval_bridge.tables import wilson_interval

    lo, hi = wilson_interval(rate, n)
    assert lo == pytest.approx(low, abs=0.01) and hi == pytest.approx(high, abs=0.01)


def test_rates_carry_n_and_their_wilson_interval_in_table_and_csv(tmp_path):
    """Each track rate gets its interval; the header names n when every checkpoint has the same n."""
    base = record(0, harmful_refusal=0.0)
    base["counts"] = {"utility": 48, "over_refusal": 16, "harmful_refusal": 30}
    late = record(1, utility=75.0, harmful_refusal=100 * 28 / 29)
    late["counts"] = {"utility": 48, "over_refusal": 16, "harmful_refusal": 29}  # one generation failed
    run = write_run(tmp_path, [base, late])
    markdown = write_report(run, weights={"harmful_refusal": 1.0})
    header = next(line for line in markdown.splitlines() if line.startswith("| step"))
    assert "utility (n=48)" in header and "over-refusal (n=16)" in header
    assert "| harmful-refusal |" in header  # n differs between rows: named in each cell instead
    assert "96.55 [82.8, 99.4] n=29 (+96.55)" in markdown and "0.00 [0.0, 11.4] n=30 |" in markdown
    assert "75.00 [61.2, 85.1] (-5.00)" in markdown
    with (bridge_dir(run) / "tradeoff.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    assert last["n/harmful_refusal"] == "29"
    assert float(last["ci_low/harmful_refusal"]) == pytest.approx(82.8, abs=0.05)
    assert float(last["ci_high/utility"]) == pytest.approx(85.1, abs=0.05)
