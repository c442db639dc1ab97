"""The inference-method interface (`eval_bridge.inference`) and what the adapter gives methods: the runner calls a
method through it, a method's settings and version key its cached responses, each row's pixels are reachable
inside prepared inputs, and first-token log-probs agree with generation (what ECSO's judge reads)."""

import pytest
import torch
from test_runner import FakeSource

from eval_bridge import runner
from eval_bridge.inference import InferenceMethod
from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.models.tiny import FAMILIES
from eval_bridge.provenance import method_identity
from eval_bridge.runner import SuiteConfig, run_suite
from eval_bridge.samples import Sample
from mitigation.inference.adashield import AdaShield, AdaShieldConfig
from mitigation.inference.vcd import Vcd, VcdConfig


def test_the_runner_takes_methods_through_the_interface_module():
    assert runner.InferenceMethod is InferenceMethod
    assert method_identity(Vcd(VcdConfig(alpha=0.5))) == {
        "version": Vcd.version,
        "config": {"alpha": 0.5, "beta": 0.1, "noise_step": 500, "noise_seed": 0},
    }


class Counting:
    """Wraps a method: counts the samples it is asked to generate; `version` can be overridden."""

    def __init__(self, method, version=None):
        self.method, self.id = method, method.id
        self.version = version or method.version
        self.samples = 0

    def cache_key(self):
        return self.method.cache_key()

    def generate(self, vlm, samples, settings):
        self.samples += len(samples)
        return self.method.generate(vlm, samples, settings)


@pytest.fixture(scope="module")
def vlm(tiny_model_dirs):
    return VLM.load(str(tiny_model_dirs["llava"]))


def run(vlm, tmp_path, method):
    config = SuiteConfig(tasks="T6", cache_dir=str(tmp_path / "cache"), max_new_tokens=3, tracks=())
    results = run_suite(vlm, config, source=FakeSource(tmp_path), method=method)
    assert results["provenance"]["method"] == {"id": method.id, **method_identity(method)}
    return method.samples, results


def test_vcd_settings_and_version_key_the_cached_responses(vlm, tmp_path):
    first, results = run(vlm, tmp_path, Counting(Vcd(VcdConfig(alpha=1.0))))
    assert first == 10 == results["provenance"]["responses"]["generated_here"]
    assert run(vlm, tmp_path, Counting(Vcd(VcdConfig(alpha=1.0))))[0] == 0  # same settings: all cached
    assert run(vlm, tmp_path, Counting(Vcd(VcdConfig(alpha=0.5))))[0] == first  # another alpha
    assert run(vlm, tmp_path, Counting(Vcd(VcdConfig(noise_seed=1))))[0] == first  # other noise
    assert run(vlm, tmp_path, Counting(Vcd(VcdConfig(alpha=1.0)), version="2"))[0] == first  # a bumped version
    assert run(vlm, tmp_path, Counting(Vcd(VcdConfig(alpha=0.5))))[0] == 0  # and each stays cached


def test_no_method_and_another_method_do_not_share_responses(vlm, tmp_path):
    config = SuiteConfig(tasks="T6", cache_dir=str(tmp_path / "cache"), max_new_tokens=3, tracks=())
    plain = run_suite(vlm, config, source=FakeSource(tmp_path))
    assert plain["provenance"]["responses"]["generated_here"] == 10
    assert run(vlm, tmp_path, Counting(AdaShield()))[0] == 10
    assert run(vlm, tmp_path, Counting(AdaShield(AdaShieldConfig(position="around"))))[0] == 10
    assert run_suite(vlm, config, source=FakeSource(tmp_path))["provenance"]["responses"]["generated_here"] == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_pixel_views_are_each_rows_images_inside_the_inputs(tiny_model_dirs, mixed_samples, image_dir, family):
    vlm = VLM.load(str(tiny_model_dirs[family]))
    two = Sample("two", "Compare them.", (str(image_dir / "img0.png"), str(image_dir / "img1.png")))
    for rows in ([mixed_samples[0], mixed_samples[2]], [two, two]):
        inputs = vlm.prepare(rows)
        views = vlm.pixel_views(inputs, [len(s.images) for s in rows])
        assert [len(v) >= len(s.images) for v, s in zip(views, rows, strict=True)] == [True, True]
        for row, sample in zip(views, rows, strict=True):
            alone = vlm.pixel_views(vlm.prepare([sample]), [len(sample.images)])[0]
            assert [v.shape for v in row] == [v.shape for v in alone]
            assert all(torch.equal(a, b) for a, b in zip(row, alone, strict=True)), "a row reads another's pixels"
        before = inputs["pixel_values"].clone()
        views[1][0].fill_(7.0)  # a view: writing into it edits the inputs, and only row 1's first image there
        changed = inputs["pixel_values"] != before
        assert changed.any() and int(changed.sum()) == views[1][0].numel()
    text = vlm.prepare([mixed_samples[1]])
    assert vlm.pixel_views(text, [0]) == [[]]


def test_pixel_views_refuse_a_layout_they_do_not_know(tiny_model_dirs, mixed_samples):
    vlm = VLM.load(str(tiny_model_dirs["llava"]))
    inputs = vlm.prepare([mixed_samples[0]])
    with pytest.raises(ValueError, match="hold 1 images but the rows have 2"):
        vlm.pixel_views(inputs, [2])


def test_first_token_logprobs_agree_with_generation(vlm, mixed_samples):
    """ECSO's judge reads P(first token) with `next_token_logprobs`: the raw distribution generation starts from."""
    gens = vlm.generate(mixed_samples, GenerationSettings(max_new_tokens=1, batch_size=3), return_logprobs=True)
    first = [g.token_ids[0] for g in gens]
    picked = vlm.next_token_logprobs(mixed_samples, first, batch_size=2)
    assert picked.shape == (len(mixed_samples), len(first))
    for i, g in enumerate(gens):
        assert picked[i, i].item() == pytest.approx(g.logprobs[0], abs=1e-4), mixed_samples[i].id
