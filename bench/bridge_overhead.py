"""Wall time of the same tiny TRL SFT run without the eval bridge, with it in worker mode, and in sync mode.

Each bridged run evaluates step 0 and every checkpoint on the same suite slice; the ratios say what the bridge
costs the training loop (`train_runtime`) and the whole run (until the trade-off report is written).

    python bench/bridge_overhead.py --steps 60 --save-steps 20 --tasks T6,S4,P1 --limit 4
"""

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image


def run(model_dir: str, out: Path, mode: str | None, args) -> tuple[float, float]:
    """(train_runtime, total wall seconds) of one SFT run; mode None = no bridge."""
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    from eval_bridge.bridge import SuiteSpec
    from eval_bridge.callback import TrustEvalCallback

    rows = [
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"What colour? {i}"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "It is red, a bright red square."}]},
            ],
            "images": [Image.new("RGB", (32, 32), "red")],
        }
        for i in range(16)
    ]
    config = SFTConfig(
        output_dir=str(out),
        max_steps=args.steps,
        save_steps=args.save_steps,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        report_to="none",
        max_length=None,
        logging_steps=10,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    callbacks = []
    if mode:
        spec = SuiteSpec(tasks=args.tasks, limit=args.limit, max_new_tokens=16, cache_dir=str(out / "cache"))
        callbacks.append(TrustEvalCallback(spec, mode=mode, base_model=model_dir))
    trainer = SFTTrainer(
        model=AutoModelForImageTextToText.from_pretrained(model_dir),
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoProcessor.from_pretrained(model_dir),
        callbacks=callbacks,
    )
    start = time.perf_counter()
    output = trainer.train()
    return output.metrics["train_runtime"], time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model directory (default: a tiny random LLaVA)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--save-steps", type=int, default=20)
    p.add_argument("--tasks", default="T6,S4,P1")
    p.add_argument("--limit", type=int, default=4)
    args = p.parse_args(argv)
    from eval_bridge.models.tiny import save_tiny_vlm

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(save_tiny_vlm("llava", Path(tmp) / "tiny"))
        run(model, Path(tmp) / "warmup", None, argparse.Namespace(**{**vars(args), "steps": 2}))
        results = {mode: run(model, Path(tmp) / str(mode), mode, args) for mode in (None, "worker", "sync")}
    base_train, base_total = results[None]
    n_evals = args.steps // args.save_steps + 1
    print(
        f"{args.steps} SFT steps, {n_evals} evaluations (step 0 + every {args.save_steps} steps) of "
        f"tasks {args.tasks}, {args.limit} samples per dataset"
    )
    print("| run | train loop s | x no bridge | whole run s | x no bridge |")
    print("|---|---|---|---|---|")
    for mode, (train_s, total_s) in results.items():
        print(
            f"| {mode or 'no bridge'} | {train_s:.1f} | {train_s / base_train:.2f} | {total_s:.1f} | "
            f"{total_s / base_total:.2f} |"
        )


if __name__ == "__main__":
    main()
