"""RESA DPO pairs: both kinds at the set ratio, well-formed chosen, placeholder-only rejected, TRL row shape."""

import pytest

from eval_bridge.reasoning import DEFAULT_FORMAT as FMT
from eval_bridge.tracks import is_refusal
from mitigation.data.offline import build_offline_sources
from resa.pairs import build_pairs, dpo_rows
from resa.traces import COMPLIANCE_PLACEHOLDER, TemplateTraceBuilder, build_traces


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    s = build_offline_sources(
        tmp_path_factory.mktemp("cache"), n_harmful_train=10, n_harmful_eval=2, n_benign_train=20, n_benign_eval=2
    )
    traces, _ = build_traces(s.train, TemplateTraceBuilder())
    return s.train, traces


@pytest.mark.parametrize(("ratio", "expected"), [(0.5, (20, 20)), (0.2, (5, 20)), (0.6, (30, 20)), (1.0, (30, 0))])
def test_pair_kinds_at_the_ratio(data, ratio, expected):
    records, traces = data  # 30 harmful, 20 benign records
    pairs = build_pairs(records, traces, harmful_ratio=ratio)
    kinds = [p.kind for p in pairs]
    assert (kinds.count("harmful"), kinds.count("benign")) == expected


def test_pair_contents(data):
    records, traces = data
    pairs = build_pairs(records, traces, seed=1)
    assert {p.kind for p in pairs} == {"harmful", "benign"}
    for p in pairs:
        chosen, rejected = FMT.parse(p.chosen), FMT.parse(p.rejected)
        assert chosen.well_formed and rejected.well_formed
        assert p.chosen == traces[p.record.id]
        if p.kind == "harmful":
            assert p.record.harmful and is_refusal(chosen.answer)
            assert rejected.answer == COMPLIANCE_PLACEHOLDER  # the placeholder only, never instructions
            assert "No risk" in FMT.steps(rejected.reasoning)["risk"]
        else:
            assert not p.record.harmful and not is_refusal(chosen.answer)
            assert is_refusal(rejected.answer) and "Harmful" in FMT.steps(rejected.reasoning)["risk"]
    assert [p.record.id for p in build_pairs(records, traces, seed=1)] == [p.record.id for p in pairs]
    assert [p.record.id for p in build_pairs(records, traces, seed=2)] != [p.record.id for p in pairs]


def test_malformed_chosen_is_refused(data):
    records, traces = data
    broken = dict(traces)
    rid = next(r.id for r in records if r.harmful)
    broken[rid] = "no tags at all"
    with pytest.raises(ValueError, match="not well formed"):
        build_pairs(records, broken, harmful_ratio=1.0)


def test_dpo_rows_shape(data):
    records, traces = data
    pairs = build_pairs(records, traces)
    rows = dpo_rows(pairs)
    for p, row in zip(pairs, rows, strict=True):
        assert set(row) == {"prompt", "chosen", "rejected", "images"}
        (user,) = row["prompt"]
        assert user["role"] == "user"
        assert [c["type"] for c in user["content"]] == ["image"] * len(p.record.images) + ["text"]
        assert row["chosen"] == [{"role": "assistant", "content": [{"type": "text", "text": p.chosen}]}]
        assert row["rejected"] == [{"role": "assistant", "content": [{"type": "text", "text": p.rejected}]}]
        assert len(row["images"]) == len(p.record.images)


def test_dpo_rows_train_one_step_on_tiny_llava(data, tiny_model_dirs, tmp_path):
    import json

    from mitigation.training.pipeline import train_stage
    from resa.config import ResaConfig
    from resa.stages import dpo_stage

    records, traces = data
    pairs = build_pairs(records, traces)
    picked = [p for p in pairs if p.record.images][:2] + [p for p in pairs if not p.record.images][:2]
    cfg = ResaConfig(
        output_dir=str(tmp_path),
        report_to="none",
        dpo_max_steps=1,
        dpo_batch_size=4,
        lora_r=4,
        lora_alpha=8,
        logging_steps=1,
        dpo_sft_weight=0.0,  # plain DPO: its loss at step 1 is exactly log 2
    )
    train_stage(cfg, dpo_stage(cfg, dpo_rows(picked)), str(tiny_model_dirs["llava"]), tmp_path / "dpo")
    history = json.loads((tmp_path / "dpo" / "log_history.json").read_text())
    assert next(h["loss"] for h in history if "loss" in h) == pytest.approx(0.6931, abs=1e-3)  # policy == reference


def test_inconsistent_rejected_answers_contradict_their_own_decision(data):
    """A quarter of each kind's pairs reject an answer that does not follow its Step 4; chosen always follows it."""
    from eval_bridge.reasoning import consistent

    records, traces = data
    pairs = build_pairs(records, traces, inconsistent_share=0.25)
    for kind, n in (("harmful", 20), ("benign", 20)):
        assert sum(p.inconsistent for p in pairs if p.kind == kind) == round(n * 0.25)
    for p in pairs:
        chosen, rejected = FMT.parse(p.chosen), FMT.parse(p.rejected)
        assert consistent(chosen, is_refusal(chosen.answer))
        assert rejected.well_formed and consistent(rejected, is_refusal(rejected.answer)) is not p.inconsistent
        if p.inconsistent and p.kind == "harmful":
            assert rejected.answer == COMPLIANCE_PLACEHOLDER and "Harmful" in FMT.steps(rejected.reasoning)["risk"]
        if p.inconsistent and p.kind == "benign":
            assert is_refusal(rejected.answer) and "No risk" in FMT.steps(rejected.reasoning)["risk"]


def test_no_inconsistent_share_leaves_the_pairs_as_they_were(data):
    records, traces = data
    assert build_pairs(records, traces, seed=3) == build_pairs(records, traces, seed=3, inconsistent_share=0.0)
    with pytest.raises(ValueError, match="inconsistent_share"):
        build_pairs(records, traces, inconsistent_share=1.5)
