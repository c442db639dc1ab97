"""Train a registered mitigation method: `--method ID` looks it up in mitigation/registry.py, TRL's TrlParser reads
its config dataclass from YAML (--config) and flags, and its recipe runs every checkpoint through the trust suite,
ending with the trade-off table.

Examples:
    python scripts/train_mitigation.py --list-methods
    python scripts/train_mitigation.py --method resa --help        # every field of the method's config
    accelerate launch scripts/train_mitigation.py --method resa
    accelerate launch scripts/train_mitigation.py --method resa --config configs/resa/default_cpu.yaml \\
        --sft_max_steps 20

`--method resa` runs what scripts/train_resa.py runs (resa.recipe.run_resa on the same parsed ResaConfig).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import NoReturn

from mitigation.config_overrides import ConfigError, check_values, unknown_key_message
from mitigation.registry import MethodEntry, get_method, list_methods, load_config_class, load_target, methods_table


def fail(message: object) -> NoReturn:
    """One line on stderr, exit status 2 (argparse's convention for a usage error), no traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def method_selector() -> argparse.ArgumentParser:
    """The options read before the method is known; the rest go to the method's config parser."""
    p = argparse.ArgumentParser(
        usage="%(prog)s (--list-methods | --method ID [--config FILE.yaml] [--FIELD VALUE ...])",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
        allow_abbrev=False,  # a config field must never be taken for an abbreviation of these
    )
    p.add_argument("--list-methods", action="store_true", help="print the registered methods and exit")
    p.add_argument("--method", help="method id (see --list-methods)")
    p.add_argument("-h", "--help", action="store_true", help="this help; with --method, the method's fields")
    return p


def parse_args(argv: list[str] | None = None) -> tuple[MethodEntry, object]:
    """The method's entry and its config parsed from argv (exits after --list-methods, --help or a bad argument)."""
    selector = method_selector()
    known, rest = selector.parse_known_args(sys.argv[1:] if argv is None else argv)
    if known.list_methods:
        print(methods_table())
        raise SystemExit(0)
    if known.method is None:
        if known.help:
            selector.print_help()
            print("\nmethods:\n" + methods_table())
            raise SystemExit(0)
        fail(f"--method is required; valid ids: {', '.join(e.id for e in list_methods())}")
    try:
        entry = get_method(known.method)
    except ValueError as err:
        fail(err)
    if entry.kind != "recipe":
        recipes = ", ".join(e.id for e in list_methods() if e.kind == "recipe")
        hint = f" (use scripts/evaluate.py --method {entry.id})" if entry.kind == "inference" else ""
        fail(f"method {entry.id!r} is not a training recipe (kind {entry.kind}){hint}; recipes: {recipes}")
    config_class = load_config_class(entry)

    from trl import TrlParser

    parser = TrlParser(
        (config_class,),
        prog=f"{selector.prog} --method {entry.id}",
        description=__doc__,
        allow_abbrev=False,  # `--sft_max_step 3` is a typo to report, not a silent `--sft_max_steps 3`
    )
    parser.error = fail  # argparse's own errors (a wrongly-typed value) as one line, exit 2
    if known.help:
        parser.print_help()
        raise SystemExit(0)
    if rest.count("--config") > 1 or rest[-1:] == ["--config"]:
        fail("--config takes one YAML file")
    try:
        cfg, from_yaml, from_flags = parser.parse_args_and_config(
            rest, return_remaining_strings=True, separate_remaining_strings=True
        )
    except (OSError, ValueError) as err:  # a missing or malformed YAML file
        fail(err)
    for source, leftovers in (("command line", from_flags), ("YAML file", from_yaml)):
        if leftovers:
            fail(_leftover_message(source, leftovers, entry, config_class))
    try:
        check_values(config_class, {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
    except ConfigError as err:  # a YAML value of the wrong type (argparse only checks strings)
        fail(f"method {entry.id!r}: {err}")
    if getattr(cfg, "output_dir", None):
        from eval_bridge.files import writable_dir

        try:
            writable_dir(cfg.output_dir, "output_dir")  # now, not after the data and the first training steps
        except OSError as err:
            fail(f"method {entry.id!r}: {err}")
    return entry, cfg


def _leftover_message(source: str, leftovers: list[str], entry: MethodEntry, config_class: type) -> str:
    keys = [s for s in leftovers if s.startswith("--")]
    if not keys:
        return f"unexpected argument {leftovers[0]!r}; options are --FIELD VALUE pairs"
    key = keys[0][2:].split("=", 1)[0]
    valid = sorted(f.name for f in dataclasses.fields(config_class))
    return f"method {entry.id!r} ({source}): {unknown_key_message(key, config_class, valid)}"


def main(argv: list[str] | None = None) -> None:
    entry, cfg = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    table = load_target(entry)(cfg)
    if table is not None:
        print(f"\n{entry.id} trade-off (every checkpoint through the trust suite; deltas against step 0):\n")
        print(table)
        if getattr(cfg, "output_dir", None):
            print(f"full report: {cfg.output_dir}/trust_eval/tradeoff.md, tradeoff.png, best_checkpoint.json")


if __name__ == "__main__":
    main()
