"""lrv's data: the offline LRV-Instruction generator (types at their ratios, negatives that never assert the
manipulated element, positives that agree with the inventory), the real-schema loader and its errors, and the
conversion into SFT rows."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from eval_bridge.data import assets
from eval_bridge.samples import SampleError
from mitigation.data.lrv import (
    ABSENT_OBJECTS,
    INSTRUCTION_TYPES,
    generate_offline,
    image_grounded,
    load_lrv,
    sft_rows,
    training_records,
    type_counts,
)
from mitigation.data.lrv_config import LrvConfig, parse_shares

SHARES = {"nonexistent": 0.4, "existent": 0.4, "knowledge": 0.2}
WORD = re.compile(r"[a-z]+|\d+")


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """100 offline records (seed 0), the inventory they were generated from, and their loaded records."""
    out = tmp_path_factory.mktemp("lrv")
    path = generate_offline(out, n=100, negative_ratio=0.5, shares=SHARES, seed=0)
    raw = json.loads(path.read_text())["annotations"]
    inventory = json.loads((out / "inventory.json").read_text())
    return path, raw, inventory, load_lrv(path)


def easy_vqa_truth(image_id: str) -> tuple[str, str]:
    """(shape, color) of an offline image, from easy-VQA's own inventory (not the generator's)."""
    number = int(image_id.removeprefix("easyvqa-train-"))
    im = next(i for i in assets.easy_vqa_images("train") if i.image_id == number)
    return im.shape, im.color


def words(text: str) -> list[str]:
    """Lower-cased words and numbers; plural nouns as singular ("triangles" -> "triangle")."""
    nouns = set(assets.SHAPES + ABSENT_OBJECTS)
    return [w[:-1] if w.endswith("s") and w[:-1] in nouns else w for w in WORD.findall(text.lower())]


def test_counts_follow_the_negative_ratio_and_the_type_shares():
    assert type_counts(100, 0.5, SHARES) == {"positive": 50, "nonexistent": 20, "existent": 20, "knowledge": 10}
    # 7 negatives at 0.4/0.4/0.2 = 2.8/2.8/1.4: the largest remainders get the seventh.
    assert type_counts(14, 0.5, SHARES) == {"positive": 7, "nonexistent": 3, "existent": 3, "knowledge": 1}
    assert type_counts(10, 0.0, SHARES)["positive"] == 10
    assert type_counts(10, 1.0, {"nonexistent": 1.0})["nonexistent"] == 10


def test_all_three_negative_types_appear_at_the_configured_ratio(offline):
    _, raw, _, records = offline
    counts = Counter(r.instruction_type for r in records)
    assert counts == {"positive": 50, "nonexistent": 20, "existent": 20, "knowledge": 10}
    assert {r["task"] for r in raw if r["instruction_type"] == "knowledge"} == {"negative: knowledge manipulation"}
    charts = [r for r in raw if r["image_id"].startswith("chart-")]
    # Charts carry positives too (the knowledge share of the positives), so a chart is not a cue to deny.
    assert Counter(r["instruction_type"] for r in charts) == {"knowledge": 10, "positive": 10}


def test_each_negative_shares_its_image_and_question_form_with_a_positive(offline):
    _, raw, _, _ = offline
    by_image = {}
    for r in raw:
        by_image.setdefault(r["image_id"], []).append(r)
    # At negative_ratio 0.5 every image carries one positive and one negative: "Yes" / "No" is in the image.
    assert len(by_image) == 50
    for pair in by_image.values():
        assert sorted(r["instruction_type"] == "positive" for r in pair) == [False, True], pair
        negative, positive = sorted(pair, key=lambda r: r["instruction_type"] == "positive")
        if negative["answer"].startswith("No,"):
            assert positive["answer"].startswith("Yes,"), pair
            assert negative["question"].split()[:2] == positive["question"].split()[:2], pair


def test_unpaired_records_get_images_of_their_own(tmp_path):
    raw = json.loads(generate_offline(tmp_path, n=20, negative_ratio=0.25, shares=SHARES).read_text())["annotations"]
    assert Counter(r["instruction_type"] for r in raw)["positive"] == 15
    assert len({r["image_id"] for r in raw}) == 15  # 5 pairs, 10 positives alone


def test_records_validate_against_the_schema_and_are_marked_synthetic(offline):
    path, raw, _, records = offline
    assert all({"image_id", "question", "answer", "task"} <= set(r) for r in raw)
    assert all(r["source"] == "synthetic" for r in raw) and all(r.source == "synthetic" for r in records)
    assert all(r.instruction_type in INSTRUCTION_TYPES for r in records)
    assert all(Path(r.image).parent == path.parent / "image" and Path(r.image).is_file() for r in records)
    for r in records:
        text = f"{r.question} {r.answer}".lower()
        assert "mention" not in text and "caption" not in text  # answers refer to the image


def test_shape_images_are_easy_vqa_train_images(offline):
    records = offline[3]
    for r in (r for r in records if r.image_id.startswith("easyvqa-train-")):
        number = int(r.image_id.removeprefix("easyvqa-train-"))
        source = next(i for i in assets.easy_vqa_images("train") if i.image_id == number)
        with Image.open(source.path) as a, Image.open(r.image) as b:
            assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes()


def split_answer(answer: str) -> tuple[str, str]:
    """A negative answer is "<denial>; <truth>": what it rejects, then what the image shows."""
    denial, sep, truth = answer.partition(";")
    assert sep, f"no truth clause in {answer!r}"
    return denial, truth


def test_a_negative_answer_rejects_the_manipulated_element_and_states_the_truth(offline):
    _, raw, inventory, _ = offline
    for r in (r for r in raw if r["instruction_type"] in ("nonexistent", "existent")):
        shape, color = easy_vqa_truth(r["image_id"])
        assert inventory[r["image_id"]] == {"shape": shape, "color": color}
        manipulated = r["manipulated"]
        assert manipulated not in (shape, color), r  # the element really is false for this image
        assert manipulated in words(r["question"]), r
        denial, truth = split_answer(r["answer"])
        assert manipulated in words(denial) and {"no", "not"} & set(words(denial)), r
        asserted = set(words(truth))
        assert manipulated not in asserted, r
        assert asserted & set(assets.SHAPES + assets.COLORS) <= {shape, color}, r
        assert shape in asserted or color in asserted, r
        if r["instruction_type"] == "nonexistent":
            assert {shape, color} <= asserted, r  # the denial says what is there instead


def test_a_knowledge_negative_never_asserts_the_falsified_value(offline):
    _, raw, inventory, _ = offline
    for r in (r for r in raw if r["instruction_type"] == "knowledge"):
        bars = dict(map(tuple, inventory[r["image_id"]]["bars"]))
        wrong = int(r["manipulated"])
        assert wrong not in bars.values() and str(wrong) in words(r["question"])
        (named,) = [c for c in bars if c in words(r["question"])]
        denial, truth = split_answer(r["answer"])
        assert str(wrong) in words(denial) and {"no", "not"} & set(words(denial))
        assert str(wrong) not in words(truth)
        assert str(bars[named]) in words(truth)
        assert {int(w) for w in words(truth) if w.isdigit()} <= set(bars.values())


def test_positive_answers_agree_with_the_inventory(offline):
    _, raw, inventory, _ = offline
    for r in (r for r in raw if r["instruction_type"] == "positive"):
        assert r["manipulated"] is None
        answer = words(r["answer"])
        assert "no" not in answer and "not" not in answer, r
        if r["image_id"].startswith("chart-"):
            bars = dict(map(tuple, inventory[r["image_id"]]["bars"]))
            named = [c for c in bars if c in answer]
            assert named, r
            for color in named:  # "The red bar shows 4." / "The blue bar is the tallest, at 7."
                assert str(bars[color]) in answer, r
            if "tallest" in answer:
                assert named == [max(bars, key=bars.get)], r
            continue
        shape, color = easy_vqa_truth(r["image_id"])
        mentioned = set(answer) & set(assets.SHAPES + assets.COLORS)
        assert mentioned and mentioned <= {shape, color}, r
        if r["question"].startswith("Is"):
            assert r["answer"].startswith("Yes"), r


def test_a_fixed_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    a = generate_offline(tmp_path / "a", n=30, shares=SHARES, seed=3)
    b = generate_offline(tmp_path / "b", n=30, shares=SHARES, seed=3)
    c = generate_offline(tmp_path / "c", n=30, shares=SHARES, seed=4)
    files = sorted(p.relative_to(a.parent) for p in a.parent.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b.parent) for p in b.parent.rglob("*") if p.is_file())
    assert all((a.parent / f).read_bytes() == (b.parent / f).read_bytes() for f in files)
    assert a.read_bytes() != c.read_bytes()


# ---------------------------------------------------------------- the real schema


def write_lrv(tmp_path, records, *, wrap=False, name="lrv.json"):
    """An LRV-Instruction file in the real schema, with a Visual Genome style image folder."""
    (tmp_path / "image").mkdir(exist_ok=True)
    for r in records:
        if isinstance(r, dict) and "image_id" in r:
            Image.new("RGB", (32, 24), "red").save(tmp_path / "image" / f"{r['image_id']}.jpg")
    path = tmp_path / name
    path.write_text(json.dumps({"annotations": records} if wrap else records))
    return path


REAL = [
    {
        "image_id": "2392588",
        "question": "Can you see a blue teapot on the white electric stove in the kitchen?",
        "answer": "There is no mention of a teapot on the white electric stove in the kitchen.",
        "task": "negative",
    },
    {"image_id": 2380160, "question": "What is on the table?", "answer": "A vase with red flowers.", "task": "VQA"},
]


@pytest.mark.parametrize("wrap", [False, True])
def test_the_loader_reads_a_list_or_the_annotations_wrapper(tmp_path, wrap):
    records = load_lrv(write_lrv(tmp_path, REAL, wrap=wrap))
    assert [(r.image_id, r.task, r.source, r.instruction_type, r.row) for r in records] == [
        ("2392588", "negative", "lrv-instruction", None, 0),
        ("2380160", "VQA", "lrv-instruction", None, 1),
    ]
    assert records[0].image == str(tmp_path / "image" / "2392588.jpg")


def test_images_are_found_in_visual_genome_folders_under_the_image_root(tmp_path):
    root = tmp_path / "vg"
    (root / "VG_100K_2").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "VG_100K_2" / "7.jpg")
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"image_id": 7, "question": "Q?", "answer": "A.", "task": "t"}]))
    assert load_lrv(path, root)[0].image == str(root / "VG_100K_2" / "7.jpg")


def test_caption_references_are_rephrased_to_the_image():
    assert image_grounded(REAL[0]["answer"]) == (
        "The image does not show a teapot on the white electric stove in the kitchen."
    )
    assert image_grounded("A cat is not mentioned in the caption.") == "A cat is not visible in the image."
    assert image_grounded("The description does not mention a dog.") == "The image does not show a dog."
    assert image_grounded("Yes, there is a red bus.") == "Yes, there is a red bus."


def test_rows_hold_the_image_the_question_and_the_grounded_answer(tmp_path):
    rows = sft_rows(load_lrv(write_lrv(tmp_path, REAL)))
    user, assistant = rows[0]["messages"]
    assert [c["type"] for c in user["content"]] == ["image", "text"]
    assert user["content"][1]["text"] == REAL[0]["question"]
    assert assistant["content"][0]["text"].startswith("The image does not show a teapot")
    assert rows[1]["images"][0].size == (32, 24)


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        ({"image_id": "1", "question": "Q?", "task": "t"}, "answer", "non-empty string"),
        ({"image_id": "1", "question": "  ", "answer": "A.", "task": "t"}, "question", "non-empty string"),
        ({"question": "Q?", "answer": "A.", "task": "t"}, "image_id", "image id"),
        ({"image_id": True, "question": "Q?", "answer": "A.", "task": "t"}, "image_id", "image id"),
        ({"image_id": "1", "question": "Q?", "answer": "A.", "task": 3}, "task", "non-empty string"),
    ],
)
def test_a_record_off_the_schema_names_file_row_and_field(tmp_path, record, field, message):
    good = {"image_id": "0", "question": "Q?", "answer": "A.", "task": "t"}
    path = write_lrv(tmp_path, [good, record])
    (tmp_path / "image" / "1.jpg").write_bytes((tmp_path / "image" / "0.jpg").read_bytes())
    with pytest.raises(SampleError, match=message) as err:
        load_lrv(path)
    assert (err.value.source, err.value.row, err.value.field) == (str(path), 1, field)


def test_a_file_of_another_schema_is_named_with_what_lrv_expects(tmp_path):
    vlguard = tmp_path / "train.json"
    vlguard.write_text(json.dumps([{"id": "u1", "image": "a.png", "safe": False, "instr-resp": []}]))
    with pytest.raises(SampleError, match=r"train\.json, row 0, field 'image_id'.*\{image_id, question, answer"):
        load_lrv(vlguard)
    obj = tmp_path / "obj.json"
    obj.write_text(json.dumps({"data": []}))
    with pytest.raises(SampleError, match=r"obj\.json: expected a JSON list of records or \{'annotations'"):
        load_lrv(obj)
    with pytest.raises(SampleError, match="not found"):
        load_lrv(tmp_path / "missing.json")


def test_a_missing_image_names_the_record_and_where_it_looked(tmp_path):
    path = write_lrv(tmp_path, REAL)
    (tmp_path / "image" / "2380160.jpg").unlink()
    with pytest.raises(SampleError, match=r"row 1, field 'image_id': no image for image_id '2380160'"):
        load_lrv(path)


@pytest.mark.parametrize("content", [b"", b"not a jpeg"])
def test_an_unreadable_image_names_the_file_and_row(tmp_path, content):
    path = write_lrv(tmp_path, REAL)
    (tmp_path / "image" / "2380160.jpg").write_bytes(content)
    records = load_lrv(path)
    with pytest.raises(SampleError, match=r"cannot read image .*2380160\.jpg") as err:
        sft_rows(records)
    assert (err.value.source, err.value.row, err.value.field) == (str(path), 1, "images[0]")


def test_training_records_mix_the_real_file_with_the_offline_ones(tmp_path):
    (tmp_path / "real").mkdir()
    path = write_lrv(tmp_path / "real", REAL)
    cfg = LrvConfig(cache_dir=str(tmp_path / "cache"), synthetic_records=10, lrv_file=str(path), lrv_max_records=1)
    records = training_records(cfg)
    assert len(records) == 11 and sum(r.source == "lrv-instruction" for r in records) == 1
    alone = training_records(LrvConfig(cache_dir=str(tmp_path / "cache"), synthetic_records=0, lrv_file=str(path)))
    assert sorted(r.image_id for r in alone) == ["2380160", "2392588"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"negative_type_shares": "nonexistent=0.5,existent=0.4"}, "sum to 1"),
        ({"negative_type_shares": "absent=1"}, "TYPE=SHARE"),
        ({"negative_type_shares": "knowledge=-1,existent=2"}, "negative"),
        ({"negative_ratio": 1.5}, "between 0 and 1"),
        ({"synthetic_records": 0}, "nothing to train on"),
    ],
)
def test_bad_settings_are_errors_saying_what_to_change(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LrvConfig(**kwargs)


def test_shares_leave_out_types_at_zero():
    assert parse_shares("existent=1") == {"nonexistent": 0.0, "existent": 1.0, "knowledge": 0.0}
