"""scripts/evaluate.py --method ID --method-arg KEY=VALUE: the registry builds the method from its config."""

import importlib.util
import sys
from pathlib import Path

import pytest

from mitigation import registry

REPO = Path(__file__).resolve().parents[2]

TOY = """
from dataclasses import dataclass

from mitigation.registry import MethodEntry


@dataclass
class ToyConfig:
    alpha: float = 1.0
    greedy: bool = True


class Toy:
    id = "toy"

    def __init__(self, config):
        self.config = config


ENTRY = MethodEntry("toy", "inference", ("truthfulness",), "toy_inference:ToyConfig", "inference",
                    "toy_inference:Toy", "Toy (arXiv 0000.00000)")
"""


@pytest.fixture
def evaluate(tmp_path, monkeypatch):
    """scripts/evaluate.py as a module, with a toy inference method registered and model loading/suite stubbed."""
    (tmp_path / "toy_inference.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("toy_inference", None)
    from toy_inference import ENTRY

    reg = registry.Registry(source_setup_cfg=None)
    reg.register(ENTRY)
    reg._plugins_loaded = True  # the toy only
    monkeypatch.setattr(registry, "REGISTRY", reg)
    spec = importlib.util.spec_from_file_location("evaluate_script", REPO / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runs = []
    monkeypatch.setattr(module.VLM, "load", staticmethod(lambda *a, **k: "vlm"))
    monkeypatch.setattr(module, "init_distributed", lambda: (0, 1))
    monkeypatch.setattr(module, "run_suite", lambda vlm, config, method, scorers, output_dir: runs.append(method))
    module.runs = runs
    yield module
    sys.modules.pop("toy_inference", None)


def run(module, tmp_path, *args):
    module.main(["--model", "unused", "--output", str(tmp_path / "out"), *args])


def test_method_args_reach_the_method_config_converted(evaluate, tmp_path):
    run(evaluate, tmp_path, "--method", "toy", "--method-arg", "alpha=0.5", "--method-arg", "greedy=false")
    assert (evaluate.runs[0].config.alpha, evaluate.runs[0].config.greedy) == (0.5, False)
    run(evaluate, tmp_path, "--method", "toy")
    assert evaluate.runs[1].config.alpha == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--method", "toy", "--method-arg", "alpah=1"), "unknown key 'alpah' for ToyConfig; did you mean 'alpha'?"),
        (("--method", "toy", "--method-arg", "alpha=high"), "alpha expects float, got 'high'"),
        (("--method", "toy", "--method-arg", "alpha"), "--method-arg expects KEY=VALUE, got 'alpha'"),
        (("--method-arg", "alpha=1"), "--method-arg needs --method"),
        (("--method", "vcd"), "unknown method 'vcd'; valid ids: toy"),
    ],
)
def test_bad_method_args_are_clear_errors_before_any_model_loads(evaluate, tmp_path, args, message):
    with pytest.raises(SystemExit, match=message):
        run(evaluate, tmp_path, *args)
    assert evaluate.runs == []


def test_a_training_method_is_refused_by_evaluate(evaluate, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", registry.Registry())
    with pytest.raises(SystemExit, match="'resa' is not an inference-time method"):
        run(evaluate, tmp_path, "--method", "resa")
