"""Training rows: TRL's conversational VLM shape, and bad records reported with the record and field."""

import pytest
from PIL import Image

from eval_bridge.samples import SampleError
from mitigation.data.rows import dpo_row, sft_row


def test_sft_row_places_one_placeholder_per_image_before_the_text(image_dir):
    row = sft_row("What colour?", [image_dir / "img0.png", image_dir / "img1.png"], "Red.")
    user, assistant = row["messages"]
    assert [c["type"] for c in user["content"]] == ["image", "image", "text"]
    assert user["content"][-1]["text"] == "What colour?"
    assert assistant == {"role": "assistant", "content": [{"type": "text", "text": "Red."}]}
    assert [im.size for im in row["images"]] == [(40, 40), (64, 48)]
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in row["images"])


def test_text_only_rows_have_no_images():
    row = dpo_row("Hi", [], "Hello!", "No.")
    assert row["images"] == [] and [c["type"] for c in row["prompt"][0]["content"]] == ["text"]
    assert row["chosen"][0]["content"][0]["text"] == "Hello!" and row["rejected"][0]["content"][0]["text"] == "No."


@pytest.mark.parametrize(
    ("chosen", "rejected", "field"),
    [(None, "No.", "chosen"), ("Yes.", "  ", "rejected"), ("Same  answer.", "Same answer.", "rejected")],
)
def test_a_pair_that_cannot_form_a_preference_names_row_and_field(chosen, rejected, field):
    with pytest.raises(SampleError) as err:
        dpo_row("Q", [], chosen, rejected, source="pairs.json", row=7)
    assert (err.value.source, err.value.row, err.value.field) == ("pairs.json", 7, field)
    assert "pairs.json, row 7" in str(err.value)


@pytest.mark.parametrize("content", [b"", b"not a png at all"])
def test_an_unreadable_image_names_the_file_and_record(tmp_path, content):
    bad = tmp_path / "broken.png"
    bad.write_bytes(content)
    with pytest.raises(SampleError, match=r"cannot read image .*broken\.png") as err:
        sft_row("Q", [bad], "A.", source="train.json", row=3)
    assert (err.value.row, err.value.field) == (3, "images[0]")
