"""A tiny SFT -> DPO run of the shared training pipeline (LoRA, CPU) with the eval bridge in worker mode, as a script
the kill / resume tests launch:

    python tests/tiny_pipeline.py --model DIR --output_dir RUN [--pause_at_step N] [--resume_from_checkpoint last]

Every `TrainingConfig` field is a flag. With `--pause_at_step N` the run stops before optimizer step N + 1 (after
step N and its checkpoint, if one is due, counting steps across the stages as the trade-off table does), writes
`RUN/paused.json` and waits there to be killed: the test kills it at a known point instead of racing it.
"""

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from chat_rows import DPO_PAIRS, RED, assistant, user
from transformers import HfArgumentParser, TrainerCallback

from eval_bridge.bridge import SuiteSpec
from eval_bridge.files import write_atomically
from mitigation.training.config import TrainingConfig
from mitigation.training.pipeline import Stage, run_stages, start_run

SFT_STEPS, SFT_SAVE_STEPS = 4, 2
DPO_STEPS, DPO_SAVE_STEPS = 2, 1
SFT_ROWS = [
    {"messages": [user(f"What colour is it? {i}", i % 2 == 0), assistant("It is red.")], "images": [RED] * (i % 2 == 0)}
    for i in range(4)
]
# The trade-off rows of a finished run: step 0, every checkpoint, each stage's final model (steps across stages).
ROWS = [(0, "base"), (2, "sft"), (4, "sft"), (4, "sft (final)"), (5, "dpo"), (6, "dpo"), (6, "dpo (final)")]


@dataclass
class PauseOptions:
    """Where the run waits to be killed."""

    pause_at_step: int = field(default=-1, metadata={"help": "wait before this step + 1 (-1: never)"})


class PauseAt(TrainerCallback):
    """Before optimizer step `step` + 1 of the run, write `marker` and wait to be killed."""

    def __init__(self, step: int, offset: int, marker: Path):
        self.step, self.offset, self.marker = step, offset, marker

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + self.offset == self.step:
            where = json.dumps({"pid": os.getpid(), "step": self.step})
            write_atomically(self.marker, lambda tmp: tmp.write_text(where))
            while True:
                time.sleep(1)


def pausing(trainer_cls, pause: PauseAt):
    """`trainer_cls` with the pause callback (every run uses it, paused or not: the same code trains)."""

    class Pausing(trainer_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(pause)

    return Pausing


def stages(pause_at: int, marker: Path) -> list[Stage]:
    from trl import DPOTrainer, SFTTrainer

    sft = pausing(SFTTrainer, PauseAt(pause_at, 0, marker))
    dpo = pausing(DPOTrainer, PauseAt(pause_at, SFT_STEPS, marker))
    sizes = dict(learning_rate=5e-3, batch_size=2)
    return [
        Stage("sft", "sft", SFT_ROWS, max_steps=SFT_STEPS, save_steps=SFT_SAVE_STEPS, trainer_cls=sft, **sizes),
        Stage(
            "dpo",
            "dpo",
            DPO_PAIRS,
            max_steps=DPO_STEPS,
            save_steps=DPO_SAVE_STEPS,
            trainer_cls=dpo,
            **sizes,
            args={"beta": 0.1},
        ),
    ]


def main(argv=None) -> None:
    cfg, pause = HfArgumentParser((TrainingConfig, PauseOptions)).parse_args_into_dataclasses(argv)
    start_run(cfg)
    suite = SuiteSpec(
        tasks="none", tracks=("utility",), limit=2, max_new_tokens=4, cache_dir=str(Path(cfg.cache_dir) / "suite")
    )
    marker = Path(cfg.output_dir) / "paused.json"
    run_stages(cfg, stages(pause.pause_at_step, marker), cfg.model, suite)


if __name__ == "__main__":
    main()
