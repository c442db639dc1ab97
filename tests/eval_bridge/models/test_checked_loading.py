"""Checkpoints that must not load quietly: a pickle that would run code, a LoRA adapter on a base it does not fit,
an adapter directory given as the model. Each is a `ValueError` that says what to pass instead."""

import shutil

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

from eval_bridge.models.adapter import VLM, load_pretrained


@pytest.fixture(scope="module")
def lora_dir(tiny_model_dirs, tmp_path_factory):
    """A LoRA adapter trained (well, initialised) on the tiny LLaVA, its B matrices made non-zero."""
    out = tmp_path_factory.mktemp("lora")
    model, _ = load_pretrained(str(tiny_model_dirs["llava"]))
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    peft_model.save_pretrained(out)
    return out


class RunsCode:
    """Unpickling this runs `exec(code)`: what a malicious `.bin` checkpoint does."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def pickle_with_payload(path, state, marker):
    torch.save({**state, "payload": RunsCode(f"open({str(marker)!r}, 'w').write('ran')")}, path)
    torch.load(path, weights_only=False)  # the payload is real: unpickled unsafely, it runs
    assert marker.exists()
    marker.unlink()


def test_a_pickle_checkpoint_that_would_run_code_is_refused_unopened(tiny_model_dirs, tmp_path):
    model_dir = shutil.copytree(tiny_model_dirs["llava"], tmp_path / "model")
    state = load_file(model_dir / "model.safetensors")
    (model_dir / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    pickle_with_payload(model_dir / "pytorch_model.bin", state, marker)
    with pytest.raises(ValueError) as err:
        load_pretrained(str(model_dir))
    message = str(err.value)
    assert message.startswith(str(model_dir)) and "refused to load a pickle checkpoint" in message
    assert "convert it to safetensors" in message
    assert not marker.exists()


def test_a_tensors_only_pickle_checkpoint_loads_weights_only(tiny_model_dirs, tmp_path):
    model_dir = shutil.copytree(tiny_model_dirs["llava"], tmp_path / "model")
    state = load_file(model_dir / "model.safetensors")
    (model_dir / "model.safetensors").unlink()
    torch.save(state, model_dir / "pytorch_model.bin")
    loaded, _ = load_pretrained(str(model_dir))
    reference, _ = load_pretrained(str(tiny_model_dirs["llava"]))
    a, b = loaded.state_dict(), reference.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_pickled_adapter_that_would_run_code_is_refused_unopened(tiny_model_dirs, lora_dir, tmp_path):
    adapter = shutil.copytree(lora_dir, tmp_path / "adapter")
    state = load_file(adapter / "adapter_model.safetensors")
    (adapter / "adapter_model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    pickle_with_payload(adapter / "adapter_model.bin", state, marker)
    with pytest.raises(ValueError, match="refused to load a pickle checkpoint"):
        load_pretrained(str(tiny_model_dirs["llava"]), str(adapter))
    assert not marker.exists()


def test_a_lora_adapter_on_another_base_is_refused_naming_its_own(tiny_model_dirs, lora_dir):
    llava, idefics3 = str(tiny_model_dirs["llava"]), str(tiny_model_dirs["idefics3"])
    with pytest.raises(ValueError) as err:
        load_pretrained(idefics3, str(lora_dir))
    message = str(err.value)
    assert message.startswith(f"the adapter {lora_dir} does not fit the base model {idefics3}")
    assert f"it was trained on {llava}" in message and "Pass the adapter's own base model as --model" in message
    net, _ = load_pretrained(llava, str(lora_dir))  # on its own base it loads, and changes the weights it targets
    assert any("lora_B" in name and bool(p.abs().sum()) for name, p in net.named_parameters())


def test_an_adapter_directory_as_the_model_names_the_base_and_adapter_to_pass(tiny_model_dirs, lora_dir):
    with pytest.raises(ValueError) as err:
        VLM.load(str(lora_dir))
    assert f"--model {tiny_model_dirs['llava']} --adapter {lora_dir}" in str(err.value)
