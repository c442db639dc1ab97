"""Reproduce the paper-style mitigation table: the base model and every registered method (mitigation/registry.py)
on one trust suite, one row per method with its scores, deltas against the base and its cost
(mitigation/reproduce.py).

Examples:
    python scripts/reproduce_tables.py                                   # embedded default, all methods, mini suite
    python scripts/reproduce_tables.py --methods resa,safety_dpo,vcd --budget-steps 20 --output runs/table
    python scripts/reproduce_tables.py --base llava-hf/llava-1.5-7b-hf --suite full --data-root /data/multitrust

Training methods run their default recipe from the base (each stage capped at --budget-steps); inference methods
wrap the base. Resumable: a finished method is neither retrained nor re-evaluated. Writes
<output>/mitigation_table.{md,csv}, deltas.png and safety_utility.png.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from mitigation.config_overrides import ConfigError
from mitigation.reproduce import ReproduceConfig, reproduce


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", help="base model (path or hub id); default: the embedded default model")
    p.add_argument("--methods", default="all", help="'all' or comma-separated registry ids (default: all)")
    p.add_argument("--suite", choices=["mini", "full"], default="mini", help="trust suite (default: mini, offline)")
    p.add_argument("--data-root", help="MultiTrust data root for --suite full")
    p.add_argument("--tasks", help="task ids / aspects to evaluate (default: all 32)")
    p.add_argument("--budget-steps", type=int, help="cap on every training stage's optimizer steps (equal budget)")
    p.add_argument("--output", default="runs/mitigation_table", help="output folder (default: runs/mitigation_table)")
    p.add_argument("--seed", type=int, default=0, help="seed of data and training (default: 0)")
    p.add_argument("--eval-batch-size", type=int, default=32, help="generation batch size (default: 32)")
    p.add_argument("--max-new-tokens", type=int, help="one generation length for every task (default: each task's)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config field for every training method that has it (repeatable), e.g. --override use_lora=false",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ID.KEY=VALUE",
        help="a config field of one training method (repeatable), e.g. --set resa.dpo_beta=0.2",
    )
    p.add_argument(
        "--method-arg",
        action="append",
        default=[],
        metavar="ID.KEY=VALUE",
        help="a config field of one inference method (repeatable), e.g. --method-arg vcd.alpha=0.5",
    )
    return p


def _pair(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"error: {flag} expects KEY=VALUE, got {item!r}")
    return key.strip(), value


def _scoped(items: list[str], flag: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, value = _pair(item, flag)
        method, dot, field = key.partition(".")
        if not dot or not method or not field:
            raise SystemExit(f"error: {flag} expects ID.KEY=VALUE (e.g. resa.dpo_beta=0.2), got {item!r}")
        out.setdefault(method, {})[field] = value
    return out


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    cfg = ReproduceConfig(
        base=args.base,
        methods=args.methods,
        suite=args.suite,
        data_root=args.data_root,
        tasks=args.tasks,
        budget_steps=args.budget_steps,
        output=args.output,
        seed=args.seed,
        eval_batch_size=args.eval_batch_size,
        eval_max_new_tokens=args.max_new_tokens,
        overrides=dict(_pair(item, "--override") for item in args.override),
        method_overrides=_scoped(args.set, "--set"),
        method_args=_scoped(args.method_arg, "--method-arg"),
    )
    started = time.perf_counter()
    try:
        reproduce(cfg)
    except (ConfigError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print((Path(cfg.output) / "mitigation_table.md").read_text())
    print(f"wall time: {(time.perf_counter() - started) / 60:.1f} min; files under {cfg.output}/")


if __name__ == "__main__":
    main()
