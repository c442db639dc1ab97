"""The sample schema: valid records load; every malformed case names the file, row and field."""

import json

import pytest
from PIL import Image

from eval_bridge.samples import Sample, SampleError, load_samples, resolve_under_root, sample_from_record


@pytest.fixture
def root(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "imgs" / "ok.png")
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "imgs" / "empty.png").write_bytes(b"")
    (tmp_path / "imgs" / "notes.png").write_text("a text file named like an image")
    return tmp_path


def write_jsonl(root, records, name="data.jsonl"):
    path = root / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_valid_records_load(root):
    path = write_jsonl(
        root,
        [
            {"id": "a", "prompt": "What is it?", "image": "imgs/ok.png", "target": "red", "metadata": {"k": 1}},
            {"id": 7, "prompt": "Hello"},
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Again?"},
                ]
            },
        ],
    )
    a, b, c = load_samples(path)
    assert a.images == (str(root / "imgs" / "ok.png"),) and a.target == "red" and a.metadata == {"k": 1}
    assert a.source == f"{path}:1"
    assert b.id == "7" and b.images == ()
    assert c.id == "3" and c.system == "Be brief." and c.prompt == "Again?" and len(c.history) == 2
    assert c.messages()[0] == {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    assert a.messages()[-1]["content"] == [{"type": "image"}, {"type": "text", "text": "What is it?"}]


@pytest.mark.parametrize(
    "record, field, message",
    [
        ({"id": "x", "prompt": "Q", "image": "imgs/missing.png"}, "image", "image file not found"),
        ({"id": "x", "prompt": "Q", "images": ["imgs/broken.png"]}, "images[0]", "cannot read image"),
        ({"id": "x", "prompt": "Q", "image": "imgs/empty.png"}, "image", "cannot read image .*replace the file"),
        ({"id": "x", "prompt": "Q", "images": ["imgs/ok.png", "imgs/notes.png"]}, "images[1]", "cannot read image"),
        ({"id": "x", "prompt": "Q", "images": ["../outside.png"]}, "images[0]", "outside the data root"),
        ({"id": "x", "prompt": "Q", "images": ["/etc/passwd"]}, "images[0]", "outside the data root"),
        ({"id": "x", "prompt": "   "}, "prompt", "empty"),
        ({"id": "x"}, "prompt", "missing"),
        ({"id": "x", "prompt": 3}, "prompt", "expected a string, got int"),
        ({"id": ["x"], "prompt": "Q"}, "id", "string or integer id"),
        ({"id": "x", "prompt": "Q", "images": "imgs/ok.png"}, "images", "list of image paths"),
        ({"id": "x", "prompt": "Q", "images": [5]}, "images[0]", "image path string"),
        ({"id": "x", "prompt": "Q", "metadata": [1]}, "metadata", "JSON object"),
        (
            {"id": "x", "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
            "messages",
            "last turn must be the user's",
        ),
        ({"id": "x", "messages": [{"role": "bot", "content": "Q"}]}, "messages[0].role", "role must be one of"),
    ],
)
def test_malformed_record_names_file_row_and_field(root, record, field, message):
    path = write_jsonl(root, [{"id": "fine", "prompt": "ok"}, record])
    with pytest.raises(SampleError, match=message) as info:
        load_samples(path)
    err = info.value
    assert (err.source, err.row, err.field) == (str(path), 2, field)
    assert str(path) in str(err) and "row 2" in str(err) and f"field '{field}'" in str(err)


def test_invalid_json_line_is_located(root):
    path = write_jsonl(root, [{"id": "a", "prompt": "ok"}, "{not json"])
    with pytest.raises(SampleError, match=r"row 2: invalid JSON"):
        load_samples(path)


def test_duplicate_ids_are_refused(root):
    path = write_jsonl(root, [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    with pytest.raises(SampleError, match="duplicate id 'a' \\(first at row 1\\)"):
        load_samples(path)


def test_json_list_rows_are_indices(root):
    path = root / "data.json"
    path.write_text(json.dumps([{"id": "a", "prompt": "ok"}, {"id": "b", "prompt": ""}]))
    with pytest.raises(SampleError, match="row 1"):
        load_samples(path)
    path.write_text(json.dumps({"id": "a"}))
    with pytest.raises(SampleError, match="must hold a list"):
        load_samples(path)


def test_a_byte_order_mark_crlf_and_trailing_blank_lines_are_fine(root):
    rows = [{"id": "a", "prompt": "first"}, {"id": "b", "prompt": "second"}]
    jsonl = root / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(json.dumps(r) for r in rows).encode() + b"\r\n\r\n")
    assert [s.prompt for s in load_samples(jsonl)] == ["first", "second"]
    listed = root / "bom.json"
    listed.write_bytes(b"\xef\xbb\xbf" + json.dumps(rows).encode())
    assert [s.id for s in load_samples(listed)] == ["a", "b"]


def test_images_need_a_data_root():
    with pytest.raises(SampleError, match="no data root"):
        sample_from_record({"id": "a", "prompt": "Q", "image": "x.png"})


def test_symlink_escaping_the_root_is_refused(root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret.png"
    Image.new("RGB", (4, 4)).save(outside)
    (root / "imgs" / "link.png").symlink_to(outside)
    with pytest.raises(SampleError, match="outside the data root"):
        resolve_under_root("imgs/link.png", root)


def test_sample_is_immutable():
    s = Sample("a", "Q")
    with pytest.raises(AttributeError):
        s.prompt = "other"


def test_an_absolute_image_path_inside_the_data_root_is_fine(root):
    path = write_jsonl(root, [{"id": "a", "prompt": "Q", "image": str(root / "imgs" / "ok.png")}])
    assert load_samples(path)[0].images == (str(root / "imgs" / "ok.png"),)
