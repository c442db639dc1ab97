"""Bad training input is refused before any step runs: a max_length that cuts into image tokens, an output
directory that cannot be written (the pipeline and scripts/train_mitigation.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from chat_rows import RED, assistant, user

from eval_bridge.models.adapter import load_pretrained
from mitigation.training.config import TrainingConfig
from mitigation.training.pipeline import Stage, check_max_length, start_run, train_stage

REPO = Path(__file__).resolve().parents[3]
ROWS = [
    {"messages": [user("Hi", image=False), assistant("Hello.")], "images": []},
    {"messages": [user("What colour is it?"), assistant("It is red.")], "images": [RED]},
]


def test_max_length_shorter_than_the_image_tokens_is_refused_before_training(tiny_model_dirs, tmp_path):
    config = TrainingConfig(output_dir=str(tmp_path / "run"), report_to="none", lora_r=2, lora_alpha=4)
    stage = Stage("sft", "sft", ROWS, learning_rate=1e-3, max_steps=1, batch_size=2, args={"max_length": 12})
    with pytest.raises(ValueError) as err:
        train_stage(config, stage, str(tiny_model_dirs["llava"]), tmp_path / "run" / "sft")
    # The tiny LLaVA turns a 32x32 image into 16 tokens; row 0 has no image.
    assert str(err.value).startswith("stage 'sft': max_length=12 is not longer than the 16 image tokens of row 1")
    assert "Set max_length to None" in str(err.value)
    assert not list((tmp_path / "run" / "sft").glob("checkpoint-*"))
    _, processor = load_pretrained(str(tiny_model_dirs["llava"]))
    check_max_length(64, processor, stage)  # room for the image tokens and the text: fine
    check_max_length(None, processor, stage)


def test_an_unwritable_output_dir_is_refused_when_the_run_starts(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OSError, match=r"output_dir .*a-file/run: cannot write there .*pass a folder you can write to"):
        start_run(TrainingConfig(output_dir=str(tmp_path / "a-file" / "run"), report_to="none"))


@pytest.mark.parametrize(
    ("command", "prefix"),
    [(["scripts/train_mitigation.py", "--method", "resa"], "method 'resa': "), (["scripts/train_resa.py"], "")],
)
def test_train_mitigation_refuses_an_unwritable_output_dir_in_one_line(tmp_path, command, prefix):
    (tmp_path / "a-file").write_text("")
    proc = subprocess.run(
        [sys.executable, *command, "--output_dir", str(tmp_path / "a-file/x")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {prefix}output_dir {tmp_path / 'a-file/x'}: cannot write there (Not a directory); "
        "pass a folder you can write to"
    )
