"""DeepSpeed ZeRO-2 / ZeRO-3 training through the shipped accelerate configs, as users launch it, and the pieces
that make it work (mitigation/training/deepspeed.py).

The two launch tests run RESA (SFT then DPO) on the tiny LLaVA with two CPU processes and the bridge in worker
mode; about 1.5 min each on 2 cores (the first DeepSpeed run on a machine also JIT-compiles a comm op, ~30 s).
"""

import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image
from resa_launch import REPO, launch_env, resa_launch_command

from eval_bridge.bridge import completed
from eval_bridge.models.tiny import FAMILIES, IMAGE_PLACEHOLDER
from mitigation.training.deepspeed import ddp_backend, full_parameters, run_vision_tower_every_step

# --- the pieces, in one process --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "cuda", "expected"),
    [
        ({"ACCELERATE_USE_DEEPSPEED": "true", "WORLD_SIZE": "2"}, False, "gloo"),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "WORLD_SIZE": "2"}, True, None),  # accelerate picks nccl itself
        ({"ACCELERATE_USE_DEEPSPEED": "true", "WORLD_SIZE": "1"}, False, None),
        ({"WORLD_SIZE": "2"}, False, None),  # plain multi-process runs are left to accelerate
    ],
)
def test_ddp_backend_is_gloo_only_for_several_cpu_processes_under_deepspeed(monkeypatch, env, cuda, expected):
    for key in ("ACCELERATE_USE_DEEPSPEED", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert ddp_backend() == expected


def test_full_parameters_is_a_no_op_without_zero3():
    model = torch.nn.Linear(2, 2)
    with full_parameters(model) as inside:
        assert inside is model


def _module_order(model, **inputs) -> list[str]:
    """Names of the modules a forward pass runs, in the order they start."""
    order = []
    hooks = [
        module.register_forward_pre_hook(lambda m, a, name=name: order.append(name))
        for name, module in model.named_modules()
    ]
    try:
        model(**inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return order


@pytest.mark.parametrize("family", FAMILIES)
def test_text_only_batches_run_the_vision_tower_as_image_batches_do_and_change_nothing(tiny_model_dirs, family):
    """DeepSpeed needs every rank to run the same modules in the same order (ZeRO-3 gathers weights per module,
    ZeRO-1/2 reduce gradients in ready order). With the hook a text-only forward runs exactly the modules of an
    image forward, in the same order, with the same logits and language-model gradients as without it."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs[family]).eval()
    processor = AutoProcessor.from_pretrained(tiny_model_dirs[family])
    text = processor(text=["Is this safe to do? Explain."], return_tensors="pt")
    image = processor(
        text=[f"{IMAGE_PLACEHOLDER[family]}Is this safe to do? Explain."],
        images=[Image.new("RGB", (40, 40), "red")],
        return_tensors="pt",
    )
    before = model(**text).logits
    loss_before = before.float().logsumexp(-1).mean()
    loss_before.backward()
    grads_before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    assert run_vision_tower_every_step(model, processor)
    with_image = _module_order(model, **image)
    text_only = _module_order(model, **text)
    assert text_only == with_image, f"text-only order {text_only}\n!= image order {with_image}"

    after = model(**text).logits
    assert torch.equal(after, before)
    after.float().logsumexp(-1).mean().backward()
    grads_after = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads_before) < set(grads_after)  # the vision tower now gets (zero) gradients too
    for name, grad in grads_after.items():
        expected = grads_before.get(name, torch.zeros_like(grad))
        assert torch.allclose(grad, expected, atol=1e-7), name


# --- two processes under accelerate launch ---------------------------------------------------------------------


def _launch(stage: int, port: int, model_dir, run, *extra) -> subprocess.CompletedProcess:
    launch = ["--config_file", f"configs/accelerate/deepspeed_zero{stage}.yaml", "--num_processes", "2"]
    launch += ["--main_process_port", str(port)]
    cmd = resa_launch_command(launch, model_dir, run, "--eval_mode", "worker", *extra)
    env = launch_env()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, f"ZeRO-{stage} run failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}"
    assert proc.stdout.count("RESA trade-off") == 1, "the table must be printed by the main process only"
    return proc


def _state_dict(model_dir) -> dict:
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(model_dir).state_dict()


def _max_difference(a: dict, b: dict) -> float:
    assert set(a) == set(b), f"different parameters: {sorted(set(a) ^ set(b))[:10]}"
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _assert_evaluated_in_worker_mode(run: Path, expected_steps, proc) -> list[dict]:
    records = completed(run)
    rows = [(r["step"], r["stage"], r["final"]) for r in records]
    assert rows == expected_steps, proc.stderr[-3000:]
    assert [r["error"] for r in records] == [None] * len(records), records
    assert (run / "trust_eval" / "worker.log").is_file(), "no bridge worker ran"
    assert records[-1]["model"] == str(run / "dpo" / "final")
    return records


def test_zero2_lora_sft_then_dpo(tiny_model_dirs, tmp_path):
    pytest.importorskip("deepspeed", reason="DeepSpeed not installed (DS_BUILD_OPS=0 pip install deepspeed)")
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    run = tmp_path / "run"
    proc = _launch(2, 29581, tiny_model_dirs["llava"], run, "--sft_save_steps", "2")
    # step 0 (base), the SFT checkpoints at steps 2 and 4, the SFT final model (4, its own row), the DPO final model
    # (4 + 2): each evaluated exactly once.
    expected = [(0, "base", False), (2, "sft", False), (4, "sft", False), (4, "sft", True), (6, "dpo", True)]
    _assert_evaluated_in_worker_mode(run, expected, proc)
    # The merged SFT model is the base plus the adapter of the last checkpoint, merged here on one process.
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs["llava"])
    merged = PeftModel.from_pretrained(base, run / "sft" / "checkpoint-4").merge_and_unload().state_dict()
    assert _max_difference(_state_dict(run / "sft" / "final"), merged) < 1e-6
    assert _max_difference(_state_dict(run / "dpo" / "final"), merged) > 0, "DPO changed nothing"


def test_zero3_full_sft_then_dpo_saves_the_gathered_weights(tiny_model_dirs, tmp_path):
    pytest.importorskip("deepspeed", reason="DeepSpeed not installed (DS_BUILD_OPS=0 pip install deepspeed)")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    run = tmp_path / "run"
    proc = _launch(3, 29582, tiny_model_dirs["llava"], run, "--use_lora", "false", "--sft_save_steps", "4")
    expected = [(0, "base", False), (4, "sft", False), (4, "sft", True), (6, "dpo", True)]
    records = _assert_evaluated_in_worker_mode(run, expected, proc)
    # Step 4 is both the last checkpoint and the final model (same weights): each has its own row.
    assert [records[1]["model"], records[2]["model"]] == [str(run / "sft" / "checkpoint-4"), str(run / "sft" / "final")]
    # The final model (gathered from the ZeRO-3 shards at the end) is the last checkpoint's fp32 weights, which
    # deepspeed rebuilds from the optimizer shards; it reloads with from_pretrained and was trained.
    sharded = get_fp32_state_dict_from_zero_checkpoint(str(run / "sft" / "checkpoint-4"))
    final = _state_dict(run / "sft" / "final")
    assert _max_difference(final, sharded) < 1e-6
    assert all(t.numel() > 0 for t in final.values()), "a partitioned (empty) parameter was saved"
    base = _state_dict(tiny_model_dirs["llava"])
    changed = [k for k in final if not torch.equal(final[k], base[k])]
    assert any("language_model" in k for k in changed) and any("vision_tower" in k for k in changed), changed
    assert _max_difference(_state_dict(run / "dpo" / "final"), final) > 0, "DPO changed nothing"


def test_zero3_lora_merges_the_gathered_adapter(tiny_model_dirs, tmp_path):
    """ZeRO-3 + LoRA: the final model is the base plus the trained adapter, merged from gathered (not sharded)
    weights; it equals the last checkpoint's adapter merged on one process."""
    pytest.importorskip("deepspeed", reason="DeepSpeed not installed (DS_BUILD_OPS=0 pip install deepspeed)")
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    run = tmp_path / "run"
    proc = _launch(3, 29583, tiny_model_dirs["llava"], run, "--sft_save_steps", "4")
    expected = [(0, "base", False), (4, "sft", False), (4, "sft", True), (6, "dpo", True)]
    _assert_evaluated_in_worker_mode(run, expected, proc)
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs["llava"])
    merged = PeftModel.from_pretrained(base, run / "sft" / "checkpoint-4").merge_and_unload().state_dict()
    final = _state_dict(run / "sft" / "final")
    assert all(t.numel() > 0 for t in final.values()), "a partitioned (empty) parameter was saved"
    assert _max_difference(final, merged) < 1e-6
    assert _max_difference(final, _state_dict(tiny_model_dirs["llava"])) > 0, "the merged LoRA changed nothing"
