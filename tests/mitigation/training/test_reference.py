"""Precomputed-reference DPO on a tiny VLM: the same loss and the same trained weights as TRL's DPO with its
in-memory reference copy, images included; the reference values are cached on disk and recomputed when the data
or the model changes; and no reference model exists while training."""

import gc
import math

import pytest
import torch
from chat_rows import DPO_PAIRS, assistant, user
from datasets import Dataset
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import DPOConfig, DPOTrainer

from mitigation.training.reference import PrecomputedRefDPOTrainer, dataset_digest

BLUE = Image.new("RGB", (48, 40), "blue")


ROWS = [
    *DPO_PAIRS,
    {
        "prompt": [user("Is there a square in the picture? Answer in one word.")],
        "chosen": [assistant("No.")],
        "rejected": [assistant("Yes, there is a large square on the left.")],
        "images": [BLUE],
    },
    {
        "prompt": [user("Name the colour.")],
        "chosen": [assistant("Blue.")],
        "rejected": [assistant("Green, like grass.")],
        "images": [BLUE],
    },
]


def config(tmp_path, **overrides):
    base = dict(
        output_dir=str(tmp_path),
        report_to="none",
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        max_steps=3,
        max_length=None,
        beta=0.1,
        seed=0,
        data_seed=0,
        use_cpu=True,
        bf16=False,  # TRL defaults to bf16; float32 keeps the comparisons tight
        dataloader_num_workers=0,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    base.update(overrides)
    return DPOConfig(**base)


def load(model_dir):
    return AutoModelForImageTextToText.from_pretrained(model_dir), AutoProcessor.from_pretrained(model_dir)


def precomputed(model_dir, tmp_path, rows=ROWS, model=None, **overrides):
    loaded, processor = load(model_dir)
    return PrecomputedRefDPOTrainer(
        model=model or loaded,
        args=config(tmp_path / "run", **overrides),
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        ref_cache_dir=str(tmp_path / "cache"),
    )


def in_memory(model_dir, tmp_path, rows=ROWS, **overrides):
    model, processor = load(model_dir)
    return DPOTrainer(
        model=model,
        args=config(tmp_path / "trl", **overrides),
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
    )


def perturb(model, seed=1, scale=0.05):
    """Move the policy away from the reference, the same way in both trainers (else every loss is log 2)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


def fixed_batch(trainer, rows):
    """All rows as one collated batch, through the trainer's own collator (TRL's vision collator inside)."""
    dataset = trainer.train_dataset
    examples = [dataset[i] for i in range(len(rows))]
    return trainer._prepare_inputs(trainer.data_collator(examples))


def test_trl_refuses_to_precompute_for_images(tiny_model_dirs, tmp_path):
    # The reason this trainer exists: TRL keeps a reference copy for vision data.
    model, processor = load(tiny_model_dirs["llava"])
    with pytest.raises(ValueError, match="not supported for vision datasets"):
        DPOTrainer(
            model=model,
            args=config(tmp_path, precompute_ref_log_probs=True),
            train_dataset=Dataset.from_list(ROWS),
            processing_class=processor,
        )


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_loss_on_a_fixed_batch_equals_the_in_memory_reference(tiny_model_dirs, tmp_path, family):
    ours, theirs = precomputed(tiny_model_dirs[family], tmp_path), in_memory(tiny_model_dirs[family], tmp_path)
    assert "ref_chosen_logps" in ours.train_dataset.column_names
    for trainer in (ours, theirs):
        perturb(trainer.model)
    batch = fixed_batch(ours, ROWS)
    assert batch["pixel_values"].shape[0] > 0, "the batch holds images"
    assert batch["ref_chosen_logps"].shape == (len(ROWS),), "TRL's own key names reach the loss"
    their_batch = fixed_batch(theirs, ROWS)
    assert "ref_chosen_logps" not in their_batch
    # TRL's reference forward on the same batch gives the precomputed values.
    ref_chosen, ref_rejected = theirs.compute_ref_log_probs(theirs.ref_model, their_batch)
    assert torch.allclose(batch["ref_chosen_logps"], ref_chosen, atol=1e-5)
    assert torch.allclose(batch["ref_rejected_logps"], ref_rejected, atol=1e-5)

    losses = []
    for trainer, inputs in ((ours, batch), (theirs, their_batch)):
        trainer.model.train()
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
        losses.append((loss.detach(), grad))
    (our_loss, our_grad), (their_loss, their_grad) = losses
    assert abs(our_loss.item() - math.log(2)) > 1e-3, "policy != reference, so the test can tell them apart"
    assert torch.allclose(our_loss, their_loss, atol=1e-6)
    assert torch.allclose(our_grad, their_grad, atol=1e-6, rtol=1e-5)


def test_trained_weights_match_the_in_memory_reference(tiny_model_dirs, tmp_path):
    ours, theirs = precomputed(tiny_model_dirs["llava"], tmp_path), in_memory(tiny_model_dirs["llava"], tmp_path)
    before = {k: v.clone() for k, v in ours.model.state_dict().items()}
    ours.train()
    theirs.train()
    assert ours.state.global_step == theirs.state.global_step == 3
    mine, trl_weights = ours.model.state_dict(), theirs.model.state_dict()
    assert any(not torch.equal(mine[k], before[k]) for k in before), "training moved the weights"
    for key in mine:
        assert torch.allclose(mine[key], trl_weights[key], atol=1e-5), key
    our_losses = [h["loss"] for h in ours.state.log_history if "loss" in h]
    their_losses = [h["loss"] for h in theirs.state.log_history if "loss" in h]
    assert our_losses == pytest.approx(their_losses, abs=1e-5)


def test_cache_is_reused_and_invalidated_by_data_or_model(tiny_model_dirs, tmp_path, monkeypatch):
    calls = []
    original = PrecomputedRefDPOTrainer.reference_terms

    def counting(self, model, batch):
        calls.append(batch["input_ids"].shape[0])
        return original(self, model, batch)

    monkeypatch.setattr(PrecomputedRefDPOTrainer, "reference_terms", counting)
    model_dir = tiny_model_dirs["llava"]
    first = precomputed(model_dir, tmp_path)
    assert len(calls) == 2  # 4 rows, batches of 2
    files = sorted((tmp_path / "cache").glob("*.safetensors"))
    assert len(files) == 1

    second = precomputed(model_dir, tmp_path)  # same model, rows, settings: read from disk
    assert len(calls) == 2
    for column in ("ref_chosen_logps", "ref_rejected_logps"):
        assert list(second.train_dataset[column]) == list(first.train_dataset[column])

    changed_rows = [dict(r) for r in ROWS]
    changed_rows[2] = dict(ROWS[2], images=[Image.new("RGB", (48, 40), "green")])  # only an image differs
    assert dataset_digest(Dataset.from_list(changed_rows)) != dataset_digest(Dataset.from_list(ROWS))
    precomputed(model_dir, tmp_path, rows=changed_rows)
    assert len(calls) == 4

    model, _ = load(model_dir)
    perturb(model, scale=1e-3)
    precomputed(model_dir, tmp_path, model=model)
    assert len(calls) == 6

    precomputed(model_dir, tmp_path, max_length=64)  # a setting that changes the log-probs
    assert len(calls) == 8
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 4
    # The first entry still hits: new entries sit next to it, each under its own key.
    precomputed(model_dir, tmp_path)
    assert len(calls) == 8


def live_models(cls):
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is cls)


def test_no_reference_model_exists(tiny_model_dirs, tmp_path):
    model, processor = load(tiny_model_dirs["llava"])
    cls = type(model)
    base = live_models(cls)
    trainer = PrecomputedRefDPOTrainer(
        model=model,
        args=config(tmp_path / "run"),
        train_dataset=Dataset.from_list(ROWS),
        processing_class=processor,
        ref_cache_dir=str(tmp_path / "cache"),
    )
    assert trainer.ref_model is None
    assert live_models(cls) == base, "no second copy of the model"
    params = {p.data_ptr() for p in trainer.model.parameters()}
    trainer.train()
    assert live_models(cls) == base
    assert trainer.ref_model is None and {p.data_ptr() for p in trainer.model.parameters()} == params
    # The check can fail: TRL's own trainer holds a second copy.
    theirs = in_memory(tiny_model_dirs["llava"], tmp_path)
    assert theirs.ref_model is not None and live_models(cls) == base + 2


def test_lora_keeps_trls_adapter_disabled_reference(tiny_model_dirs, tmp_path):
    from peft import LoraConfig

    model, processor = load(tiny_model_dirs["llava"])
    trainer = PrecomputedRefDPOTrainer(
        model=model,
        args=config(tmp_path / "run"),
        train_dataset=Dataset.from_list(ROWS),
        processing_class=processor,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        ref_cache_dir=str(tmp_path / "cache"),
    )
    assert trainer.ref_model is None and not trainer.precompute_ref_logps
    assert "ref_chosen_logps" not in trainer.train_dataset.column_names
    assert not (tmp_path / "cache").exists()
    trainer.train()
    assert trainer.state.global_step == 3


def test_evaluation_uses_the_precomputed_reference(tiny_model_dirs, tmp_path):
    model_dir = tiny_model_dirs["llava"]
    model, processor = load(model_dir)
    ours = PrecomputedRefDPOTrainer(
        model=model,
        args=config(tmp_path / "run", per_device_eval_batch_size=2),
        train_dataset=Dataset.from_list(ROWS),
        eval_dataset=Dataset.from_list(ROWS[:2]),  # precomputed at init, as TRL does for text
        processing_class=processor,
        ref_cache_dir=str(tmp_path / "cache"),
    )
    theirs = in_memory(model_dir, tmp_path, per_device_eval_batch_size=2)
    for trainer in (ours, theirs):
        perturb(trainer.model)
    at_init = ours.evaluate()["eval_loss"]
    handed_in = ours.evaluate(Dataset.from_list(ROWS[:2]))["eval_loss"]  # computed on the spot (step 0)
    assert at_init == pytest.approx(theirs.evaluate(Dataset.from_list(ROWS[:2]))["eval_loss"], abs=1e-6)
    assert handed_in == pytest.approx(at_init, abs=1e-6) and abs(at_init - math.log(2)) > 1e-3


WORKER = """
import json, sys
from datasets import load_from_disk
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import DPOConfig
from mitigation.training.reference import PrecomputedRefDPOTrainer

model_dir, data_dir, out = sys.argv[1:4]
rows = []
original = PrecomputedRefDPOTrainer.reference_terms
def counting(self, model, batch):
    rows.append(batch["input_ids"].shape[0] // 2)  # the batch is [chosen..., rejected...]
    return original(self, model, batch)
PrecomputedRefDPOTrainer.reference_terms = counting
for attempt in ("first", "second"):
    trainer = PrecomputedRefDPOTrainer(
        model=AutoModelForImageTextToText.from_pretrained(model_dir),
        args=DPOConfig(output_dir=out + "/run", per_device_train_batch_size=1, use_cpu=True, bf16=False,
                       report_to="none", max_length=None, disable_tqdm=True),
        train_dataset=load_from_disk(data_dir),
        processing_class=AutoProcessor.from_pretrained(model_dir),
        ref_cache_dir=out + "/cache",
    )
    acc = trainer.accelerator
    data = trainer.train_dataset
    result = {"world": acc.num_processes, "rows": sum(rows), "ref_model": trainer.ref_model is not None,
              "chosen": list(data["ref_chosen_logps"]), "rejected": list(data["ref_rejected_logps"])}
    with open(f"{out}/{attempt}-rank{acc.process_index}.json", "w") as f:
        json.dump(result, f)
    rows.clear()
"""


def test_two_processes_each_compute_their_shard_and_share_one_cache(tiny_model_dirs, tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    model_dir = tiny_model_dirs["llava"]
    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "data"))
    (tmp_path / "worker.py").write_text(WORKER)
    repo = Path(__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    with socket.socket() as sock:  # a free port: other test runs may share this machine
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    cmd += [str(tmp_path / "worker.py"), str(model_dir), str(tmp_path / "data"), str(tmp_path)]
    subprocess.run(cmd, check=True, env=env, cwd=tmp_path, timeout=600)

    single = precomputed(model_dir, tmp_path / "single", per_device_train_batch_size=1).train_dataset
    first = [json.loads((tmp_path / f"first-rank{r}.json").read_text()) for r in (0, 1)]
    second = [json.loads((tmp_path / f"second-rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in first] == [2, 2]
    assert [r["rows"] for r in first] == [2, 2], "each rank computed its half of the 4 rows"
    assert [r["rows"] for r in second] == [0, 0], "the second trainer read the cache on both ranks"
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    for result in first + second:
        assert not result["ref_model"]
        assert result["chosen"] == pytest.approx(list(single["ref_chosen_logps"]), abs=1e-5)
        assert result["rejected"] == pytest.approx(list(single["ref_rejected_logps"]), abs=1e-5)
