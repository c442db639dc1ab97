"""A tiny TRL SFT run with the eval bridge attached (imported by the bridge tests, and launched by them with
`accelerate launch` / as a script for the multi-process cases)."""

import argparse
import json
from pathlib import Path

from PIL import Image

from eval_bridge.bridge import SuiteSpec

SUITE = dict(tasks="T6,S4", limit=2, max_new_tokens=4)


def train(model_dir, out_dir, cache_dir, *, mode="sync", lora=False, report_to="none", max_steps=6, save_steps=2):
    """SFT a tiny VLM for `max_steps`, saving every `save_steps`; returns the trainer."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    from eval_bridge.callback import TrustEvalCallback

    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    rows = [
        {
            "messages": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"What colour is it? {i}"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "It is red."}]},
            ],
            "images": [Image.new("RGB", (32, 32), "red")],
        }
        for i in range(8)
    ]
    args = SFTConfig(
        output_dir=str(out_dir),
        max_steps=max_steps,
        save_steps=save_steps,
        per_device_train_batch_size=2,
        learning_rate=5e-2 if lora else 1e-2,
        report_to=report_to,
        max_length=None,
        logging_steps=1,
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
    )
    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]) if lora else None
    callback = TrustEvalCallback(SuiteSpec(cache_dir=str(cache_dir), **SUITE), mode=mode, base_model=str(model_dir))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        peft_config=peft_config,
        callbacks=[callback],
    )
    trainer.train()
    return trainer


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("model_dir")
    p.add_argument("out_dir")
    p.add_argument("cache_dir")
    p.add_argument("--mode", default="worker")
    p.add_argument("--lora", action="store_true")
    p.add_argument("--max-steps", type=int, default=6)
    a = p.parse_args()
    trainer = train(a.model_dir, a.out_dir, a.cache_dir, mode=a.mode, lora=a.lora, max_steps=a.max_steps)
    # One file per rank: lines two processes print to one pipe can interleave (a flake seen in CI).
    rank = trainer.args.process_index
    (Path(a.out_dir) / f"rank-{rank}.json").write_text(json.dumps({"rank": rank, "world": trainer.args.world_size}))
