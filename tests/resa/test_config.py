"""The YAML recipes parse into ResaConfig, and the CPU recipe spells out exactly the defaults the main command uses."""

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from resa.config import ResaConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "resa"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_names_only_known_fields(path):
    values = yaml.safe_load(path.read_text())
    unknown = set(values) - set(asdict(ResaConfig()))
    assert not unknown, f"{path.name}: unknown fields {sorted(unknown)}"
    ResaConfig(**values)


def test_cpu_recipe_equals_the_defaults():
    values = yaml.safe_load((CONFIGS / "default_cpu.yaml").read_text())
    defaults = asdict(ResaConfig())
    assert {k: v for k, v in values.items() if v != defaults[k]} == {}
