"""Build the offline stand-in refusal and toxicity classifiers (SmolLM2 + a probe on PyRIT's human labels).

    python scripts/build_standins.py [--kind refusal|toxicity] [--force]

The suite builds them on first use anyway; this builds them ahead and prints each one's held-out accuracy next
to the rules it replaces (also in `standin_card.json` in each model directory).
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["refusal", "toxicity"], action="append", help="default: both")
    parser.add_argument("--force", action="store_true", help="rebuild even if a finished build exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    from eval_bridge.scorers.standin import MARKER, RECIPES, ensure_standin, read_card, standin_dir

    for kind in args.kind or list(RECIPES):
        recipe = RECIPES[kind]
        if args.force:
            Path(standin_dir(recipe), MARKER).unlink(missing_ok=True)
        start = time.perf_counter()
        path = ensure_standin(recipe)
        card = read_card(path)
        split = card["split"]
        print(f"{recipe.id}: {path} ({time.perf_counter() - start:.0f} s; built in {card['build_seconds']:.0f} s)")
        held_out, everything = f"held out ({split['held_out']})", f"all {card['data']['used']} rows"
        print(f"  {'accuracy of':22s} {held_out:>14s} {everything:>14s}")
        for name, value in card["held_out_accuracy"].items():
            print(f"  {name:22s} {value:14.3f} {card['cv_accuracy_all_rows'][name]:14.3f}")
        print(f"  (trained on {split['train']} rows; on all rows the stand-in is measured by 5-fold cross-validation)")


if __name__ == "__main__":
    main()
