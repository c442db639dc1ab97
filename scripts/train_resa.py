"""RESA: Reasoning-Enhanced Safety Alignment. SFT on reasoning traces, then DPO against harmful compliance and
over-refusal, with every checkpoint passed through the trust suite; ends by printing the trade-off table.

With no arguments: the offline CPU recipe on the embedded default model (built on first use).

Examples:
    accelerate launch scripts/train_resa.py
    accelerate launch scripts/train_resa.py --config configs/resa/default_cpu.yaml --sft_max_steps 20
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml scripts/train_resa.py \\
        --config configs/resa/llava15_7b_lora.yaml
    accelerate launch scripts/train_resa.py --resume_from_checkpoint last      # continue an interrupted run

Every field of resa/config.py is a flag (--sft_learning_rate 2e-4) and a YAML key (--config FILE).
"""

import logging
import sys

from resa.config import ResaConfig


def parse_args(argv=None) -> ResaConfig:
    """The recipe's config from YAML (--config) and flags."""
    from trl import TrlParser

    parser = TrlParser((ResaConfig,), description=__doc__)
    (cfg,) = parser.parse_args_and_config(argv)
    from eval_bridge.files import writable_dir

    try:
        writable_dir(cfg.output_dir, "output_dir")  # now, not after the data and the first training steps
    except OSError as err:
        parser.exit(2, f"error: {err}\n")
    return cfg


def main(argv=None) -> None:
    cfg = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from resa.recipe import run_resa

    table = run_resa(cfg)
    if table is not None:
        print("\nRESA trade-off (every checkpoint through the trust suite; deltas against step 0):\n")
        print(table)
        print(f"full report: {cfg.output_dir}/trust_eval/tradeoff.md, tradeoff.png, best_checkpoint.json")


if __name__ == "__main__":
    main()
