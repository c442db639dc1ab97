"""The mitigation table on tiny models: one row per method, base first, deltas equal to the per-method results
files, costs recorded, and a rerun that trains and evaluates nothing."""

import csv
import json
from pathlib import Path

import pytest

from mitigation import reproduce as rep

TASKS = "T6,S4"


@pytest.fixture(scope="module")
def table_run(tiny_model_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("table")
    cfg = rep.ReproduceConfig(
        base=str(tiny_model_dirs["llava"]),
        methods="all",
        tasks=TASKS,
        budget_steps=1,
        output=str(out),
        eval_max_new_tokens=4,
        overrides={"eval_borderline_file": "none", "lora_r": "2", "lora_alpha": "4"},
    )
    return cfg, rep.reproduce(cfg)


def results_scores(path):
    return rep.scores_of(json.loads(Path(path).read_text()))


def test_one_row_per_registered_method_base_first(table_run):
    from mitigation.registry import AXES, list_methods

    _, rows = table_run
    expected = [e.id for a in AXES for e in list_methods(a) if e.kind in ("recipe", "inference")]
    assert {e.id for e in list_methods() if e.kind in ("recipe", "inference")} == set(expected)
    assert [r["method"] for r in rows] == ["base", *expected]


def test_deltas_equal_the_per_method_results_files(table_run):
    cfg, rows = table_run
    base = results_scores(rows[0]["results"])
    with (Path(cfg.output) / "mitigation_table.csv").open() as f:
        table = {r["method"]: r for r in csv.DictReader(f)}
    for row in rows[1:]:
        mine = results_scores(row["results"])
        for column in ("utility", "over_refusal", "harmful_refusal", "safety", "truthfulness"):
            if mine[column] is None or base[column] is None:
                continue
            assert float(table[row["method"]][f"d_{column}"]) == pytest.approx(mine[column] - base[column])
    assert all(r["inference_slowdown"] for r in rows)
    trained = [r for r in rows if r["kind"] == "training"]
    assert trained and all(r["train_steps"] >= 1 and r["train_minutes"] >= 0 for r in trained)


def test_the_table_and_plots_are_written(table_run):
    cfg, _ = table_run
    out = Path(cfg.output)
    markdown = (out / "mitigation_table.md").read_text()
    assert markdown.splitlines()[2].startswith("| base | base |")
    assert (out / "deltas.png").stat().st_size > 1000 and (out / "safety_utility.png").stat().st_size > 1000


def test_a_rerun_trains_and_evaluates_nothing(table_run, monkeypatch):
    import eval_bridge.bridge
    import mitigation.registry

    cfg, rows = table_run
    monkeypatch.setattr(mitigation.registry, "load_target", lambda e: pytest.fail(f"{e.id} retrained"))
    monkeypatch.setattr(eval_bridge.bridge, "evaluate_manifest", lambda *a, **k: pytest.fail("re-evaluated"))
    assert rep.reproduce(cfg) == rows


def test_an_override_no_method_has_is_an_error(table_run):
    from mitigation.config_overrides import ConfigError

    cfg, _ = table_run
    bad = rep.ReproduceConfig(**{**vars(cfg), "overrides": {"lora_rr": "2"}})
    with pytest.raises(ConfigError, match="did you mean 'lora_r'"):
        rep.reproduce(bad)


def test_the_pareto_front_and_dominance_on_hand_made_rows():
    rows = [
        {"method": "base", "safety": 40.0, "utility": 60.0},
        {"method": "a", "safety": 70.0, "utility": 60.0},  # dominates base (equal utility, safer)
        {"method": "b", "safety": 50.0, "utility": 50.0},  # dominated by a
        {"method": "c", "safety": 30.0, "utility": 80.0},  # the most useful: on the front
        {"method": "d", "safety": None, "utility": 90.0},  # no safety score: left out
    ]
    assert rep.dominates(rows[1], rows[0], "safety") and not rep.dominates(rows[0], rows[0], "safety")
    assert not rep.dominates(rows[1], rows[3], "safety") and not rep.dominates(rows[4], rows[0], "safety")
    lines = rep.pareto_lines(rows, "safety")
    assert lines[0].endswith("Pareto front (no other row is as good on both, better on one): a, c.")
    assert lines[1:] == ["- base is dominated by a", "- b is dominated by a"]


def test_the_training_cost_leaves_out_the_evaluations_the_bridge_ran_inside_the_run(tmp_path):
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "log_history.json").write_text(json.dumps([{"loss": 1.0}, {"train_runtime": 90.0, "step": 12}]))
    (tmp_path / "timings.json").write_text(json.dumps({"data": 10.0, "SFT + evaluations": 140.0, "report": 1.0}))
    records = [{"step": 0, "seconds": 60.0}, {"step": 12, "final": True, "seconds": 40.0}]
    assert rep._training_cost(tmp_path, records, sync=True) == (51.0, 12)  # 151 s of phases - 100 s of evaluations
    assert rep._training_cost(tmp_path, records, sync=False) == (90.0, 12)  # worker mode: TRL's train_runtime
