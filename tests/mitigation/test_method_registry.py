"""The method registry: entries validated when built, lazy loading, lookup messages, config building, plugins.

(Named test_method_registry.py: tests/eval_bridge/tasks/test_registry.py already holds the basename, and the
test folders are not packages.)
"""

import dataclasses
import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mitigation import registry
from mitigation.config_overrides import ConfigError
from mitigation.registry import MethodEntry, Registry

REPO = Path(__file__).resolve().parents[2]


def entry(**changes) -> MethodEntry:
    fields = dict(
        id="toy_method",
        axis="inference",
        targets=("truthfulness",),
        config="toy_plugin:ToyConfig",
        kind="inference",
        target="toy_plugin:ToyMethod",
        paper="Toy (arXiv 0000.00000)",
    )
    return MethodEntry(**{**fields, **changes})


# A plugin module on disk: a config dataclass, an inference method built from it, and its registry entry.
TOY_PLUGIN = """
from dataclasses import dataclass
from typing import Literal

from mitigation.registry import MethodEntry


@dataclass
class ToyConfig:
    alpha: float = 1.0
    steps: int = 3
    greedy: bool = True
    name: str = "toy"
    layer: int | None = None
    mode: Literal["swap", "finetune"] = "swap"


class ToyMethod:
    id = "toy_method"

    def __init__(self, config):
        self.config = config

    def cache_key(self):
        return {"alpha": self.config.alpha}


TOY = MethodEntry(
    id="toy_method",
    axis="inference",
    targets=("truthfulness",),
    config="toy_plugin:ToyConfig",
    kind="inference",
    target="toy_plugin:ToyMethod",
    paper="Toy (arXiv 0000.00000)",
)
NOT_AN_ENTRY = 42
"""


@pytest.fixture(autouse=True)
def no_installed_plugins(monkeypatch):
    """Each test sees only the entry points it declares: the installed metadata declares RESA (once `make install`
    has run), which would otherwise join every toy registry. `toy_plugin` replaces this with its own answer."""
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """The toy plugin importable as `toy_plugin`, and importlib.metadata answering one entry point for it."""
    (tmp_path / "toy_plugin.py").write_text(TOY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("toy_plugin", None)
    points = [importlib.metadata.EntryPoint("toy_method", "toy_plugin:TOY", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group=None: [p for p in points if p.group == group],
    )
    yield points
    sys.modules.pop("toy_plugin", None)


def toy_registry(**kwargs) -> Registry:
    return Registry(source_setup_cfg=None, **kwargs)


# --- entries are validated when built ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"axis": "decoding"}, "axis 'decoding' is not one of data, architecture, training, inference"),
        ({"targets": ("safety", "speed")}, "targets ['speed'] must be among truthfulness, safety, robustness"),
        ({"targets": ()}, "targets () must be among"),
        ({"targets": ("safety", "safety")}, "repeat an aspect"),
        ({"id": "SafetyDPO"}, "method id 'SafetyDPO' must be lowercase snake_case"),
        ({"id": "safety-dpo"}, "must be lowercase snake_case"),
        ({"kind": "trainer"}, "kind 'trainer' is not one of recipe, inference, data, model"),
        ({"config": "toy_plugin.ToyConfig"}, "config 'toy_plugin.ToyConfig' must be a 'package.module:Name' string"),
        ({"target": "toy plugin:run"}, "target 'toy plugin:run' must be a 'package.module:Name'"),
        ({"paper": " "}, "paper must name the paper"),
    ],
)
def test_a_bad_entry_is_refused_with_what_to_change(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        entry(**changes)


def test_targets_given_as_a_list_become_a_tuple():
    assert entry(targets=["safety", "utility"]).targets == ("safety", "utility")


def test_a_duplicate_id_is_refused():
    reg = toy_registry(builtin=[entry()])
    with pytest.raises(ValueError, match="duplicate method id 'toy_method'"):
        reg.register(entry(axis="training", kind="recipe"))


# --- lookup ------------------------------------------------------------------------------------------------------


def test_unknown_id_names_it_and_the_valid_ids():
    reg = toy_registry(builtin=[entry(), entry(id="other")])
    with pytest.raises(ValueError, match=r"unknown method 'vcd'; valid ids: other, toy_method$"):
        reg.get("vcd")


def test_a_case_insensitive_near_miss_is_suggested():
    with pytest.raises(ValueError, match=r"unknown method 'RESA' \(did you mean 'resa'\?\); valid ids: .*\bresa\b"):
        registry.get_method("RESA")
    with pytest.raises(ValueError, match=r"did you mean 'toy_method'"):
        toy_registry(builtin=[entry()]).get("toy_methd")


def test_list_methods_filters_by_axis_and_refuses_an_unknown_axis():
    reg = toy_registry(builtin=[entry(), entry(id="a_recipe", axis="training", kind="recipe")])
    assert [e.id for e in reg.list()] == ["a_recipe", "toy_method"]
    assert [e.id for e in reg.list("training")] == ["a_recipe"]
    assert reg.list("data") == []
    with pytest.raises(ValueError, match="unknown axis 'decoding'; valid axes: data, architecture"):
        reg.list("decoding")


def test_resa_is_registered_as_a_training_recipe():
    resa = registry.get_method("resa")
    assert (resa.axis, resa.kind, resa.targets) == ("training", "recipe", ("safety", "utility"))
    assert (resa.config, resa.target) == ("resa.config:ResaConfig", "resa.recipe:run_resa")
    assert "resa" in [e.id for e in registry.list_methods("training")]
    assert "| resa " in registry.methods_table() and "arXiv 2508.15370" in registry.methods_table()


def test_importing_and_querying_the_registry_imports_no_trainer():
    code = (
        "import sys\n"
        "from mitigation import registry\n"
        "registry.list_methods(); registry.load_config_class(registry.get_method('resa'))\n"
        "print(sorted(m for m in ('torch', 'trl', 'transformers', 'peft', 'resa.recipe') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- build_config ------------------------------------------------------------------------------------------------


def test_build_config_converts_strings_to_the_field_types(toy_plugin):
    reg = toy_registry()
    toy = reg.get("toy_method")
    cfg = registry.build_config(
        toy, {"alpha": "0.5", "steps": "7", "greedy": "false", "name": "x", "layer": "-2", "mode": "finetune"}
    )
    assert dataclasses.astuple(cfg) == (0.5, 7, False, "x", -2, "finetune")
    assert registry.build_config(toy, {"layer": "None", "greedy": "yes"}).layer is None
    assert registry.build_config(toy, {"alpha": 2}).alpha == 2  # typed values pass through, checked


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"alpah": "1"},
            "method 'toy_method': unknown key 'alpah' for ToyConfig; did you mean 'alpha'? "
            "valid keys: alpha, greedy, layer, mode, name, steps",
        ),
        ({"steps": "2.5"}, "method 'toy_method': steps expects int, got '2.5'"),
        ({"alpha": "high"}, "alpha expects float, got 'high'"),
        ({"greedy": "maybe"}, "greedy expects bool (true/false), got 'maybe'"),
        ({"layer": "last"}, "layer expects int or None, got 'last'"),
        ({"mode": "merge"}, "mode expects one of 'swap', 'finetune', got 'merge'"),
        ({"steps": 2.5}, "steps expects int, got 2.5"),
        ({"steps": None}, "steps expects int, got None"),
    ],
)
def test_build_config_names_an_unknown_key_or_a_wrong_value(toy_plugin, overrides, message):
    toy = toy_registry().get("toy_method")
    with pytest.raises(ConfigError) as err:
        registry.build_config(toy, overrides)
    assert message in str(err.value)


def test_build_config_of_resa_gives_a_resa_config():
    cfg = registry.build_config(registry.get_method("resa"), {"sft_max_steps": "3", "model": "m", "use_lora": "0"})
    assert (type(cfg).__name__, cfg.sft_max_steps, cfg.model, cfg.use_lora) == ("ResaConfig", 3, "m", False)


def test_build_inference_method_builds_the_target_from_the_config(toy_plugin, monkeypatch):
    monkeypatch.setattr(registry, "REGISTRY", toy_registry())
    method = registry.build_inference_method("toy_method", alpha="0.25")
    assert (method.id, method.cache_key(), type(method.config).__name__) == ("toy_method", {"alpha": 0.25}, "ToyConfig")
    assert registry.inference_methods() == ["toy_method"]


def test_build_inference_method_refuses_a_training_method():
    with pytest.raises(ValueError, match="method 'resa' is a recipe method, not an inference-time one; available"):
        registry.build_inference_method("resa")


# --- plugins -----------------------------------------------------------------------------------------------------


def test_plugins_are_loaded_on_the_first_query_only(toy_plugin):
    reg = toy_registry()
    assert "toy_plugin" not in sys.modules  # building the registry loads nothing
    assert [e.id for e in reg.list()] == ["toy_method"]
    assert "toy_plugin" in sys.modules
    assert reg.get("toy_method").target == "toy_plugin:ToyMethod"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("toy_method", "toy_plugin:NOT_AN_ENTRY", "it is a int, not a MethodEntry"),
        ("toy_method", "no_such_module:TOY", "ModuleNotFoundError"),
        ("other_name", "toy_plugin:TOY", "its entry has id 'toy_method'; the entry-point name must be the id"),
    ],
)
def test_a_broken_plugin_is_skipped_and_named_in_the_lookup_error(toy_plugin, name, value, reason, caplog):
    toy_plugin[:] = [importlib.metadata.EntryPoint(name, value, registry.ENTRY_POINT_GROUP)]
    reg = toy_registry(builtin=[entry(id="fine")])
    assert [e.id for e in reg.list()] == ["fine"]  # the other methods still load
    assert reason in caplog.text
    with pytest.raises(ValueError, match=f"plugin '{name}' .* not loaded: .*{reason}"):
        reg.get(name)


def test_no_plugins_at_all_says_how_to_refresh_the_metadata(toy_plugin):
    toy_plugin.clear()
    message = r"no plugins found under the entry-point group 'vlm_trust\.methods'.*make install"
    with pytest.raises(ValueError, match=message):
        toy_registry().get("resa")


def test_a_source_setup_cfg_overrides_stale_metadata_with_a_warning(toy_plugin, tmp_path, caplog):
    toy_plugin.clear()  # the installed metadata predates the entry point
    setup_cfg = tmp_path / "setup.cfg"
    setup_cfg.write_text(
        textwrap.dedent(
            f"""
            [metadata]
            name = {registry.PROJECT}

            [options.entry_points]
            vlm_trust.methods =
                toy_method = toy_plugin:TOY
            """
        )
    )
    reg = Registry(source_setup_cfg=setup_cfg)
    assert [e.id for e in reg.list()] == ["toy_method"]
    assert "toy_method: declared in" in caplog.text and "make install" in caplog.text


def test_another_projects_setup_cfg_is_ignored(tmp_path):
    other = "[metadata]\nname = other\n[options.entry_points]\nvlm_trust.methods =\n x = a:b\n"
    (tmp_path / "setup.cfg").write_text(other)
    assert registry.setup_cfg_entry_points(tmp_path / "setup.cfg", registry.ENTRY_POINT_GROUP) == {}
    assert registry.setup_cfg_entry_points(tmp_path / "missing.cfg", registry.ENTRY_POINT_GROUP) == {}


def test_the_repository_setup_cfg_declares_resa():
    declared = registry.setup_cfg_entry_points(REPO / "setup.cfg", registry.ENTRY_POINT_GROUP)
    assert declared == {"resa": "resa.method:RESA"}


def test_config_and_target_strings_of_every_method_resolve():
    for method in registry.list_methods():
        assert dataclasses.is_dataclass(registry.load_config_class(method)), method.id
        module, _, name = method.target.partition(":")
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), method.id  # without importing trainers
        assert name in (REPO / (module.replace(".", "/") + ".py")).read_text(), method.id
