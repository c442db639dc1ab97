"""Utility-track files in the three accepted forms."""

import json

import pytest
from PIL import Image

from eval_bridge.data.vqa import load_vqa
from eval_bridge.samples import SampleError


def test_plain_vqa_jsonl(tmp_path):
    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    rows = [
        {"image": "a.png", "question": "Colour?", "answers": ["red", "crimson"]},
        {"question": "Capital of France?", "answer": "Paris"},
    ]
    (tmp_path / "v.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b = load_vqa(tmp_path / "v.jsonl")
    assert a.prompt == "Colour?" and a.target == ["red", "crimson"] and a.images == (str(tmp_path / "a.png"),)
    assert b.target == "Paris" and b.images == ()


def test_missing_answers_named(tmp_path):
    (tmp_path / "v.jsonl").write_text(json.dumps({"question": "Colour?"}) + "\n")
    with pytest.raises(SampleError, match=r"v\.jsonl, row 1, field 'answers'"):
        load_vqa(tmp_path / "v.jsonl")


def test_saved_hf_dataset(tmp_path):
    from datasets import Dataset, Features, Sequence, Value
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "question": Value("string"), "answers": Sequence(Value("string"))})
    data = Dataset.from_dict(
        {"image": [Image.new("RGB", (8, 8), "blue")], "question": ["Colour?"], "answers": [["blue"]]},
        features=features,
    )
    data.save_to_disk(str(tmp_path / "ds"))
    (sample,) = load_vqa(tmp_path / "ds")
    assert sample.prompt == "Colour?" and sample.target == ["blue"]
    assert sample.images[0].getpixel((0, 0)) == (0, 0, 255)
