"""Generate responses for a file of samples with any VLM (base + optional LoRA adapter), continuously batched.

Input: a .jsonl/.json file of sample records (see eval_bridge/samples.py): {"id", "prompt", "images", ...}.
Output: JSON Lines {"id", "prompt", "response"} in input order.

Example:
    python scripts/generate.py --model llava-hf/llava-1.5-7b-hf --samples requests.jsonl --output out.jsonl
"""

import argparse
import json

from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.samples import SampleError, load_samples


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="local model directory or hub id (from the local HF cache)")
    p.add_argument("--adapter", help="PEFT adapter directory to apply on top of --model")
    p.add_argument("--samples", required=True, help=".jsonl or .json file of sample records")
    p.add_argument("--data-root", help="folder that image paths are relative to (default: the samples' folder)")
    p.add_argument("--output", required=True, help="where to write the responses (.jsonl)")
    p.add_argument("--batch-size", type=int, default=8, help="rows decoding at once, at most")
    p.add_argument(
        "--token-budget",
        type=int,
        default=GenerationSettings.token_budget,
        help="running rows x their padded length (prompt + generated) at most, when admitting a sample",
    )
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust-remote-code", action="store_true", help="allow code shipped with the checkpoint")
    args = p.parse_args(argv)

    try:
        samples = load_samples(args.samples, args.data_root)
        vlm = VLM.load(args.model, args.adapter, trust_remote_code=args.trust_remote_code)
    except (SampleError, OSError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        batch_size=args.batch_size,
        token_budget=args.token_budget,
    )
    generations = vlm.generate(samples, settings, progress=True)
    with open(args.output, "w", encoding="utf-8") as f:
        for sample, gen in zip(samples, generations, strict=True):
            f.write(json.dumps({"id": sample.id, "prompt": sample.prompt, "response": gen.text}) + "\n")
    print(f"wrote {len(generations)} responses to {args.output}")


if __name__ == "__main__":
    main()
