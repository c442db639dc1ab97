"""VCD (METHODS.md 3.7): the contrast and cutoff on hand-made logits, the noise schedule and its seeding, and on
tiny models: alpha 0 is plain decoding, the noised twin changes greedy answers, batching changes nothing, and the
stacked two-row decode equals a naive two-forward reference with the repetition penalty acting on s."""

import json
import math
import runpy
from pathlib import Path

import pytest
import torch
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.samples import Sample
from mitigation import registry
from mitigation.inference.vcd import (
    NoisedRow,
    Vcd,
    VcdConfig,
    add_diffusion_noise,
    contrast,
    image_generator,
    noise_coefficients,
)

SETTINGS = GenerationSettings(max_new_tokens=8, batch_size=4)


def tokens(generations):
    return [g.token_ids for g in generations]


@pytest.fixture(scope="module")
def llava(tiny_model_dirs):
    return VLM.load(str(tiny_model_dirs["llava"]))


@pytest.fixture(scope="module")
def qwen(tiny_model_dirs):
    return VLM.load(str(tiny_model_dirs["qwen2_vl"]))


# --- the decoding rule on hand-made logits -----------------------------------------------------------------------


def test_contrast_and_cutoff_on_the_methods_example():
    clean, noised = torch.tensor([3.0, 2, 0, -5]), torch.tensor([1.0, 2, 0, -20])
    assert torch.equal(contrast(clean, noised, alpha=1.0, beta=0.0), torch.tensor([5.0, 2, 0, 10]))
    assert math.log(0.1) + 3 == pytest.approx(0.697, abs=1e-3)  # the cutoff: clean logits 0 and -5 fall below it
    scores = contrast(clean, noised, alpha=1.0, beta=0.1)
    inf = float("-inf")
    assert torch.equal(scores, torch.tensor([5.0, 2, inf, inf]))
    assert scores.argmax().item() == 0  # token 3 wins the contrast alone, but the clean-logit mask removes it


def test_the_cutoff_reads_each_rows_own_clean_maximum():
    clean = torch.tensor([[3.0, 2, 0, -5], [0.0, 0, 0, 0]])
    noised = torch.zeros_like(clean)
    scores = contrast(clean, noised, alpha=0.5, beta=0.5)  # cutoff log(0.5) + max: about 2.31 and -0.69
    inf = float("-inf")
    assert torch.equal(scores, torch.tensor([[4.5, inf, inf, inf], [0.0, 0, 0, 0]]))


def test_noise_coefficients_at_step_500():
    keep, noise = noise_coefficients(500)
    assert keep == pytest.approx(0.8630, abs=1e-4) and noise == pytest.approx(0.5052, abs=1e-4)
    assert keep**2 + noise**2 == pytest.approx(1.0)
    assert noise_coefficients(0)[0] > 0.9999 and noise_coefficients(999)[0] < keep  # noise grows with the step


def test_noise_differs_between_images_and_is_fixed_by_the_seed(image_dir):
    a = Sample("a", "What is it?", (str(image_dir / "img0.png"), str(image_dir / "img1.png")))
    b = Sample("b", "What is it?", (str(image_dir / "img2.png"),))
    pixels = torch.zeros(3, 8, 8)

    def eps(seed, sample, image):
        return add_diffusion_noise(pixels, 500, image_generator(seed, sample, image)) / noise_coefficients(500)[1]

    assert torch.equal(eps(0, a, 0), eps(0, a, 0))
    assert not torch.equal(eps(0, a, 0), eps(0, a, 1)), "two images of one sample share their noise"
    assert not torch.equal(eps(0, a, 0), eps(0, b, 0)), "two samples share their noise"
    assert not torch.equal(eps(0, a, 0), eps(1, a, 0)), "the seed does not change the noise"
    assert abs(eps(0, a, 0).std().item() - 1) < 0.2  # standard normal


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "idefics3"])
def test_the_noised_twin_has_the_clean_rows_tokens_and_noised_pixels(tiny_model_dirs, mixed_samples, family):
    vlm = VLM.load(str(tiny_model_dirs[family]))
    sample = mixed_samples[2]  # one image, 64 x 48
    method = Vcd(VcdConfig(noise_step=500, noise_seed=3))
    twin = method.prepare(vlm)([sample, NoisedRow(sample)])
    clean = vlm.prepare([sample, sample])
    assert torch.equal(twin["input_ids"], clean["input_ids"]), "the rows' token counts (and M-RoPE grids) match"
    for key in clean:
        assert twin[key].shape == clean[key].shape, f"{key}: the resolution changed"
        if key != "pixel_values":
            assert torch.equal(twin[key], clean[key])
    [[clean_row], [clean_twin]] = vlm.pixel_views(clean, [1, 1])
    [[row], [noised]] = vlm.pixel_views(twin, [1, 1])
    assert torch.equal(row, clean_row), "the clean row is untouched"
    keep, noise = noise_coefficients(500)
    eps = torch.randn(noised.shape, generator=image_generator(3, sample, 0))
    assert torch.allclose(noised, keep * clean_twin + noise * eps, atol=1e-6)


# --- decoding on tiny models ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_alpha_zero_greedy_is_plain_greedy_token_for_token(tiny_model_dirs, mixed_samples, family):
    vlm = VLM.load(str(tiny_model_dirs[family]))
    plain = tokens(vlm.generate(mixed_samples, SETTINGS))
    assert tokens(Vcd(VcdConfig(alpha=0.0)).generate(vlm, mixed_samples, SETTINGS)) == plain


def test_alpha_zero_without_cutoff_samples_as_plain_sampling(llava, mixed_samples):
    settings = GenerationSettings(max_new_tokens=8, batch_size=4, do_sample=True, temperature=1.5, seed=7)
    plain = tokens(llava.generate(mixed_samples, settings))
    assert tokens(Vcd(VcdConfig(alpha=0.0, beta=0.0)).generate(llava, mixed_samples, settings)) == plain
    assert plain != tokens(llava.generate(mixed_samples, GenerationSettings(max_new_tokens=8))), "sampling is greedy"


def test_vcd_changes_greedy_answers_of_image_samples_only(llava, mixed_samples):
    plain = tokens(llava.generate(mixed_samples, SETTINGS))
    vcd = tokens(Vcd(VcdConfig(alpha=1.0, noise_step=999)).generate(llava, mixed_samples, SETTINGS))
    for sample, p, v in zip(mixed_samples, plain, vcd, strict=True):
        if not sample.images:
            assert v == p, f"{sample.id}: a text-only sample must decode plainly"
    changed = [s.id for s, p, v in zip(mixed_samples, plain, vcd, strict=True) if p != v]
    assert len(changed) >= 2, changed


def test_text_only_samples_are_one_row_requests(llava, mixed_samples):
    requests = Vcd().requests(llava, mixed_samples, SETTINGS)
    for sample, request in zip(mixed_samples, requests, strict=True):
        if sample.images:
            assert request.rows == (sample, NoisedRow(sample)) and request.combine is not None
        else:
            assert request.rows == (sample,) and request.combine is None


@pytest.mark.parametrize("do_sample", [False, True])
def test_batched_vcd_equals_one_sample_at_a_time(qwen, mixed_samples, do_sample):
    method = Vcd(VcdConfig(alpha=1.0, noise_step=700))
    settings = GenerationSettings(max_new_tokens=8, batch_size=3, do_sample=do_sample, seed=5)
    together = tokens(method.generate(qwen, mixed_samples, settings))
    single = GenerationSettings(max_new_tokens=8, batch_size=1, do_sample=do_sample)
    # Sample i of the batch samples with seed 5 + i; alone, with seed 5 + i as its own settings' seed.
    alone = [
        method.generate(qwen, [s], GenerationSettings(**{**single.__dict__, "seed": 5 + i}))[0].token_ids
        for i, s in enumerate(mixed_samples)
    ]
    assert together == alone


def _reference_vcd(vlm, method, sample, max_new, penalty):
    """VCD the slow, obvious way: two separate full forwards per step (no cache), the processors on s, argmax."""
    prepare = method.prepare(vlm)
    clean, noised = prepare([sample]), prepare([NoisedRow(sample)])
    prompt = clean["input_ids"]
    ids = prompt
    eos = vlm.model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    suppressed = list(vlm.model.generation_config.suppress_tokens or [])
    out = []
    with torch.inference_mode():
        for _ in range(max_new):
            mask = torch.ones_like(ids)
            l_clean = vlm.model(**{**clean, "input_ids": ids, "attention_mask": mask}).logits[:, -1].float()
            l_noised = vlm.model(**{**noised, "input_ids": ids, "attention_mask": mask}).logits[:, -1].float()
            scores = contrast(l_clean, l_noised, method.config.alpha, method.config.beta)
            scores = RepetitionPenaltyLogitsProcessor(penalty)(ids, scores)
            scores[:, suppressed] = float("-inf")  # the tiny models' generation config bans their special tokens
            token = int(scores.argmax(-1))
            out.append(token)
            if token in eos:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return out


def test_stacked_decode_equals_two_forwards_with_the_repetition_penalty_on_s(tiny_model_dirs, mixed_samples):
    vlm = VLM.load(str(tiny_model_dirs["llava"]))
    method = Vcd(VcdConfig(alpha=1.0, beta=0.1, noise_step=999))
    images = [s for s in mixed_samples if s.images]
    without = tokens(method.generate(vlm, images, SETTINGS))
    vlm.model.generation_config.repetition_penalty = 5.0
    got = tokens(method.generate(vlm, images, SETTINGS))
    assert got != without, "the penalty changed nothing: the test cannot tell where it acts"
    assert got == [_reference_vcd(vlm, method, s, SETTINGS.max_new_tokens, 5.0) for s in images]


# --- the method's identity and registry entry ----------------------------------------------------------------------


def test_registry_builds_vcd_from_strings():
    entry = registry.get_method("vcd")
    assert (entry.axis, entry.kind, entry.targets) == ("inference", "inference", ("truthfulness",))
    method = registry.build_inference_method("vcd", alpha="0.5", noise_step="250")
    assert isinstance(method, Vcd) and (method.config.alpha, method.config.noise_step) == (0.5, 250)
    assert method.cache_key() == {"alpha": 0.5, "beta": 0.1, "noise_step": 250, "noise_seed": 0}
    with pytest.raises(ValueError, match=r"noise_step must be in 0\.\.999"):
        registry.build_inference_method("vcd", noise_step="1000")
    with pytest.raises(ValueError, match="beta must be in"):
        VcdConfig(beta=2)


def test_evaluate_runs_vcd_on_the_mini_suite(tiny_model_dirs, tmp_path, capsys):
    script = Path(__file__).resolve().parents[3] / "scripts" / "evaluate.py"
    main = runpy.run_path(str(script))["main"]
    out = tmp_path / "out"
    args = ["--model", str(tiny_model_dirs["llava"]), "--method", "vcd", "--method-arg", "alpha=0.5"]
    args += ["--suite", "mini", "--tasks", "T1", "--limit", "2", "--no-tracks", "--max-new-tokens", "4"]
    main([*args, "--output", str(out), "--cache-dir", str(tmp_path / "cache")])
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["method"] == {"id": "vcd", "version": "1", "config": {**VcdConfig(alpha=0.5).__dict__}}
    assert results["tasks"]["T1"]["score"] is not None and results["provenance"]["responses"]["generated_here"] > 0


# --- the embedded default model (slow tier) ------------------------------------------------------------------------


@pytest.mark.slow
def test_vcd_on_the_mini_suite_truthfulness_tasks_with_the_embedded_default(tmp_path):
    from eval_bridge.runner import SuiteConfig, run_suite
    from mitigation.base_model import ensure_base_model

    vlm = VLM.load(str(ensure_base_model()))
    config = SuiteConfig(suite="mini", tasks="T1,T2,T3", tracks=(), cache_dir=str(tmp_path / "suite"), limit=3)
    plain = run_suite(vlm, config)
    vcd = run_suite(vlm, config, method=Vcd(VcdConfig()))
    print({t: (plain["tasks"][t]["score"], vcd["tasks"][t]["score"]) for t in ("T1", "T2", "T3")})  # for the README
    assert all(vcd["tasks"][t]["score"] is not None for t in ("T1", "T2", "T3"))
    assert vcd["provenance"]["method"]["id"] == "vcd" and vcd["provenance"]["responses"]["failed"] == 0
    responses = {(s["dataset"], s["id"]): s["response"] for s in plain["samples"]}
    changed = [s for s in vcd["samples"] if s["response"] != responses[(s["dataset"], s["id"])]]
    assert 0 < len(changed) < len(vcd["samples"]), "VCD changed no answer (or every answer) of a real model"
