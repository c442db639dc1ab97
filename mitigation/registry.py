"""The registry of mitigation methods: id -> axis, targeted aspects, config dataclass, and how the method applies.

An entry names its config and its target as lazy "package.module:Name" strings (lm-evaluation-harness style), so
the registry imports no trainer: listing methods or looking one up costs no torch/trl import. What the target is
depends on the entry's `kind` (`KINDS`):

    recipe     target(config) -> trade-off table (str) or None; run by `scripts/train_mitigation.py --method ID`
    inference  target(config) -> an `eval_bridge.inference.InferenceMethod`; used by `scripts/evaluate.py --method ID`
    data       target(config) -> a data transform (reserved: no command runs it yet)
    model      target(config) -> a model transform (reserved: no command runs it yet)

Methods inside `mitigation` are listed in `BUILTIN_METHODS`. Methods above it in the import graph (RESA, in
`resa`, which imports `mitigation`) are plugins: each declares its entry under the `vlm_trust.methods` entry-point
group in setup.cfg (`resa = resa.method:RESA`), and the registry loads them when it is first queried.
"""

from __future__ import annotations

import configparser
import dataclasses
import difflib
import importlib
import importlib.metadata
import logging
import re
from pathlib import Path

from mitigation import config_overrides

log = logging.getLogger(__name__)

AXES = ("data", "architecture", "training", "inference")
ASPECTS = ("truthfulness", "safety", "robustness", "fairness", "privacy")  # MultiTrust's five
TARGETS = (*ASPECTS, "utility")
KINDS = ("recipe", "inference", "data", "model")
ENTRY_POINT_GROUP = "vlm_trust.methods"
PROJECT = "vlm-trust-mitigation"  # setup.cfg's [metadata] name
# The setup.cfg of a source checkout (absent in a wheel install): read when the installed metadata may be stale.
SOURCE_SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"

_ID = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
_OBJECT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclasses.dataclass(frozen=True)
class MethodEntry:
    """A registered method; validated when built.

    Attributes:
        id: lowercase snake_case, unique (`safety_dpo`).
        axis: one of AXES.
        targets: aspects it means to improve, among TARGETS (MultiTrust's five + utility).
        config: "package.module:Class" of its config dataclass.
        kind: one of KINDS: what `target` is and which command runs it.
        target: "package.module:Name" of the callable applied to a config (see the module docstring).
        paper: the paper(s) it follows.
    """

    id: str
    axis: str
    targets: tuple[str, ...]
    config: str
    kind: str
    target: str
    paper: str

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        if not isinstance(self.id, str) or not _ID.fullmatch(self.id):
            raise ValueError(f"method id {self.id!r} must be lowercase snake_case (e.g. 'safety_dpo')")
        where = f"method {self.id!r}:"
        if self.axis not in AXES:
            raise ValueError(f"{where} axis {self.axis!r} is not one of {', '.join(AXES)}")
        bad = [t for t in self.targets if t not in TARGETS]
        if not self.targets or bad:
            raise ValueError(f"{where} targets {bad or '()'} must be among {', '.join(TARGETS)}")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"{where} targets {self.targets} repeat an aspect")
        if self.kind not in KINDS:
            raise ValueError(f"{where} kind {self.kind!r} is not one of {', '.join(KINDS)}")
        for name in ("config", "target"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _OBJECT_PATH.fullmatch(value):
                raise ValueError(f"{where} {name} {value!r} must be a 'package.module:Name' string")
        if not isinstance(self.paper, str) or not self.paper.strip():
            raise ValueError(f"{where} paper must name the paper it follows")


# In-tree methods (mitigation/{data,architecture,training,inference}/), one entry each, by axis.
BUILTIN_METHODS: tuple[MethodEntry, ...] = (
    MethodEntry(
        "vlguard",
        "data",
        ("safety", "privacy"),
        "mitigation.data.vlguard_config:VlguardConfig",
        "recipe",
        "mitigation.data.vlguard:run_vlguard",
        "VLGuard (Zong et al., ICML 2024, arXiv 2402.02207)",
    ),
    MethodEntry(
        "lrv",
        "data",
        ("truthfulness",),
        "mitigation.data.lrv_config:LrvConfig",
        "recipe",
        "mitigation.data.lrv:run_lrv",
        "LRV-Instruction (Liu et al., ICLR 2024, arXiv 2306.14565)",
    ),
    MethodEntry(
        "robust_vision",
        "architecture",
        ("robustness", "safety"),
        "mitigation.architecture.robust_vision_config:RobustVisionConfig",
        "recipe",
        "mitigation.architecture.robust_vision:run_robust_vision",
        "FARE (Schlarmann et al., ICML 2024, arXiv 2402.12336); TeCoA variant (Mao et al., ICLR 2023)",
    ),
    MethodEntry(
        "dense_connector",
        "architecture",
        ("truthfulness", "utility"),
        "mitigation.architecture.dense_connector_config:DenseConnectorConfig",
        "recipe",
        "mitigation.architecture.dense_connector:run_dense_connector",
        "Dense Connector (Yao et al., NeurIPS 2024, arXiv 2405.13800)",
    ),
    MethodEntry(
        "safety_dpo",
        "training",
        ("safety", "utility"),
        "mitigation.training.safety_dpo:SafetyDpoConfig",
        "recipe",
        "mitigation.training.safety_dpo:run_safety_dpo",
        "SPA-VL DPO (Zhang et al., arXiv 2406.12030)",
    ),
    MethodEntry(
        "hallucination_dpo",
        "training",
        ("truthfulness",),
        "mitigation.training.hallucination_dpo_config:HallucinationDpoConfig",
        "recipe",
        "mitigation.training.hallucination_dpo:run_hallucination_dpo",
        "mDPO (Wang et al., EMNLP 2024, arXiv 2406.11839); DDPO option (RLHF-V, CVPR 2024, arXiv 2312.00849)",
    ),
    MethodEntry(
        "vcd",
        "inference",
        ("truthfulness",),
        "mitigation.inference.vcd:VcdConfig",
        "inference",
        "mitigation.inference.vcd:Vcd",
        "VCD (Leng et al., CVPR 2024, arXiv 2311.16922)",
    ),
    MethodEntry(
        "ecso",
        "inference",
        ("safety",),
        "mitigation.inference.ecso:EcsoConfig",
        "inference",
        "mitigation.inference.ecso:Ecso",
        "ECSO (Gou et al., ECCV 2024, arXiv 2403.09572)",
    ),
    MethodEntry(
        "adashield",
        "inference",
        ("safety",),
        "mitigation.inference.adashield:AdaShieldConfig",
        "inference",
        "mitigation.inference.adashield:AdaShield",
        "AdaShield (Wang et al., ECCV 2024, arXiv 2403.09513)",
    ),
)


class Registry:
    """Method entries by id: the built-in ones, plus the entry-point plugins loaded on the first query."""

    def __init__(self, builtin=(), *, group: str = ENTRY_POINT_GROUP, source_setup_cfg: Path | None = SOURCE_SETUP_CFG):
        self._entries: dict[str, MethodEntry] = {}
        self._group = group
        self._source_setup_cfg = source_setup_cfg
        self._plugins_loaded = False
        self.plugin_errors: list[str] = []  # one line per plugin that could not be loaded
        for entry in builtin:
            self.register(entry)

    def register(self, entry: MethodEntry) -> None:
        """Add `entry`; a ValueError for a non-entry or a duplicate id."""
        if not isinstance(entry, MethodEntry):
            raise ValueError(f"expected a MethodEntry, got {type(entry).__name__}")
        if entry.id in self._entries:
            raise ValueError(f"duplicate method id {entry.id!r}")
        self._entries[entry.id] = entry

    def get(self, method_id: str) -> MethodEntry:
        """The entry of `method_id`; a ValueError naming it, a near miss and the valid ids if unknown."""
        self._load_plugins()
        entry = self._entries.get(method_id)
        if entry is not None:
            return entry
        ids = sorted(self._entries)
        lowered = {i.lower(): i for i in ids}
        close = [lowered[str(method_id).lower()]] if str(method_id).lower() in lowered else None
        close = close or difflib.get_close_matches(str(method_id).lower(), ids, n=1)
        message = f"unknown method {method_id!r}"
        if close:
            message += f" (did you mean {close[0]!r}?)"
        message += f"; valid ids: {', '.join(ids) or 'none registered'}"
        if self.plugin_errors:
            message += " (" + "; ".join(self.plugin_errors) + ")"
        elif not ids:
            message += (
                f" (no plugins found under the entry-point group {self._group!r}: an editable install whose "
                "metadata predates the group needs `make install`)"
            )
        raise ValueError(message)

    def list(self, axis: str | None = None) -> list[MethodEntry]:
        """Every entry (on `axis` if given), sorted by id."""
        if axis is not None and axis not in AXES:
            raise ValueError(f"unknown axis {axis!r}; valid axes: {', '.join(AXES)}")
        self._load_plugins()
        return [e for _, e in sorted(self._entries.items()) if axis is None or e.axis == axis]

    # --- plugins ---------------------------------------------------------------------------------------------

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for name, value in self._declared_plugins().items():
            try:
                entry = load_object(value)
                if not isinstance(entry, MethodEntry):
                    raise ValueError(f"it is a {type(entry).__name__}, not a MethodEntry")
                if entry.id != name:
                    raise ValueError(f"its entry has id {entry.id!r}; the entry-point name must be the id")
                self.register(entry)
            except Exception as err:  # a broken plugin must not take the other methods down with it
                self.plugin_errors.append(f"plugin {name!r} ({value}) not loaded: {type(err).__name__}: {err}")
                log.warning("%s", self.plugin_errors[-1])

    def _declared_plugins(self) -> dict[str, str]:
        """Entry-point name -> "module:attr": the installed metadata's, overridden by a source checkout's setup.cfg.

        An editable install records setup.cfg's entry points when it is installed; after setup.cfg changes (a new
        method) the recorded ones are stale until `make install` reruns. The checkout being imported is the truth.
        """
        installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=self._group)}
        source = setup_cfg_entry_points(self._source_setup_cfg, self._group)
        stale = sorted(name for name, value in source.items() if installed.get(name) != value)
        if stale:
            log.warning(
                "method plugin(s) %s: declared in %s but missing or different in the installed package metadata "
                "(an editable install not refreshed since setup.cfg changed); using setup.cfg. Run `make install` "
                "to refresh the metadata.",
                ", ".join(stale),
                self._source_setup_cfg,
            )
        return {**installed, **source}


def setup_cfg_entry_points(path: Path | None, group: str) -> dict[str, str]:
    """`group`'s entry points declared in this project's setup.cfg at `path` ({} if absent or another project's)."""
    if path is None or not Path(path).is_file():
        return {}
    cfg = configparser.ConfigParser()
    cfg.read(path)
    if cfg.get("metadata", "name", fallback=None) != PROJECT:
        return {}
    lines = cfg.get("options.entry_points", group, fallback="").splitlines()
    pairs = [line.split("=", 1) for line in lines if "=" in line]
    return {name.strip(): value.strip() for name, value in pairs}


def load_object(path: str):
    """Import "package.module:Name" (Name may be dotted) and return the object."""
    module_name, _, attr = path.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


REGISTRY = Registry(BUILTIN_METHODS)


def register(entry: MethodEntry) -> None:
    """Add `entry` to the registry (ids are unique)."""
    REGISTRY.register(entry)


def get_method(method_id: str) -> MethodEntry:
    """The entry of `method_id`; a ValueError naming it and the valid ids (with a near miss) if unknown."""
    return REGISTRY.get(method_id)


def list_methods(axis: str | None = None) -> list[MethodEntry]:
    """Registered entries (on `axis` if given), sorted by id."""
    return REGISTRY.list(axis)


def load_config_class(entry: MethodEntry) -> type:
    """The entry's config dataclass (imports its module)."""
    cls = load_object(entry.config)
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"method {entry.id!r}: config {entry.config} is not a dataclass")
    return cls


def load_target(entry: MethodEntry):
    """The entry's target callable (imports its module: for a recipe, its trainers)."""
    return load_object(entry.target)


def build_config(entry: MethodEntry, overrides: dict[str, str]):
    """The entry's config from `key=value` strings, converted to the field types.

    Raises:
        ConfigError: a key that is not a field (naming the valid keys) or a value of the wrong type.
    """
    try:
        return config_overrides.build_config(load_config_class(entry), overrides)
    except config_overrides.ConfigError as err:
        raise config_overrides.ConfigError(f"method {entry.id!r}: {err}") from None


def inference_methods() -> list[str]:
    """Ids of the registered inference-time methods."""
    return [e.id for e in list_methods() if e.kind == "inference"]


def build_inference_method(method_id: str, **overrides):
    """The inference-time method `method_id` built from its config with `overrides` (strings or typed values)."""
    entry = get_method(method_id)
    if entry.kind != "inference":
        available = ", ".join(inference_methods()) or "none registered yet"
        raise ValueError(
            f"method {method_id!r} is not an inference-time method (kind {entry.kind}); available: {available}"
        )
    return load_target(entry)(build_config(entry, overrides))


def methods_table(entries: list[MethodEntry] | None = None) -> str:
    """A Markdown table of the methods: id, axis, kind, targets, paper."""
    rows = [("id", "axis", "kind", "targets", "paper")]
    rows += [(e.id, e.axis, e.kind, ", ".join(e.targets), e.paper) for e in entries or list_methods()]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
