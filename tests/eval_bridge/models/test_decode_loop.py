"""The continuous-batching decode loop: token for token what one-at-a-time `generate` gives, rows joining and
leaving mid-run, EOS and max_new_tokens, log-probs, seeded sampling, the logits hook and multi-row requests."""

import logging

import pytest
import torch

from eval_bridge.models import decode
from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.models.decode import DecodeRequest, combine_rows, unsupported_reason
from eval_bridge.models.tiny import FAMILIES
from eval_bridge.samples import Sample

MAX_NEW = 12


@pytest.fixture(scope="module")
def samples(mixed_samples, image_dir):
    """The shared mixed samples plus two-image and more text-only ones: prompt lengths and image counts vary."""
    return [
        *mixed_samples,
        Sample("two-images", "Compare them.", (str(image_dir / "img0.png"), str(image_dir / "img1.png"))),
        Sample("text-long", "Tell me everything about squares, circles and the colours of triangles. " * 3),
        Sample("img-again", "Which shape is on the left?", (str(image_dir / "img1.png"),)),
    ]


def _one_at_a_time(vlm, samples, settings=GenerationSettings(max_new_tokens=MAX_NEW), **kwargs):
    single = GenerationSettings(**{**settings.__dict__, "batch_size": 1})
    return [vlm.generate([s], single, continuous=False, **kwargs)[0] for s in samples]


@pytest.fixture(scope="module")
def one_at_a_time(tiny_model_dirs, samples):
    """family -> greedy token ids of `generate` run on each sample alone (computed once per family)."""
    runs = {}

    def get(family):
        if family not in runs:
            vlm = VLM.load(str(tiny_model_dirs[family]))
            runs[family] = [g.token_ids for g in _one_at_a_time(vlm, samples)]
        return runs[family]

    return get


def _with_early_stops(vlm, plain):
    """Add a second EOS id to `vlm` chosen so that greedy answers end at widely different steps (random tiny
    models rarely emit their real EOS); returns what one-at-a-time greedy `generate` then gives: each answer
    cut after the first of those tokens."""

    def cut(token):
        return [seq[: seq.index(token) + 1] if token in seq else seq for seq in plain]

    def spread(token):  # many different lengths, the shortest as short as possible
        lengths = [len(c) for c in cut(token)]
        return len(set(lengths)), -min(lengths)

    token = max({t for seq in plain for t in seq}, key=spread)
    config = vlm.model.generation_config
    config.eos_token_id = [config.eos_token_id, token]
    return cut(token)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_equals_one_at_a_time_with_rows_leaving_and_joining(family, tiny_model_dirs, samples, one_at_a_time):
    vlm = VLM.load(str(tiny_model_dirs[family]))
    expected = _with_early_stops(vlm, one_at_a_time(family))
    lengths = [len(e) for e in expected]
    assert len(set(lengths)) >= 3 and min(lengths) <= MAX_NEW // 2 and max(lengths) == MAX_NEW, "rows must end apart"
    # Two rows at once: every sample after the first two joins a batch that is mid-decode.
    narrow = vlm.generate(samples, GenerationSettings(max_new_tokens=MAX_NEW, batch_size=2))
    assert [g.token_ids for g in narrow] == expected
    stats = vlm.decode_stats
    assert stats.joined_running >= 3 and stats.peak_rows == 2
    wide = vlm.generate(samples, GenerationSettings(max_new_tokens=MAX_NEW, batch_size=16))
    assert [g.token_ids for g in wide] == expected
    assert [g.text for g in wide] == [vlm.tokenizer.decode(e, skip_special_tokens=True) for e in expected]


def test_token_budget_sizes_the_batch(tiny_model_dirs, samples, one_at_a_time):
    vlm = VLM.load(str(tiny_model_dirs["llava"]))
    lengths = vlm.prompt_lengths(samples)
    budget = 2 * (max(lengths) + 1)  # room for about two rows
    settings = GenerationSettings(max_new_tokens=6, batch_size=64, token_budget=budget)
    got = vlm.generate(samples, settings)
    stats = vlm.decode_stats
    assert stats.peak_tokens <= budget and stats.peak_rows < len(samples)
    assert stats.joined_running > 0
    assert [g.token_ids for g in got] == [ids[:6] for ids in one_at_a_time("llava")]  # greedy: a prefix


def test_eos_ends_a_row_and_max_new_tokens_caps_it(tiny_model_dirs, samples, one_at_a_time):
    vlm = VLM.load(str(tiny_model_dirs["qwen2_vl"]))
    expected = _with_early_stops(vlm, one_at_a_time("qwen2_vl"))
    eos = set(vlm.model.generation_config.eos_token_id)
    got = vlm.generate(samples, GenerationSettings(max_new_tokens=MAX_NEW, batch_size=3))
    # The real generate, with the same two EOS ids, agrees with the cut answers.
    assert [g.token_ids for g in _one_at_a_time(vlm, samples[:3])] == expected[:3]
    assert [g.token_ids for g in got] == expected
    for g in got:
        assert all(t not in eos for t in g.token_ids[:-1]), "nothing is generated after an EOS"
        assert g.token_ids[-1] in eos or len(g.token_ids) == MAX_NEW


def test_one_new_token_needs_no_decode_step(tiny_model_dirs, samples, one_at_a_time):
    vlm = VLM.load(str(tiny_model_dirs["llava"]))
    got = vlm.generate(samples, GenerationSettings(max_new_tokens=1, batch_size=4))
    assert vlm.decode_stats.steps == 0
    assert [g.token_ids for g in got] == [ids[:1] for ids in one_at_a_time("llava")]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_logprobs_equal_generates(tiny_model_dirs, samples, family):
    vlm = VLM.load(str(tiny_model_dirs[family]))
    settings = GenerationSettings(max_new_tokens=6, batch_size=3)
    got = vlm.generate(samples[:5], settings, return_logprobs=True)
    expected = _one_at_a_time(vlm, samples[:5], settings, return_logprobs=True)
    for g, e in zip(got, expected, strict=True):
        assert g.token_ids == e.token_ids
        assert torch.allclose(torch.tensor(g.logprobs), torch.tensor(e.logprobs), atol=1e-5)


def test_sampling_is_seeded_per_request_whatever_shares_the_batch(tiny_model_dirs, samples):
    vlm = VLM.load(str(tiny_model_dirs["llava"]))
    settings = GenerationSettings(max_new_tokens=6, do_sample=True, temperature=1.5, top_k=50, seed=3)
    requests = vlm.decode_requests(samples, settings)

    def tokens(reqs, batch_size):
        outs = vlm.decode(reqs, GenerationSettings(**{**settings.__dict__, "batch_size": batch_size}))
        return [o.token_ids for o in outs]

    together = tokens(requests, 8)
    assert tokens(requests, 2) == together
    assert tokens(requests[2:4], 8) == together[2:4], "a request samples the same alone or in company"
    reseeded = [DecodeRequest(r.rows, r.length, r.n_images, seed=r.seed + 100) for r in requests]
    assert tokens(reseeded, 8) != together


def test_a_logits_hook_that_bans_a_token_equals_suppressing_it(tiny_model_dirs, samples):
    vlm = VLM.load(str(tiny_model_dirs["llava"]))
    settings = GenerationSettings(max_new_tokens=6, batch_size=3)
    banned = vlm.generate(samples[:1], settings)[0].token_ids[0]
    seen = []

    def ban(logits, requests):
        seen.append(len(requests))
        logits = logits.clone()
        logits[:, banned] = float("-inf")
        return logits

    outs = vlm.decode(vlm.decode_requests(samples, settings), settings, logits_hook=ban)
    assert all(banned not in o.token_ids for o in outs)
    assert max(seen) == 3 and sum(seen) == sum(len(o.token_ids) for o in outs)  # once per request per token
    vlm.model.generation_config.suppress_tokens = [*vlm.model.generation_config.suppress_tokens, banned]
    assert [o.token_ids for o in outs] == [g.token_ids for g in _one_at_a_time(vlm, samples, settings)]


def test_processors_that_read_the_history_see_each_rows_own(tiny_model_dirs, samples):
    vlm = VLM.load(str(tiny_model_dirs["llava"]))
    config = vlm.model.generation_config
    config.repetition_penalty, config.no_repeat_ngram_size, config.min_new_tokens = 3.0, 2, 4
    settings = GenerationSettings(max_new_tokens=MAX_NEW, batch_size=3)
    got = vlm.generate(samples, settings)
    expected = _one_at_a_time(vlm, samples, settings)
    assert [g.token_ids for g in got] == [g.token_ids for g in expected]
    for g in got:  # the penalties did act: no bigram repeats
        bigrams = list(zip(g.token_ids, g.token_ids[1:], strict=False))
        assert len(bigrams) == len(set(bigrams))


def test_a_scripted_hook_drives_tokens_and_eos_by_hand(tiny_model_dirs, samples):
    vlm = VLM.load(str(tiny_model_dirs["idefics3"]))
    eos = vlm.model.generation_config.eos_token_id
    scripts = {0: [140, 141, eos], 1: [150, 151, 152, 153, 154], 2: [160, eos]}  # none is a suppressed token
    requests = vlm.decode_requests(samples[:3], GenerationSettings())

    def script(logits, reqs):
        out = torch.zeros_like(logits)
        for r, req in enumerate(reqs):
            done = len(progress[req.rows[0].id])
            out[r, scripts[requests.index(req)][done]] = 1.0
            progress[req.rows[0].id].append(done)
        return out

    progress = {s.id: [] for s in samples[:3]}
    outs = vlm.decode(requests, GenerationSettings(max_new_tokens=5, batch_size=2), logits_hook=script)
    assert [o.token_ids for o in outs] == [scripts[0], scripts[1], scripts[2]]


def test_combine_rows_on_hand_made_logits():
    """A VCD-style contrast, (1 + a) * clean - a * noised with the cutoff log(b) + max(clean) on the clean row."""

    def contrast(rows, alpha=1.0, beta=0.1):
        clean, noised = rows
        scores = (1 + alpha) * clean - alpha * noised
        return scores.masked_fill(clean < torch.log(torch.tensor(beta)) + clean.max(), float("-inf"))

    twin = DecodeRequest(rows=("clean", "noised"), length=1, combine=contrast)
    plain = DecodeRequest(rows=("one",), length=1)
    rows = torch.tensor([[3.0, 2, 0, -5], [1, 2, 0, -20], [0.5, 0, 4, 1]])
    out = combine_rows([twin, plain], rows)
    inf = float("-inf")
    assert torch.equal(out, torch.tensor([[5.0, 2, inf, inf], [0.5, 0, 4, 1]]))
    assert out.argmax(-1).tolist() == [0, 2]  # token 3 (favoured by the contrast alone) is cut by the clean mask
    with pytest.raises(ValueError, match="own 3 rows but the logits have 2"):
        combine_rows([twin, plain], rows[:2])


def test_a_request_with_two_rows_feeds_its_token_to_both(tiny_model_dirs, samples):
    vlm = VLM.load(str(tiny_model_dirs["qwen2_vl"]))
    settings = GenerationSettings(max_new_tokens=6, batch_size=4)
    a, b = samples[0], samples[2]  # different images, different prompt lengths
    length = max(vlm.prompt_lengths([a, b]))
    follow_b = DecodeRequest(rows=(a, b), length=length, n_images=1, combine=lambda rows: rows[1])
    same_twice = DecodeRequest(rows=(a, a), length=length, n_images=1, combine=lambda rows: 2 * rows[0] - rows[1])
    others = vlm.decode_requests([samples[3], samples[7]], settings)
    outs = vlm.decode([follow_b, same_twice, *others], settings)
    expected = _one_at_a_time(vlm, [b, a, samples[3], samples[7]], settings)
    # Row b always sees its own greedy continuation; twice the same row minus itself is that row.
    assert [o.token_ids for o in outs] == [g.token_ids for g in expected]


def test_unsupported_model_falls_back_to_generate_and_says_so_once(tiny_model_dirs, samples, caplog):
    vlm = VLM.load(str(tiny_model_dirs["llava"]))
    vlm.model.generation_config.num_beams = 2
    settings = GenerationSettings(max_new_tokens=4, batch_size=4)
    assert "beam_search" in unsupported_reason(vlm.model, vlm._generation_config(settings, False))
    decode_logged = vlm.decode_stats
    with caplog.at_level(logging.WARNING, logger="eval_bridge.models.adapter"):
        got = vlm.generate(samples, settings)
        vlm.generate(samples[:2], settings)
    fallbacks = [r for r in caplog.records if "not the decode loop" in r.getMessage()]
    assert len(fallbacks) == 1 and "beam_search" in fallbacks[0].getMessage()
    assert vlm.decode_stats is decode_logged  # the loop never ran
    assert [g.token_ids for g in got] == [g.token_ids for g in vlm.generate(samples, settings, continuous=False)]
    with pytest.raises(NotImplementedError, match="beam_search"):
        vlm.decode(vlm.decode_requests(samples, settings), settings)


def test_sliding_window_caches_are_not_supported():
    from transformers import GenerationConfig, MistralConfig, MistralForCausalLM

    shape = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    sliding = MistralForCausalLM(MistralConfig(**shape, num_key_value_heads=1, sliding_window=8))
    full = MistralForCausalLM(MistralConfig(**shape, num_key_value_heads=1, sliding_window=None))
    assert "sliding-window" in unsupported_reason(sliding, GenerationConfig())
    assert unsupported_reason(full, GenerationConfig()) is None


def test_text_only_lm_decodes_through_the_loop(tiny_lm_dir, samples):  # tiny_lm_dir: conftest
    lm = VLM.load(str(tiny_lm_dir))
    text = [s for s in samples if not s.images]
    got = lm.generate(text, GenerationSettings(max_new_tokens=MAX_NEW, batch_size=2))
    assert lm.decode_stats is not None and lm.decode_stats.prefills >= 2
    assert [g.token_ids for g in got] == [g.token_ids for g in _one_at_a_time(lm, text)]


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_lengths_are_what_prepare_makes(tiny_model_dirs, samples, family):
    vlm = VLM.load(str(tiny_model_dirs[family]))
    assert vlm.prompt_lengths(samples) == [vlm.prepare([s])["input_ids"].shape[1] for s in samples]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "idefics3"])
def test_next_token_logprobs_match_a_single_forward(tiny_model_dirs, samples, family):
    vlm = VLM.load(str(tiny_model_dirs[family]))
    full = vlm.next_token_logprobs(samples, batch_size=3)
    assert full.shape == (len(samples), vlm.model.config.get_text_config().vocab_size)
    for i, sample in enumerate(samples):
        with torch.no_grad():
            logits = vlm.model(**vlm.prepare([sample])).logits[0, -1].float()
        assert torch.allclose(full[i], torch.log_softmax(logits, -1), atol=1e-4), sample.id
    one_token = [w for w in ("yes", "no", "the", "is", "a", "it") if len(vlm.tokenizer(w)["input_ids"]) == 1]
    words = one_token[:2]
    ids = [vlm.tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    picked = vlm.next_token_logprobs(samples, [*words, ids[0][0]], batch_size=3)
    assert torch.allclose(picked, full[:, [ids[0][0], ids[1][0], ids[0][0]]])
    with pytest.raises(ValueError, match=r"encodes to \d+ tokens"):
        vlm.next_token_logprobs(samples, ["not one token at all"])


def test_token_budget_does_not_enter_the_cache_key():
    assert GenerationSettings(token_budget=100).cache_key() == GenerationSettings(token_budget=9000).cache_key()


def test_the_loop_is_the_default_generation_path(tiny_model_dirs, samples, monkeypatch):
    vlm = VLM.load(str(tiny_model_dirs["llava"]))
    monkeypatch.setattr(type(vlm.model), "generate", lambda *a, **k: pytest.fail("generate called"))
    vlm.generate(samples, GenerationSettings(max_new_tokens=4))
    assert isinstance(vlm.decode_stats, decode.DecodeStats) and vlm.decode_stats.prefills > 0


@pytest.mark.slow
def test_the_embedded_default_decodes_like_one_at_a_time(tmp_path):
    from eval_bridge.data.sources import MiniSuite
    from eval_bridge.tasks import select_tasks
    from mitigation.base_model import ensure_base_model

    vlm = VLM.load(str(ensure_base_model()))
    source = MiniSuite(tmp_path / "suite")
    samples = [s for t in select_tasks("T1,S4,P1,F2") for d in t.datasets for s in source.load(d)[:6]]
    assert vlm.prompt_lengths(samples) == [vlm.prepare([s])["input_ids"].shape[1] for s in samples]
    settings = GenerationSettings(max_new_tokens=32, batch_size=16)
    got = vlm.generate(samples, settings)
    assert vlm.decode_stats.joined_running > 0
    assert [g.token_ids for g in got] == [g.token_ids for g in _one_at_a_time(vlm, samples, settings)]
