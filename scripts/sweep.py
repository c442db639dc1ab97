"""Run an ablation sweep: a grid and/or list of config overrides of any registered training method, each run
trained and bridged into its own directory, then one table and plot over the runs (mitigation/sweep.py).

Examples:
    python scripts/sweep.py --config configs/sweeps/resa_dpo_beta_lr.yaml --dry-run    # list the runs
    python scripts/sweep.py --config configs/sweeps/resa_dpo_beta_lr.yaml              # one after another here
    python scripts/sweep.py --config configs/sweeps/resa_dpo_beta_lr.yaml --launcher accelerate
    python scripts/sweep.py --config configs/sweeps/resa_dpo_beta_lr.yaml --launcher slurm

Finished runs are skipped; a failed run is recorded (its `sweep_run.json`) and the sweep goes on. The summary is
written to `<output_dir>/sweep.{md,csv,png}` and printed.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mitigation.sweep import LAUNCHERS, SweepError, is_inference, load_sweep, pending, run_sweep, train_flags


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the sweep YAML (method, grid / runs, output_dir, launcher, ...)")
    p.add_argument("--dry-run", action="store_true", help="list the runs (and which are done) and exit")
    p.add_argument("--launcher", choices=LAUNCHERS, help="override the sweep file's launcher")
    p.add_argument(
        "--slurm-cluster",
        help="submitit cluster for --launcher slurm (default: Slurm; 'local' runs the same path without a cluster)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        sweep = load_sweep(args.config)
    except SweepError as err:
        raise SystemExit(f"error: {err}") from None
    runs, todo = sweep.expand(), {r.name for r in pending(sweep)}
    if args.dry_run:
        print(f"{len(runs)} runs of {sweep.method} under {sweep.output_dir} ({len(runs) - len(todo)} done):")
        for run in runs:
            status = "to run" if run.name in todo else "done"
            if is_inference(sweep):
                print(f"  [{status}] {run.name}: evaluate with --method {sweep.method} and {run.overrides}")
            else:
                print(f"  [{status}] {run.name}: scripts/train_mitigation.py {' '.join(train_flags(sweep, run))}")
        return
    states = run_sweep(sweep, args.launcher, slurm_cluster=args.slurm_cluster)
    print((sweep.output_dir / "sweep.md").read_text())
    failed = [s for s in states if s.get("status") != "done"]
    if failed:
        print(f"{len(failed)} run(s) failed: see their sweep_run.json", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
