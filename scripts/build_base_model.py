"""Build the embedded default base model (SmolLM2-135M-Instruct + a small CLIP tower, aligned on easy-VQA), offline.

    python scripts/build_base_model.py [--out DIR] [--seed 0] [--eval-n 200]

Prints the time of each build phase, then the model's easy-VQA accuracy next to the majority-answer baseline.
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output directory (default: the toolkit's model cache)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-n", type=int, default=200, help="easy-VQA test questions to evaluate (0: skip)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a finished build exists")
    args = parser.parse_args()

    from eval_bridge.models.adapter import VLM
    from mitigation.base_model import MARKER, default_base_dir, ensure_base_model, evaluate_easy_vqa

    out = args.out or default_base_dir()
    if args.force:
        Path(out, MARKER).unlink(missing_ok=True)
    start = time.perf_counter()
    path = ensure_base_model(out, seed=args.seed)
    print(f"model: {path} ({time.perf_counter() - start:.0f}s)")
    if args.eval_n:
        start = time.perf_counter()
        result = evaluate_easy_vqa(VLM.load(str(path)), n=args.eval_n)
        print(f"[evaluate] {time.perf_counter() - start:.1f}s")
        for prompt, response, answer in result["examples"]:
            print(f"  {prompt!r} -> {response!r} (answer: {answer})")
        print(
            f"easy-VQA accuracy: {100 * result['accuracy']:.1f}% on {result['n']} test questions; "
            f"majority baseline ({result['majority_answer']!r}): {100 * result['majority_baseline']:.1f}%"
        )


if __name__ == "__main__":
    main()
