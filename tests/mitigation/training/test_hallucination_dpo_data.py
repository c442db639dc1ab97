"""hallucination_dpo's pairs: the offline stand-in (grounded answer vs a one-attribute hallucination, easy-VQA
training images only, same schema as mDPO's release, byte-identical for a seed), the loader of mDPO and RLAIF-V
files, and its errors naming file, row and field."""

import io
import json
import random
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from eval_bridge.samples import SampleError
from mitigation.data.offline import OfflineRecord
from mitigation.training.hallucination_dpo_data import (
    grounded_pair,
    load_preference_pairs,
    offline_pair_records,
    pair_rows,
    write_offline_pairs,
)

RED_CIRCLE = "The image shows a red circle."


@pytest.mark.parametrize(
    "question, answer, chosen, rejected",
    [
        ("What color is the shape?", "red", "Red. " + RED_CIRCLE, "{c}. The image shows a {c} circle."),
        ("What is the red shape?", "circle", "Circle. " + RED_CIRCLE, "{S}. The image shows a red {s}."),
        # a shape the image lacks: the hallucination claims it
        ("Is there a triangle in the image?", "no", "No. " + RED_CIRCLE, "Yes. The image shows a red triangle."),
        # a colour the image has, negated question: the hallucination denies it and names another colour
        ("Is there not a red shape?", "no", "No. " + RED_CIRCLE, "Yes. The image shows a {c} circle."),
        ("Does the image not contain a gray shape?", "yes", "Yes. " + RED_CIRCLE, "No. The image shows a gray circle."),
    ],
)
def test_grounded_pairs_swap_one_attribute(question, answer, chosen, rejected):
    got_chosen, got_rejected = grounded_pair(question, answer, "red", "circle", random.Random(0))
    assert got_chosen == chosen
    words = got_rejected.rstrip(".").split()
    if "{c}" in rejected:
        assert words[-2] not in ("red",) and rejected.format(c=words[-2]).lower() == got_rejected.lower()
    elif "{s}" in rejected:
        assert words[-1] != "circle" and rejected.format(S=words[-1].capitalize(), s=words[-1]) == got_rejected
    else:
        assert got_rejected == rejected


def vqa_record(i, image, answer="red", split="train", description="a red circle"):
    return OfflineRecord(
        f"train-vqa-{i}",
        "What color is the shape? Answer in one word.",
        (str(image),),
        harmful=False,
        category=None,
        presentation="vqa",
        reference_answer=answer,
        image_description=description,
        source=f"synthetic:easy_vqa-{split}",
    )


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "src" / "7.png"
    path.parent.mkdir()
    Image.new("RGB", (16, 16), "red").save(path)
    return path


def test_offline_pairs_are_deterministic_in_mdpo_schema_and_read_back(png, tmp_path):
    records = [vqa_record(i, png) for i in range(3)]
    a = write_offline_pairs(records, tmp_path / "a", 3, seed=1)
    b = write_offline_pairs(records, tmp_path / "b", 3, seed=1)
    assert a.read_bytes() == b.read_bytes()
    rows = json.loads(a.read_text())
    assert {tuple(sorted(r)) for r in rows} == {("chosen", "id", "img_path", "prompt", "rejected", "source")}
    assert all(r["source"] == "synthetic" and r["img_path"] == "images/7.png" for r in rows)
    assert rows[0]["prompt"] == "<image>\nWhat color is the shape?"  # the one-word instruction dropped
    pairs = load_preference_pairs(a)
    assert [p.prompt for p in pairs] == ["What color is the shape?"] * 3
    assert pairs[0].image == str((tmp_path / "a" / "images" / "7.png").resolve())
    row = pair_rows(pairs)[0]
    assert row["chosen"][0]["content"][0]["text"] == "Red. The image shows a red circle."
    assert row["images"][0].size == (16, 16)


def test_offline_pairs_refuse_held_out_images_and_too_many_pairs(png):
    with pytest.raises(ValueError, match="not the held-out test split"):
        offline_pair_records([vqa_record(0, png, split="test")], 1)
    with pytest.raises(ValueError, match=r"asked for 2 offline pairs.*1 easy-VQA"):
        offline_pair_records([vqa_record(0, png)], 2)


def write_json(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows))
    return path


def test_mdpo_file_with_a_chat_template_prompt(png):
    rows = [
        {
            "img_path": "7.png",
            "prompt": "A chat. USER: <image>\nWhat is in the picture? ASSISTANT:",
            "chosen": "A red square.",
            "rejected": "A dog on a sofa.",
        },
        {
            "img_path": "7.png",
            "prompt": "<|im_start|>user\n<image>\nDescribe it.<|im_end|>",
            "chosen": "a",
            "rejected": "b",
        },
    ]
    pairs = load_preference_pairs(write_json(png.parent / "mdpo.json", rows))
    assert [p.prompt for p in pairs] == ["What is in the picture?", "Describe it."]
    assert pairs[0].source == "mdpo" and pairs[0].row == 0 and pairs[0].file.endswith("mdpo.json")


def test_rlaifv_json_and_parquet_with_embedded_image_bytes(png, tmp_path):
    row = {
        "ds_name": "RLAIF-V",
        "question": "What colour is it?",
        "chosen": "It is red.",
        "rejected": "It is blue.",
        "origin_dataset": "vqa",
        "origin_split": '{"model": "x"}',
        "idx": 11,
        "image_path": "7.png",
    }
    pairs = load_preference_pairs(write_json(png.parent / "rlaifv.json", [{**row, "image": "7.png"}]))
    assert pairs[0].image == str(png.resolve()) and pairs[0].labels == ("RLAIF-V", "vqa", '{"model": "x"}', "11")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(buffer, format="PNG")
    parquet = tmp_path / "rlaifv.parquet"
    pd.DataFrame([{**row, "image": {"bytes": buffer.getvalue(), "path": None}}]).to_parquet(parquet)
    pairs = load_preference_pairs(parquet, image_dir=tmp_path / "out")
    assert pairs[0].source == "rlaif-v" and Image.open(pairs[0].image).size == (8, 8)
    assert pair_rows(pairs)[0]["rejected"][0]["content"][0]["text"] == "It is blue."


# ---------------------------------------------------------------- errors: file, row and field


def base_row(**overrides):
    return {"img_path": "7.png", "prompt": "<image>\nQ?", "chosen": "yes", "rejected": "no", **overrides}


def test_wrong_schema_names_the_file_row_and_the_expected_fields(png):
    vlguard = {"id": "x", "image": "7.png", "safe": True, "instr-resp": []}
    path = write_json(png.parent / "vlguard.json", [base_row(), vlguard])
    expected = r"vlguard.json, row 1: not a preference pair: expected mDPO's fields img_path"
    with pytest.raises(SampleError, match=expected):
        load_preference_pairs(path)


def test_missing_field(png):
    row = base_row()
    del row["rejected"]
    with pytest.raises(SampleError, match=r"m.json, row 0, field 'rejected': missing field"):
        load_preference_pairs(write_json(png.parent / "m.json", [row]))


@pytest.mark.parametrize("content", [b"", b"not an image"])
def test_unreadable_image(png, content):
    (png.parent / "bad.png").write_bytes(content)
    pairs = load_preference_pairs(write_json(png.parent / "m.json", [base_row(), base_row(img_path="bad.png")]))
    with pytest.raises(SampleError, match=r"m.json, row 1, field 'images\[0\]': cannot read image"):
        pair_rows(pairs)


def test_missing_image_and_an_image_outside_the_root(png):
    with pytest.raises(SampleError, match=r"row 0, field 'img_path': image file not found"):
        load_preference_pairs(write_json(png.parent / "m.json", [base_row(img_path="gone.png")]))
    with pytest.raises(SampleError, match=r"row 0, field 'img_path'.*outside the data root"):
        load_preference_pairs(write_json(png.parent / "m.json", [base_row(img_path="../../etc/passwd")]))


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"chosen": ""}, "chosen", "expected a non-empty response"),
        ({"rejected": None}, "rejected", "expected a non-empty response"),
        ({"rejected": " yes "}, "rejected", "chosen and rejected are the same response"),
    ],
)
def test_missing_or_identical_responses(png, overrides, field, message):
    pairs = load_preference_pairs(write_json(png.parent / "m.json", [base_row(**overrides)]))
    with pytest.raises(SampleError, match=rf"m.json, row 0, field '{field}': {message}"):
        pair_rows(pairs)
