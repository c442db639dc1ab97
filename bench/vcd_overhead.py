"""Decode cost of VCD against plain greedy decoding: the same image prompts, the same model, the same batch size.

Both run through the suite's one decode loop: plain greedy with one row per sample, VCD with each sample's clean
row and its noised twin stacked in the same forward (`mitigation.inference.vcd`). By default EOS is ignored, so
every sample decodes exactly `--max-new-tokens` tokens in both modes and the per-token figures compare like with
like (`--until-eos` keeps each answer's own length). Printed per mode: the decode-step forwards per generated
token (the per-token decode time; the headline ratio, goal <= 1.5x: two separate forwards per token would cost
about 2x), the prefill time (VCD prefills twice the rows and runs the vision tower twice), and the whole run per
token. `--check-alpha0` also checks that VCD with alpha = 0 gives plain's tokens. With `--repeats` the modes run
in interleaved rounds and each mode's fastest round counts.

    python bench/vcd_overhead.py                    # the embedded default model, mini-suite image prompts, batch 8
    python bench/vcd_overhead.py --model tiny       # a tiny random LLaVA
"""

import argparse
import tempfile
import time

import torch

from eval_bridge.data.sources import MiniSuite
from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.models.tiny import save_tiny_vlm
from eval_bridge.tasks import select_tasks
from mitigation.inference.vcd import Vcd, VcdConfig


def _model_dir(name: str, tmp: str) -> str:
    if name == "tiny":
        return str(save_tiny_vlm("llava", f"{tmp}/tiny-llava"))
    if name == "default":
        from mitigation.base_model import ensure_base_model

        return str(ensure_base_model())
    return name


def image_prompts(tasks: str, limit: int | None, cache_dir: str) -> list:
    """The mini suite's samples with an image, from `tasks`, at most `limit` per dataset."""
    source = MiniSuite(cache_dir)
    samples = [s for t in select_tasks(tasks) for d in t.datasets for s in source.load(d)[:limit]]
    return [s for s in samples if s.images]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default="default", help="'default' (the embedded default), 'tiny' (a tiny random LLaVA) or a path"
    )
    p.add_argument("--tasks", default="T1,T2,T3,S4", help="mini-suite tasks whose image prompts are decoded")
    p.add_argument("--limit", type=int, default=8, help="samples per dataset")
    p.add_argument("--batch-size", type=int, default=8, help="samples at once (VCD: twice as many rows)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds; each mode's fastest counts")
    p.add_argument("--cache-dir", default=".cache/trust-suite", help="where the mini suite is generated")
    p.add_argument("--until-eos", action="store_true", help="stop each answer at EOS (default: fixed length)")
    p.add_argument("--check-alpha0", action="store_true", help="check VCD with alpha 0 equals plain greedy")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model = _model_dir(args.model, tmp)
        vlm = VLM.load(model)
        if not args.until_eos:
            vlm.model.generation_config.eos_token_id = None  # every answer runs to max_new_tokens
        samples = image_prompts(args.tasks, args.limit, args.cache_dir)
        if not samples:
            raise SystemExit(f"error: tasks {args.tasks} have no image prompts in the mini suite")
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
        vcd = Vcd(VcdConfig())
        modes = {
            "plain greedy": lambda batch: vlm.generate(batch, settings),
            "vcd": lambda batch: vcd.generate(vlm, batch, settings),
        }
        for fn in modes.values():  # warm-up (lazy inits, allocator)
            fn(samples[:2])
        best: dict[str, dict] = {}
        outputs: dict[str, list] = {}
        for _ in range(args.repeats):
            for name, fn in modes.items():
                start = time.perf_counter()
                outputs[name] = fn(samples)
                seconds = time.perf_counter() - start
                n_tokens = sum(len(g.token_ids) for g in outputs[name])
                stats = vlm.decode_stats
                # The first token of each answer comes from the prefill; the decode steps make the rest.
                run = {
                    "decode": stats.step_s / max(n_tokens - len(samples), 1),
                    "prefill": stats.prefill_s,
                    "whole": seconds / n_tokens,
                    "tokens": n_tokens,
                }
                if name not in best or run["decode"] < best[name]["decode"]:
                    best[name] = run
        same = Vcd(VcdConfig(alpha=0.0)).generate(vlm, samples, settings) if args.check_alpha0 else None

    device = "CUDA" if torch.cuda.is_available() else f"{torch.get_num_threads()} CPU threads"
    shown = "a tiny random LLaVA" if args.model == "tiny" else model
    length = "until EOS" if args.until_eos else "fixed length"
    print(
        f"model: {shown}; {len(samples)} mini-suite image prompts ({args.tasks}); greedy, {args.max_new_tokens} new "
        f"tokens ({length}); batch {args.batch_size}; {device}; best of {args.repeats}"
    )
    for name, r in best.items():
        print(
            f"{name:12s}: decode {1000 * r['decode']:8.2f} ms per token, prefill {r['prefill']:.2f} s, "
            f"whole run {1000 * r['whole']:.2f} ms per token ({r['tokens']} tokens)"
        )
    for what in ("decode", "whole"):
        ratio = best["vcd"][what] / best["plain greedy"][what]
        label = "per-token decode" if what == "decode" else "whole run per token"
        print(f"vcd / plain greedy, {label}: {ratio:.2f}x" + (" (goal <= 1.5x)" if what == "decode" else ""))
    if same is not None:
        identical = sum(a.token_ids == b.token_ids for a, b in zip(same, outputs["plain greedy"], strict=True))
        print(f"vcd with alpha 0 equals plain greedy: {identical}/{len(samples)}")


if __name__ == "__main__":
    main()
