"""Compare several trust-suite results (results.json files or the folders holding them) against the first.

Example:
    python scripts/compare_results.py runs/eval/base runs/eval/resa --labels base resa --plot compare.png
"""

import argparse

from eval_bridge.report import compare


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="results.json files or folders; the first is the baseline")
    p.add_argument("--labels", nargs="+", help="a name per result (default: the paths)")
    p.add_argument("--plot", help="also write a PNG bar chart of the aspects here")
    p.add_argument("--output", help="write the markdown table to this file too")
    args = p.parse_args(argv)
    if args.labels and len(args.labels) != len(args.results):
        raise SystemExit(f"error: {len(args.labels)} labels for {len(args.results)} results")
    try:
        table = compare(args.results, args.labels, plot=args.plot)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
