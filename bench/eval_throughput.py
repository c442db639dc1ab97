"""Throughput of the suite's generation: the continuous-batching decode loop vs one sample at a time.

All modes decode the same mini-suite samples greedily with the same model, in one process:

- one at a time: transformers' `generate` per sample (how MultiTrust's toolkit runs),
- the decode loop (`VLM.generate`, the default): finished rows leave, waiting samples join,
- batched `generate` (`continuous=False`), for reference: each batch runs until its longest answer ends.

It prints samples/s of each, the ratios to one at a time, how many greedy outputs equal one at a time (token ids),
and where the loop's time went (processor, prefill forwards, decode-step forwards, the rest). With `--repeats`
the modes run in interleaved rounds and each mode's fastest round counts (robust to other load on the machine).

    python bench/eval_throughput.py                       # the embedded default model, tasks T1,S4,P1,F2
    python bench/eval_throughput.py --model tiny          # a tiny random LLaVA
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


def _model_dir(name: str, tmp: str) -> str:
    if name == "tiny":
        return str(save_tiny_vlm("llava", f"{tmp}/tiny-llava"))
    if name == "default":
        from mitigation.base_model import ensure_base_model

        return str(ensure_base_model())
    return name


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default="default", help="'default' (the embedded default), 'tiny' (a tiny random LLaVA) or a path"
    )
    p.add_argument("--tasks", default="T1,S4,P1,F2", help="task ids / aspects of the mini suite ('all': all 32)")
    p.add_argument("--limit", type=int, help="samples per dataset")
    p.add_argument("--batch-size", type=int, default=64, help="rows at once: the loop's cap, batched generate's size")
    p.add_argument("--token-budget", type=int, default=8192, help="the loop's running rows x padded length cap")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds; each mode's fastest counts")
    p.add_argument("--skip-plain", action="store_true", help="do not time batched generate")
    p.add_argument("--cache-dir", default=".cache/trust-suite", help="where the mini suite is generated")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model = _model_dir(args.model, tmp)
        vlm = VLM.load(model)
        source = MiniSuite(args.cache_dir)
        tasks = None if args.tasks == "all" else args.tasks
        samples = [s for t in select_tasks(tasks) for d in t.datasets for s in source.load(d)[: args.limit]]
        settings = GenerationSettings(
            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, token_budget=args.token_budget
        )
        one = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=1)
        vlm.generate(samples[:2], settings)  # warm-up (lazy inits, allocator)
        vlm.generate(samples[:2], one, continuous=False)

        modes = {
            "one at a time": lambda: [vlm.generate([s], one, continuous=False)[0] for s in samples],
            "decode loop": lambda: vlm.generate(samples, settings),
        }
        if not args.skip_plain:
            modes["batched generate"] = lambda: vlm.generate(samples, settings, continuous=False)
        best: dict[str, float] = {}
        outputs: dict[str, list] = {}
        loop_stats = None
        for _ in range(args.repeats):
            for name, fn in modes.items():
                outputs[name], seconds = _timed(fn)
                if seconds < best.get(name, float("inf")):
                    best[name] = seconds
                    if name == "decode loop":
                        loop_stats = vlm.decode_stats

    device = "CUDA" if torch.cuda.is_available() else f"{torch.get_num_threads()} CPU threads"
    n = len(samples)
    shown = "a tiny random LLaVA" if args.model == "tiny" else model
    print(
        f"model: {shown}; {n} mini-suite samples ({sum(bool(s.images) for s in samples)} with images); greedy, "
        f"{args.max_new_tokens} new tokens; {device}; batch {args.batch_size}, token budget {args.token_budget}; "
        f"best of {args.repeats}"
    )
    reference = outputs["one at a time"]
    for name, seconds in best.items():
        same = sum(a.token_ids == b.token_ids for a, b in zip(outputs[name], reference, strict=True))
        ratio = best["one at a time"] / seconds
        print(f"{name:17s}: {n / seconds:7.2f} samples/s  {ratio:6.2f}x  identical greedy outputs {same}/{n}")
    s = loop_stats
    print(
        f"decode loop time: processor {s.prepare_s:.2f} s, prefill forwards {s.prefill_s:.2f} s ({s.prefills}, "
        f"{s.prefill_tokens} tokens of which {s.prompt_tokens} not padding), "
        f"decode steps {s.step_s:.2f} s ({s.steps}), other {s.other_s:.2f} s; total {s.total_s:.2f} s; "
        f"peak rows {s.peak_rows}, joined mid-decode {s.joined_running}"
    )


if __name__ == "__main__":
    main()
