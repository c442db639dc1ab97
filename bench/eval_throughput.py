"""Throughput of the suite's batched generation vs a one-sample-at-a-time loop (how MultiTrust's toolkit runs).

Both generate greedily for the same mini-suite samples with the same model; the script checks that they give
the same text and prints samples/s of each and the ratio.

    python bench/eval_throughput.py                       # tiny random LLaVA, whole mini suite, batch 16
    python bench/eval_throughput.py --model PATH --tasks T1,S4 --limit 4
"""

import argparse
import tempfile
import time

import torch

from eval_bridge.data.sources import MiniSuite
from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.models.tiny import save_tiny_vlm
from eval_bridge.tasks import select_tasks


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (default: a freshly built tiny random LLaVA)")
    p.add_argument("--tasks", help="task ids / aspects (default: all 32)")
    p.add_argument("--limit", type=int, help="samples per dataset")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--cache-dir", default=".cache/trust-suite", help="where the mini suite is generated")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(save_tiny_vlm("llava", f"{tmp}/tiny-llava"))
        vlm = VLM.load(model)
        source = MiniSuite(args.cache_dir)
        samples = [s for t in select_tasks(args.tasks) for d in t.datasets for s in source.load(d)[: args.limit]]
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
        vlm.generate(samples[:2], settings)  # warm-up (lazy inits, allocator)

        t0 = time.perf_counter()
        batched = vlm.generate(samples, settings)
        t1 = time.perf_counter()
        single = [vlm.generate([s], settings)[0] for s in samples]
        t2 = time.perf_counter()

    same = sum(a.token_ids == b.token_ids for a, b in zip(batched, single, strict=True))
    rate_b, rate_s = len(samples) / (t1 - t0), len(samples) / (t2 - t1)
    print(
        f"model: {model if args.model else 'tiny random LLaVA'}; {len(samples)} mini-suite samples "
        f"({sum(bool(s.images) for s in samples)} with images); greedy, {args.max_new_tokens} new tokens; "
        f"{torch.get_num_threads()} CPU threads"
        if not torch.cuda.is_available()
        else "; CUDA"
    )
    print(f"one at a time   : {rate_s:7.2f} samples/s")
    print(f"batched (bs {args.batch_size:>3}): {rate_b:7.2f} samples/s")
    print(f"speed-up        : {rate_b / rate_s:7.2f}x")
    print(f"identical greedy outputs: {same}/{len(samples)}")


if __name__ == "__main__":
    main()
