"""A response cache that can never be stale: any change to what produces a response changes its key.

The model's fingerprint covers every tensor of its safetensors files (the header and a strided sample of each
tensor's bytes), follows in-place weight changes, and includes the hub revision; the cache key adds the dtype,
the prompt mode and the inference method's settings and version; judge caches key by the judge's full identity.
"""

import shutil
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file
from test_runner import FakeSource

from eval_bridge.models.adapter import VLM
from eval_bridge.models.fingerprint import _tensor_offsets, directory_digest, fingerprint
from eval_bridge.runner import SuiteConfig, run_suite
from eval_bridge.scorers.judges import OpenAIChatJudge


def edited_copy(src, dst, edit):
    """A copy of a saved model whose weights `edit(state_dict)` changed (in the safetensors file itself)."""
    shutil.copytree(src, dst)
    weights = load_file(str(dst / "model.safetensors"))
    edit(weights)
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_a_change_to_the_projector_alone_is_a_new_model(tiny_model_dirs, tmp_path):
    src = tiny_model_dirs["llava"]
    same = edited_copy(src, tmp_path / "same", lambda w: None)
    names = [k for k in load_file(str(src / "model.safetensors")) if "multi_modal_projector" in k]
    assert names

    def nudge_projector(w):
        for k in names:
            w[k] = w[k] + 1e-3

    projector = edited_copy(src, tmp_path / "projector", nudge_projector)
    assert directory_digest(same) == directory_digest(src)
    assert directory_digest(projector) != directory_digest(src)


def test_a_swapped_vision_tower_is_a_new_model(tiny_model_dirs, tmp_path):
    from eval_bridge.models.tiny import save_tiny_vlm

    src = tiny_model_dirs["llava"]
    other = load_file(str(save_tiny_vlm("llava", tmp_path / "seed1", seed=1) / "model.safetensors"))

    def swap_tower(w):
        for k in w:
            if "vision_tower" in k:
                w[k] = other[k].clone()

    swapped = edited_copy(src, tmp_path / "swapped", swap_tower)
    assert directory_digest(swapped) != directory_digest(src)


def test_every_tensor_is_sampled_along_its_whole_length():
    # A large tensor: 16 chunks from its first to its last byte; a small one: read whole.
    offsets = _tensor_offsets(10_000_000)
    assert len(offsets) == 16 and offsets[0] == 0 and offsets[-1] == 10_000_000 - 4096
    assert _tensor_offsets(1000) == [0]


def test_a_large_tensor_changed_far_from_the_file_windows_is_seen(tmp_path):
    # Three 1 MiB windows of the file (start, middle, end) would miss a change at 1/4 of a 12 MiB tensor.
    weights = {"a": torch.zeros(3 * 2**20), "b": torch.ones(10)}
    (tmp_path / "m1").mkdir()
    (tmp_path / "m2").mkdir()
    save_file(weights, str(tmp_path / "m1" / "model.safetensors"))
    changed = {"a": weights["a"].clone(), "b": weights["b"]}
    offset = _tensor_offsets(weights["a"].numel() * 4)[4] // 4  # inside the 5th sampled chunk (~1/4 in)
    changed["a"][offset : offset + 8] = 1.0
    save_file(changed, str(tmp_path / "m2" / "model.safetensors"))
    assert directory_digest(tmp_path / "m1") != directory_digest(tmp_path / "m2")


def test_in_place_weight_changes_change_the_fingerprint(tiny_model_dirs):
    vlm = VLM.load(str(tiny_model_dirs["llava"]), device="cpu")
    loaded = vlm.fingerprint
    assert vlm.fingerprint == loaded  # stable while nothing changes
    with torch.no_grad():
        vlm.model.model.multi_modal_projector.linear_1.weight.add_(1e-3)
    edited = vlm.fingerprint
    assert edited != loaded
    with torch.no_grad():
        vlm.model.model.multi_modal_projector.linear_1.weight.add_(1e-3)
    assert vlm.fingerprint not in (loaded, edited)


def test_dtype_and_prompt_mode_are_part_of_the_cache_identity(tiny_model_dirs):
    f32 = VLM.load(str(tiny_model_dirs["llava"]), device="cpu", dtype=torch.float32)
    bf16 = VLM.load(str(tiny_model_dirs["llava"]), device="cpu", dtype=torch.bfloat16)
    raw = VLM.load(str(tiny_model_dirs["llava"]), device="cpu", raw_prompts=True)
    assert f32.fingerprint == bf16.fingerprint  # the same files...
    assert len({f32.cache_identity(), bf16.cache_identity(), raw.cache_identity()}) == 3  # ...cached apart


def test_the_hub_revision_is_part_of_the_fingerprint():
    assert fingerprint("org/not-cached", revision="v1") != fingerprint("org/not-cached", revision="v2")


@dataclass
class Echo:
    """A toy inference method: plain generation, with a setting and a version that key the cache."""

    strength: float = 1.0
    version: str = "1"
    id: str = "echo"

    def cache_key(self) -> dict:
        return {"strength": self.strength}

    def generate(self, vlm, samples, settings):
        return vlm.generate(samples, settings)


def generated(vlm, tmp_path, method):
    config = SuiteConfig(tasks="T6", cache_dir=str(tmp_path / "cache"), max_new_tokens=2, tracks=())
    results = run_suite(vlm, config, source=FakeSource(tmp_path), method=method)
    return results["provenance"]["responses"]["generated_here"]


def test_a_method_setting_or_version_never_reuses_cached_responses(tiny_model_dirs, tmp_path):
    vlm = VLM.load(str(tiny_model_dirs["llava"]), device="cpu")
    first = generated(vlm, tmp_path, Echo())
    assert first > 0
    assert generated(vlm, tmp_path, Echo()) == 0  # same method, same settings: all cached
    assert generated(vlm, tmp_path, Echo(strength=2.0)) == first  # another setting
    assert generated(vlm, tmp_path, Echo(version="2")) == first  # another version of the method
    with torch.no_grad():
        vlm.model.model.multi_modal_projector.linear_2.bias.add_(1e-3)
    assert generated(vlm, tmp_path, Echo()) == first  # the model changed in place


def test_judge_caches_key_by_the_judges_full_identity(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    a = OpenAIChatJudge("http://127.0.0.1:9/v1", "gpt-x", max_tokens=64)
    b = OpenAIChatJudge("http://127.0.0.1:9/v1", "gpt-x", max_tokens=128)
    c = OpenAIChatJudge("http://127.0.0.1:9/v1", "gpt-x", max_tokens=64, system_prompt="Be strict.")
    assert a.id == b.id == c.id  # what results report
    assert len({a.cache_id, b.cache_id, c.cache_id}) == 3  # what the reply cache is keyed by
    assert "sk-test" not in a.cache_id
