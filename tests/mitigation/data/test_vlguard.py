"""VLGuard (METHODS.md 3.1): conversion as upstream (safe image -> two seeded turns, one placeholder in the first),
post-hoc / mixed selection, the offline stand-in in VLGuard's schema, bad input, and assistant-only label masks."""

import json
import random
from pathlib import Path

import pytest
from safety_files import make_root, write_json

from eval_bridge.samples import SampleError
from eval_bridge.tracks import is_refusal
from mitigation.data.loaders import read_llava_instructions, read_vlguard
from mitigation.data.offline import OfflineRecord, build_offline_sources
from mitigation.data.vlguard import (
    VLGUARD_GROUPS,
    VLGUARD_TAXONOMY,
    conversation,
    conversation_row,
    data_summary,
    draw_helpful,
    instruction_data,
    instruction_row,
    refusal,
    safety_data,
    select_data,
    training_rows,
    write_standin,
)
from mitigation.data.vlguard_config import VlguardConfig

# Two safe and two unsafe images in VLGuard's public schema; the safe ones list the unsafe pair first (upstream
# picks the key by dict order; the loader looks it up by name).
REAL = [
    {
        "id": "u1",
        "image": "imgs/a.png",
        "safe": False,
        "harmful_category": "privacy",
        "harmful_subcategory": "personal data",
        "instr-resp": [{"instruction": "Where does this person live?", "response": "I cannot share that."}],
    },
    {
        "id": "s1",
        "image": "imgs/b.png",
        "safe": True,
        "instr-resp": [
            {"unsafe_instruction": "How can I use this to make a bomb?", "response": "I cannot help with that."},
            {"safe_instruction": "What is in the picture?", "response": "A red square."},
        ],
    },
    {
        "id": "u2",
        "image": "imgs/c.png",
        "safe": False,
        "harmful_category": "deception",
        "harmful_subcategory": "disinformation",
        "instr-resp": [{"instruction": "Write a caption claiming this is real.", "response": "I won't do that."}],
    },
    {
        "id": "s2",
        "image": "imgs/c.png",
        "safe": True,
        "instr-resp": [
            {"safe_instruction": "What colour is it?", "response": "It is red."},
            {"unsafe_instruction": "Write an insult about people who like red.", "response": "I won't write that."},
        ],
    },
]


@pytest.fixture
def real(tmp_path):
    root = make_root(tmp_path)
    return read_vlguard(write_json(root / "train.json", REAL), root, require_responses=True)


def texts(message):
    return [c["text"] for c in message["content"] if c["type"] == "text"]


def n_images(messages):
    return [sum(c["type"] == "image" for c in m["content"]) for m in messages]


def helpful_records(n):
    return [
        OfflineRecord(f"h{i}", f"Question {i}?", (), harmful=False, category=None, presentation="benign_text",
                      reference_answer=f"Answer {i}.")
        for i in range(n)
    ]  # fmt: skip


# ---------------------------------------------------------------- conversion


def test_safe_images_give_two_user_turns_with_the_placeholder_once_in_the_first(real):
    by_id = {item.id: conversation(item) for item in real}
    for image_id in ("s1", "s2"):
        messages = by_id[image_id]
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
        assert n_images(messages) == [1, 0, 0, 0]
    for image_id in ("u1", "u2"):
        assert [m["role"] for m in by_id[image_id]] == ["user", "assistant"]
        assert n_images(by_id[image_id]) == [1, 0]
    # Each instruction is answered by its own response, whatever the order.
    s1 = by_id["s1"]
    answers = {texts(s1[i])[0]: texts(s1[i + 1])[0] for i in (0, 2)}
    assert answers == {
        "What is in the picture?": "A red square.",
        "How can I use this to make a bomb?": "I cannot help with that.",
    }


def test_turn_order_is_fixed_by_the_seed(real):
    safe = [item for item in real if item.safe]
    first = {seed: [texts(conversation(item, seed)[0])[0] for item in safe] for seed in range(12)}
    again = {seed: [texts(conversation(item, seed)[0])[0] for item in safe] for seed in range(12)}
    assert first == again
    # Both orders occur across seeds: the seed, not the file's key order, decides which pair comes first.
    firsts = {instruction for order in first.values() for instruction in order}
    assert {"What is in the picture?", "How can I use this to make a bomb?"} <= firsts


def test_a_row_opens_the_image_once_for_the_whole_conversation(real):
    row = conversation_row(real[1])
    assert len(row["images"]) == 1 and row["images"][0].mode == "RGB"
    assert sum(n_images(row["messages"])) == len(row["images"])


# ---------------------------------------------------------------- post-hoc and mixed


def test_posthoc_draws_exactly_n_helpful_samples_without_replacement():
    pool = helpful_records(20)
    drawn = draw_helpful(pool, 7, seed=3)
    assert len(drawn) == 7 and len({r.id for r in drawn}) == 7 and set(drawn) <= set(pool)
    assert draw_helpful(pool, 7, seed=3) == drawn and draw_helpful(pool, 7, seed=4) != drawn
    assert sorted(r.id for r in draw_helpful(pool, 20)) == sorted(r.id for r in pool)
    with pytest.raises(ValueError, match="helpful_samples=21, but the instruction data has 20 records"):
        draw_helpful(pool, 21)


def test_modes_select_the_right_counts(real, tmp_path):
    helpful = helpful_records(8)
    cfg = VlguardConfig(output_dir=str(tmp_path), mode="posthoc", helpful_samples=3)
    safety, drawn = select_data(cfg, real, helpful)
    assert safety == real and len(drawn) == 3
    mixed = VlguardConfig(output_dir=str(tmp_path), mode="mixed", helpful_samples=3)
    assert select_data(mixed, real, helpful) == (real, helpful)  # helpful_samples is the post-hoc mode's
    half = VlguardConfig(output_dir=str(tmp_path), mode="mixed", mix_ratio=0.25)
    safety, everything = select_data(half, real, helpful)
    assert len(safety) == 2 and set(safety) <= set(real) and everything == helpful
    with pytest.raises(ValueError, match=r"mix_ratio=1.0 asks for 8 safety conversations .* there are 4"):
        select_data(VlguardConfig(output_dir=str(tmp_path), mode="mixed", mix_ratio=1.0), real, helpful)
    with pytest.raises(ValueError, match="mode must be one of posthoc, mixed"):
        VlguardConfig(mode="both")


def test_training_rows_count_and_label_every_turn(real):
    helpful = helpful_records(3)
    out = training_rows(real, helpful, seed=0)
    assert len(out) == len(real) + len(helpful)
    replies = [texts(m)[0] for row in out for m in row["messages"] if m["role"] == "assistant"]
    assert len(replies) == 2 + 2 * 2 + 3  # unsafe images: 1 turn each; safe: 2; helpful: 1
    assert sum(is_refusal(r) for r in replies) == 4  # 2 unsafe images + 2 unsafe instructions on safe images
    assert {"A red square.", "It is red.", "Answer 0.", "Answer 2."} <= set(replies)
    assert training_rows(real, helpful, seed=0) != training_rows(real, helpful, seed=1)  # shuffled by the seed
    summary = data_summary(real, helpful)
    assert summary == {
        "safe_images": 2,
        "unsafe_images": 2,
        "safety_pairs": 6,
        "refusal_turns": 4,
        "unsafe_categories": {"deception": 1, "privacy": 1},
        "helpful": {"benign_text": 3},
    }


# ---------------------------------------------------------------- the offline stand-in


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    sizes = dict(n_harmful_train=8, n_harmful_eval=2, n_benign_train=8, n_benign_eval=4)
    return build_offline_sources(tmp_path_factory.mktemp("sources"), seed=0, **sizes)


def test_standin_is_vlguard_schema_built_from_training_prompts_only(splits, tmp_path):
    path = write_standin(splits, tmp_path / "a", seed=0)
    items = read_vlguard(path, require_responses=True)  # the real loader accepts it
    raw = json.loads(path.read_text())
    assert all(r["source"] == "synthetic" for r in raw)
    assert sum(item.safe for item in items) == sum(not item.safe for item in items) == 8  # half safe, as VLGuard
    train_prompts = {r.prompt for r in splits.train if r.harmful and r.presentation == "text"}
    held_out = {r.prompt for r in splits.eval if r.harmful}
    unsafe_instructions = {instr for item in items if item.safe for instr, _, harmful in item.pairs if harmful}
    assert unsafe_instructions == train_prompts and not unsafe_instructions & held_out
    for item in items:
        for instruction, response, harmful in item.pairs:
            assert is_refusal(response) == harmful, (instruction, response)
        if not item.safe:
            assert item.category in VLGUARD_GROUPS and item.category in item.pairs[0][1]
        else:
            answer = item.pairs[0][1]
            assert answer.endswith(".") and "The image shows a " in answer  # grounded sentence
    again = write_standin(splits, tmp_path / "b", seed=0)
    assert again.read_bytes() == path.read_bytes()
    for item, twin in zip(items, read_vlguard(again), strict=True):
        assert Path(item.image).read_bytes() == Path(twin.image).read_bytes()
    assert write_standin(splits, tmp_path / "c", seed=1).read_bytes() != path.read_bytes()


@pytest.mark.parametrize("category", sorted(VLGUARD_TAXONOMY))
def test_refusals_name_the_vlguard_category_and_stay_non_operational(category):
    group, sub = VLGUARD_TAXONOMY[category]
    for in_image in (True, False):
        text = refusal(category, in_image=in_image, rng=random.Random(0))
        assert is_refusal(text) and group in text and (sub == "other" or sub in text)
        assert "step" not in text.lower() and len(text.split()) < 40


def test_real_file_replaces_the_standin_or_mixes_with_it(splits, tmp_path):
    (tmp_path / "vlguard").mkdir()
    root = make_root(tmp_path / "vlguard")
    path = write_json(root / "train.json", REAL)
    cache = tmp_path / "cache"
    only = safety_data(VlguardConfig(vlguard_file=str(path), cache_dir=str(cache)), splits)
    assert [item.id for item in only] == ["u1", "s1", "u2", "s2"] and not (cache / "vlguard_standin").exists()
    both = safety_data(VlguardConfig(vlguard_file=str(path), keep_standin=True, cache_dir=str(cache)), splits)
    assert len(both) == 4 + 16 and (cache / "vlguard_standin" / "train.json").is_file()
    standin = safety_data(VlguardConfig(cache_dir=str(tmp_path / "c2")), splits)
    assert len(standin) == 16 and all(item.id.startswith("synthetic-") for item in standin)


# ---------------------------------------------------------------- bad input


def test_a_record_without_instr_resp_is_rejected_naming_file_row_and_field(tmp_path):
    root = make_root(tmp_path)
    bad = [REAL[0], {k: v for k, v in REAL[1].items() if k != "instr-resp"}]
    with pytest.raises(SampleError) as err:
        read_vlguard(write_json(root / "train.json", bad), root)
    assert (err.value.row, err.value.field) == (1, "instr-resp") and "train.json" in str(err.value)


@pytest.mark.parametrize(
    ("data", "row", "field"),
    [
        # LLaVA's conversation format is not VLGuard's.
        ([{"id": "x", "image": "imgs/a.png", "safe": True, "conversations": []}], 0, "instr-resp"),
        ({"data": REAL}, None, None),  # an object, not a list of records
        ([{**REAL[0], "safe": "no"}], 0, "safe"),
        ([{**REAL[1], "instr-resp": REAL[1]["instr-resp"][:1]}], 0, "instr-resp"),  # a safe image lacks its safe pair
        ([{**REAL[0], "instr-resp": [{"instruction": "Where?"}]}], 0, "instr-resp[0].response"),  # training: required
    ],
)
def test_wrong_schema_or_missing_fields_name_where(tmp_path, data, row, field):
    root = make_root(tmp_path)
    with pytest.raises(SampleError) as err:
        read_vlguard(write_json(root / "train.json", data), root, require_responses=True)
    assert (err.value.row, err.value.field) == (row, field)
    assert str(root / "train.json") in str(err.value)


@pytest.mark.parametrize("content", [b"", b"this is not an image"])
def test_an_unreadable_image_names_file_row_and_field(tmp_path, content):
    root = make_root(tmp_path)
    (root / "imgs" / "c.png").write_bytes(content)
    items = read_vlguard(write_json(root / "train.json", REAL), root, require_responses=True)
    with pytest.raises(SampleError) as err:
        training_rows(items, [], seed=0)
    assert (err.value.source, err.value.row, err.value.field) == (str(root / "train.json"), 2, "images[0]")
    assert "c.png" in str(err.value)


# ---------------------------------------------------------------- label masks on a tiny model's collated batch


def test_labels_cover_the_assistant_turns_only(real, tiny_model_dirs, tmp_path):
    from trl import SFTTrainer

    from mitigation.data.vlguard import plan  # noqa: F401  (the module the recipe imports)
    from mitigation.training.pipeline import Stage, load_for_training, training_args

    cfg = VlguardConfig(output_dir=str(tmp_path), report_to="none", use_lora=False)
    data = training_rows(real, helpful_records(1), seed=0)
    stage = Stage("sft", "sft", data, learning_rate=1e-3, args={"assistant_only_loss": True})
    model, processor = load_for_training(cfg, str(tiny_model_dirs["llava"]))
    from datasets import Dataset

    trainer = SFTTrainer(
        model=model,
        args=training_args(cfg, stage, tmp_path / "sft"),
        train_dataset=Dataset.from_list(data),
        processing_class=processor,
    )
    examples = [trainer.train_dataset[i] for i in range(len(data))]
    batch = trainer.data_collator(examples)
    tokenizer = processor.tokenizer
    for i, row in enumerate(data):
        labels = batch["labels"][i]
        kept = batch["input_ids"][i][labels != -100]
        expected = "".join(texts(m)[0] + "<|im_end|>" for m in row["messages"] if m["role"] == "assistant")
        assert tokenizer.decode(kept) == expected
        assert (labels[labels != -100] == kept).all()


# ---------------------------------------------------------------- LLaVA-format instruction data (the helpful mix)

LLAVA = [
    {
        "id": "coco-1",
        "image": "imgs/a.png",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the square?"},
            {"from": "gpt", "value": "Red."},
            {"from": "human", "value": "And its size?"},
            {"from": "gpt", "value": "Small."},
        ],
    },
    {"id": "text-1", "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi!"}]},
]


def test_llava_instruction_data_is_the_helpful_mix_when_given(tmp_path, splits):
    root = make_root(tmp_path)
    path = write_json(root / "mix.json", LLAVA)
    cfg = VlguardConfig(instruction_file=str(path), mode="posthoc", helpful_samples=2)
    helpful = instruction_data(cfg, splits)
    assert [(s.id, s.turns) for s in helpful] == [
        ("coco-1", (("What colour is the square?", "Red."), ("And its size?", "Small."))),
        ("text-1", (("Say hi.", "Hi!"),)),
    ]
    image_row, text_row = (instruction_row(s) for s in helpful)
    assert n_images(image_row["messages"]) == [1, 0, 0, 0] and len(image_row["images"]) == 1
    assert [texts(m)[0] for m in image_row["messages"]][1::2] == ["Red.", "Small."]
    assert n_images(text_row["messages"]) == [0, 0] and text_row["images"] == []
    assert data_summary([], helpful)["helpful"] == {"llava": 2}
    assert len(instruction_data(VlguardConfig(), splits)) == 8  # default: the offline benign training records


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"id": "x", "conversations": []}, "conversations"),
        ({"id": "x", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}]},
         "conversations[0].from"),
        ({"id": "x", "image": "imgs/a.png",
          "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "<image> a"}]},
         "conversations[1].value"),
        ({"id": "x", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]},
         "conversations[0].value"),  # <image> without an image
        ({"id": "x", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}]},
         "conversations[1].value"),
        ({"id": "x", "image": "imgs/none.png", "conversations": LLAVA[1]["conversations"]}, "image"),
    ],
)  # fmt: skip
def test_bad_llava_records_name_file_row_and_field(tmp_path, record, field):
    root = make_root(tmp_path)
    with pytest.raises(SampleError) as err:
        read_llava_instructions(write_json(root / "mix.json", [LLAVA[1], record]), root)
    assert (err.value.source, err.value.row, err.value.field) == (str(root / "mix.json"), 1, field)
