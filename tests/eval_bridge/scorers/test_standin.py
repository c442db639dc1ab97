"""The offline stand-in classifiers: built on a tiny random Llama from slices of PyRIT's real human labels, saved,
reloaded by ClassifierScorer, read by the suite's existing refusal and toxicity checks, cached, and used by
default when no classifier is named. The real build (SmolLM2) and the mini suite on the embedded default are slow.
"""

import dataclasses
import json
from pathlib import Path

import pytest

from eval_bridge.models.tiny import build_tiny_lm
from eval_bridge.samples import Sample
from eval_bridge.scorers import standin
from eval_bridge.scorers.classifier import ClassifierScorer
from eval_bridge.scoring import Scorers, score_dataset
from eval_bridge.tasks import checks as c
from eval_bridge.tasks.fairness import REFUSAL_ANY, REFUSAL_LABEL0

# The tiny LM has two layers and 32 dimensions; a weak penalty lets the probe fit its training slice.
TINY = {"layers": (1, 2), "l2": (1e-3,)}
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def tiny_base():
    """(tiny Llama, tokenizer), built once: builds copy what they take from it."""
    lm_and_tokenizer = build_tiny_lm()
    return lambda: lm_and_tokenizer


def _slice(responses, n):
    """The first n responses of each label."""
    pos = [r for r in responses if r.label][:n]
    neg = [r for r in responses if not r.label][:n]
    return pos + neg


@pytest.fixture(scope="module")
def refusal_slice():
    return _slice(standin.REFUSAL.responses()[0], 18)


@pytest.fixture(scope="module")
def standin_root(tmp_path_factory, refusal_slice, tiny_base):
    """A cache root holding both stand-ins, built on the tiny LM (the recipes' real names and directories)."""
    root = tmp_path_factory.mktemp("cache")
    for recipe, data in (
        (standin.REFUSAL, refusal_slice),
        (standin.TOXICITY, _slice(standin.TOXICITY.responses()[0], 24)),
    ):
        standin.ensure_standin(
            dataclasses.replace(recipe, **TINY), standin.standin_dir(recipe, root), base=tiny_base, responses=data
        )
    return root


@pytest.fixture
def standins_on(monkeypatch, standin_root):
    monkeypatch.setenv("VLM_TRUST_CACHE", str(standin_root))
    monkeypatch.setenv(standin.STANDIN_ENV, "on")
    return standin_root


def _samples(n):
    return [Sample(f"s{i}", "the request") for i in range(n)]


def test_the_saved_refusal_standin_speaks_longformer_labels(standin_root, refusal_slice):
    path = standin.standin_dir(standin.REFUSAL, standin_root)
    card = standin.read_card(path)
    scorer = ClassifierScorer(str(path), ("LABEL_0", "LABEL_4"), max_length=card["recipe"]["max_length"])
    assert [scorer.labels[i] for i in sorted(scorer.labels)] == [f"LABEL_{i}" for i in range(6)]
    texts = [r.text for r in refusal_slice]
    assert set(scorer.top_labels(texts)) <= {"LABEL_0", "LABEL_5"}  # LABEL_1..4 never win
    assert card["saved_model_check"] == {"held_out_rows": 10, "agreement_with_probe": 1.0}
    assert card["split"] == {"seed": 0, "held_out_fraction": 0.3, "train": 26, "held_out": 10}
    assert set(card["held_out_accuracy"]) == {"standin", "multitrust_keywords", "strict_phrases", "majority_label"}
    assert card["data"]["used"] == 36 and card["chosen"]["layers"] in (1, 2)
    train = standin.stratified_split([r.label for r in refusal_slice], 0.3, 0)[0]
    expected = sum(len(standin.openings(refusal_slice[i].text, (3, 8))) for i in train)
    assert card["data"]["training_openings"] == expected > 0  # of the training rows only
    assert card["data"]["training_only_compliant"] > 100  # openings of PyRIT's objective-achieving answers


def test_openings_are_the_first_sentence_and_the_first_words():
    text = "I'm sorry, but I can't. Here is why it matters to me"
    assert standin.openings(text, (3, 8)) == [
        "I'm sorry, but",
        "I'm sorry, but I can't. Here is why",
        "I'm sorry, but I can't.",
    ]
    assert standin.openings("B", (3, 8)) == [] and standin.openings("Sure, here it is", ()) == []
    assert standin.openings("Yes.\nThe square is red", (3,)) == ["Yes. The square", "Yes."]


def test_every_existing_refusal_check_reads_the_standin_as_the_human_labels(standins_on, refusal_slice):
    """Through the suite's own checks (default, F-tasks' LABEL_0..4 and LABEL_0-only readings, P5's min_length,
    P4's FOLLOW), the stand-in recovers the human refusal labels of the rows it was fitted on."""
    train_ids = set(standin.stratified_split([r.label for r in refusal_slice], 0.3, 0)[0])
    train = [r for i, r in enumerate(refusal_slice) if i in train_ids]
    texts, human = [r.text for r in train], [float(r.label) for r in train]
    checks = {
        "default": (c.classifier_refusal(),),
        "F-any": REFUSAL_ANY[1:],
        "F-label0": REFUSAL_LABEL0[1:],
        "follow": (c.FOLLOW,),
        "P5": (c.classifier_refusal(min_length=40),),
    }
    scorers = Scorers.from_specs()
    values = {}
    for name, chain in checks.items():
        scores, used = score_dataset(chain, "d", _samples(len(texts)), texts, scorers, standins_on / "judge")
        values[name] = next(iter(scores.values.values()))
        assert set(used.values()) == {"classifier:standin-refusal-v2 (stand-in for LibrAI/longformer-action-ro)"}
    assert values["default"] == values["F-any"] == values["F-label0"]
    assert values["follow"] == [1.0 - v for v in values["default"]]
    assert values["P5"] == [v if len(t) >= 40 else 0.0 for v, t in zip(values["default"], texts, strict=True)]
    agreement = sum(v == h for v, h in zip(values["default"], human, strict=True)) / len(human)
    assert agreement >= 0.9, agreement  # an inverted or shifted label map would score near 0


def test_the_toxicity_standin_scores_0_or_1_per_response(standins_on):
    harmful = [r for r in standin.TOXICITY.responses()[0] if r.label][:5]
    texts = [r.text for r in harmful] + ["I'm sorry, I can't help with that."]
    scores, used = score_dataset((c.TOXICITY,), "d", _samples(6), texts, Scorers.from_specs(), standins_on / "j")
    assert used["toxicity"] == "classifier:standin-toxicity-v2 (stand-in for Perspective API / OpenAI moderation)"
    assert set(scores.values["toxicity"]) <= {0.0, 1.0}


def test_none_turns_a_standin_off_and_a_named_classifier_takes_its_place(standins_on):
    user_dir = str(standin.standin_dir(standin.REFUSAL, standins_on))  # any longformer-labelled checkpoint
    off = Scorers.from_specs(refusal_classifier="none", toxicity_classifier="None")
    assert off.refusal_classifier is None and off.toxicity_classifier is None
    _, used = score_dataset((c.classifier_refusal(),), "d", _samples(1), ["no"], off, standins_on / "j")
    assert used["classifier_refusal"].startswith("unavailable:classifier_refusal (no refusal classifier configured")
    named = Scorers.from_specs(refusal_classifier=user_dir)
    assert isinstance(named.refusal_classifier, ClassifierScorer)
    assert named.ids()["refusal_classifier"] == f"hf-classifier:{user_dir}[LABEL_0,LABEL_4]"
    assert named.ids()["toxicity_classifier"].startswith("standin-toxicity-v2")


def test_the_environment_switch_turns_the_standins_off(standins_on, monkeypatch):
    monkeypatch.setenv(standin.STANDIN_ENV, "off")
    scorers = Scorers.from_specs()
    assert scorers.refusal_classifier is None and scorers.toxicity_classifier is None


def test_missing_assets_leave_the_role_empty_instead_of_failing(monkeypatch, tmp_path):
    monkeypatch.setenv("VLM_TRUST_CACHE", str(tmp_path))
    monkeypatch.setenv(standin.STANDIN_ENV, "on")
    monkeypatch.setattr(standin, "standin_assets_installed", lambda: False)
    assert standin.default_standin("refusal") is None


def test_a_standin_is_built_on_first_use_only_and_then_reused(tmp_path, refusal_slice, monkeypatch, tiny_base):
    calls = []

    def counting_base():
        calls.append(1)
        return tiny_base()

    recipe = dataclasses.replace(standin.REFUSAL, **TINY)
    monkeypatch.setattr(standin, "refusal_responses", lambda: (refusal_slice, {"files": ["slice"]}))
    lazy = standin.StandinClassifier(recipe, root=tmp_path, base=counting_base)
    assert lazy.id == "standin-refusal-v2 (stand-in for LibrAI/longformer-action-ro)"
    assert not standin.is_built(lazy.path) and calls == []  # naming it costs nothing
    first = lazy.top_labels(["I cannot help with that."])
    assert standin.is_built(lazy.path) and calls == [1]
    weights = next(lazy.path.glob("*.safetensors")).stat().st_mtime_ns
    again = standin.StandinClassifier(recipe, root=tmp_path, base=counting_base)
    assert again.top_labels(["I cannot help with that."]) == first
    assert calls == [1] and next(lazy.path.glob("*.safetensors")).stat().st_mtime_ns == weights
    assert not list(tmp_path.glob("standin/*.partial-*"))


def test_an_unfinished_build_is_rebuilt_and_a_new_recipe_version_gets_its_own_directory(
    tmp_path, refusal_slice, tiny_base
):
    recipe = dataclasses.replace(standin.REFUSAL, **TINY)
    out = standin.standin_dir(recipe, tmp_path)
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")  # what an interrupted build could leave: no marker
    standin.ensure_standin(recipe, out, base=tiny_base, responses=refusal_slice)
    assert standin.is_built(out) and len(json.loads((out / "config.json").read_text())["id2label"]) == 6
    v3 = dataclasses.replace(recipe, version=3)
    assert standin.standin_dir(v3, tmp_path) != out and v3.name == "standin-refusal-v3"


def test_the_wrapped_tokenizer_reads_the_opening_of_a_long_reply_and_pads_on_the_right(standin_root):
    from transformers import AutoTokenizer

    path = standin.standin_dir(standin.REFUSAL, standin_root)
    tokenizer = AutoTokenizer.from_pretrained(path)
    max_length = standin.read_card(path)["recipe"]["max_length"]
    wrapper = tokenizer("")["input_ids"]  # the chat turn around an empty reply
    reply = tokenizer("word " * 500, add_special_tokens=False)["input_ids"]
    short, long = tokenizer(["no", "word " * 500], padding=True, truncation=True, max_length=max_length)["input_ids"]
    start = next(i for i, (a, b) in enumerate(zip(wrapper, long, strict=False)) if a != b)
    n = standin.REFUSAL.reply_tokens
    assert len(long) == max_length == len(wrapper) + n
    assert long[start : start + n] == reply[:n] and long[:start] + long[start + n :] == wrapper
    assert "Does the assistant refuse" in tokenizer.decode(long[start + n :])
    assert short[-1] == tokenizer.pad_token_id and tokenizer.pad_token == "<|endoftext|>"


@pytest.fixture
def evaluate_cli():
    """scripts/evaluate.py's main, loaded in-process (the environment set by a test reaches it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("evaluate_script", REPO / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize(
    ("args", "refusal", "toxicity"),
    [
        ((), "classifier:standin-refusal-v2 (stand-in for LibrAI/longformer-action-ro)", "classifier:standin-toxicity"),
        (("--refusal-classifier", "none", "--toxicity-classifier", "none"), "unavailable:", "unavailable:"),
    ],
)
def test_the_evaluate_command_uses_the_standins_unless_told_none(
    standins_on, evaluate_cli, tiny_model_dirs, tmp_path, args, refusal, toxicity
):
    out = tmp_path / "out"
    model = ["--model", str(tiny_model_dirs["llava"]), "--tasks", "F5,S1", "--no-tracks", "--limit", "2"]
    evaluate_cli([*model, "--max-new-tokens", "4", "--cache-dir", str(tmp_path / "cache"), "--output", str(out), *args])
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"]["F5"]["datasets"]["vision-preference"]["scorers"]["classifier_refusal"].startswith(refusal)
    assert results["tasks"]["S1"]["datasets"]["nsfw-image-description"]["scorers"]["toxicity"].startswith(toxicity)
    assert any(note.startswith(refusal) for note in results["tasks"]["F5"]["notes"])  # results.md shows it too


# ---------------------------------------------------------------- slow: the real build and the embedded default

STANDIN_TASKS = ("F4", "F5", "F6", "F7", "P4", "P5", "P6", "S1", "S3")


@pytest.mark.slow
def test_the_real_refusal_standin_beats_the_phrase_rules_on_held_out_human_labels(monkeypatch):
    monkeypatch.setenv(standin.STANDIN_ENV, "on")
    card = standin.read_card(standin.ensure_standin(standin.REFUSAL))  # the user cache: built once
    cv = card["cv_accuracy_all_rows"]  # every one of the 72 rows predicted by a probe that never saw it
    assert cv["standin"] > max(cv["multitrust_keywords"], cv["strict_phrases"]) + 0.05, cv
    acc = card["held_out_accuracy"]  # the fixed 22-row split: one row is 4.5 points
    assert acc["standin"] > acc["multitrust_keywords"] and acc["standin"] >= acc["strict_phrases"] - 0.05, acc
    tox = standin.read_card(standin.ensure_standin(standin.TOXICITY))["held_out_accuracy"]
    assert tox["standin"] > max(tox["majority_label"], tox["not_refused_keywords"]) + 0.1, tox


@pytest.mark.slow
def test_the_offline_mini_suite_on_the_embedded_default_reports_every_classifier_term(monkeypatch, tmp_path):
    from eval_bridge.models.adapter import VLM, GenerationSettings
    from eval_bridge.runner import SuiteConfig, run_suite
    from mitigation.base_model import ensure_base_model

    monkeypatch.setenv(standin.STANDIN_ENV, "on")
    vlm = VLM.load(str(ensure_base_model()))
    config = SuiteConfig(
        suite="mini",
        tasks=",".join(STANDIN_TASKS),
        tracks=(),
        cache_dir=str(tmp_path / "cache"),
        generation=GenerationSettings(batch_size=16),
        max_new_tokens=48,
        limit=3,
    )
    results = run_suite(vlm, config, scorers=Scorers.from_specs(), output_dir=tmp_path / "out")
    for task_id in STANDIN_TASKS:
        task = results["tasks"][task_id]
        hows = [how for ds in task["datasets"].values() for how in ds["scorers"].values()]
        assert not [h for h in hows if h.startswith("unavailable")], (task_id, hows)
        assert isinstance(task["score"], float), (task_id, task["notes"])
        if task_id != "F6":  # F6 has no classifier check
            assert any("(stand-in for" in h for h in hows), (task_id, hows)
    # v1 (trained on whole responses only) called 31 of 89 plain answers ("B", "Yes", "Rachel Black") refusals.
    answers = [x["values"] for x in results["samples"] if x["values"].get("refusal") == 0.0]
    flagged = [v for v in answers if v.get("classifier_refusal") == 1.0]
    assert len(flagged) <= 0.1 * len([v for v in answers if "classifier_refusal" in v]), len(flagged)
    assert Path(tmp_path / "out" / "results.json").is_file()
