"""Print (and write) the trade-off report of a training run whose checkpoints went through the eval bridge.

Examples:
    python scripts/report.py runs/resa
    python scripts/report.py runs/resa --resume                      # first evaluate what a killed run left queued
    python scripts/report.py runs/resa --weights safety=2,overall=1 --utility-tolerance 3

Writes trust_eval/tradeoff.md, tradeoff.csv, tradeoff.png and best_checkpoint.json under RUN_DIR.
"""

import argparse
import logging
import sys
from pathlib import Path

from eval_bridge.bridge import bridge_dir, drain, pending, unfinished
from eval_bridge.tradeoff import COLUMNS, write_report


def parse_weights(text: str | None) -> dict[str, float] | None:
    """'safety=2,overall=1' -> {'safety': 2.0, 'overall': 1.0}."""
    if not text:
        return None
    weights = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in COLUMNS or not value:
            raise SystemExit(f"error: bad weight {part!r}; use NAME=NUMBER with NAME one of {', '.join(COLUMNS)}")
        weights[name.strip()] = float(value)
    return weights


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="the training run's output directory")
    p.add_argument("--resume", action="store_true", help="evaluate checkpoints still queued (e.g. after a crash)")
    p.add_argument(
        "--weights",
        help="objective for the best-checkpoint pick, NAME=NUMBER,... (default: overall=1 when every checkpoint "
        "scored all 32 tasks, else aspects_mean=1, labelled partial; required for a run of tracks only)",
    )
    p.add_argument("--utility-tolerance", type=float, default=5.0, help="max utility drop in points (default 5)")
    p.add_argument(
        "--stale-claim-after",
        type=float,
        metavar="SECONDS",
        help="with --resume, also take over checkpoints claimed by another host's worker (which cannot be checked "
        "from here) longer ago than this; 0: all of them (default: leave them; a dead worker of this host is "
        "always detected and its checkpoint evaluated again)",
    )
    args = p.parse_args(argv)
    if not bridge_dir(args.run_dir).is_dir():
        raise SystemExit(
            f"error: {Path(args.run_dir) / 'trust_eval'} not found; was the run trained with the "
            "eval bridge (TrustEvalCallback)?"
        )
    weights = parse_weights(args.weights)
    if args.resume:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        queued = pending(args.run_dir)
        print(f"evaluating {len(queued)} queued checkpoint(s)", file=sys.stderr)
        for record in drain(args.run_dir, stale_after_s=args.stale_claim_after):
            print(
                f"step {record['step']}: {'failed: ' + record['error'] if record.get('error') else 'done'}",
                file=sys.stderr,
            )
        for record in unfinished(args.run_dir):
            print(f"step {record['step']}: left alone: {record['error']}", file=sys.stderr)
    elif pending(args.run_dir):
        print(
            f"note: {len(pending(args.run_dir))} checkpoint(s) still queued; --resume evaluates them", file=sys.stderr
        )
    print(write_report(args.run_dir, weights=weights, utility_tolerance=args.utility_tolerance))


if __name__ == "__main__":
    main()
