"""`TrustEvalCallback`: every checkpoint a `transformers.Trainer` (or TRL trainer) saves goes through the suite.

    trainer = SFTTrainer(..., callbacks=[TrustEvalCallback(SuiteSpec(tasks="safety,T1"))])

On `on_save` (world process zero only) the callback queues a manifest for the new checkpoint; in the default
`worker` mode a separate worker process evaluates the queue while training goes on, in `sync` mode the
callback evaluates before training resumes (tests, tiny runs). The starting model is queued as step 0, the
run's baseline. Results are logged to the run's trackers as `trust/<aspect>`, `trust/<risk type>`,
`trust/xm/<task>/<pair>` (cross-modal differences), `trust/overall` (only when all 32 tasks ran) and `utility/*`
against the checkpoint's step, and the run ends with its trade-off table (`tradeoff.py`).

A worker that exits non-zero (a crash, the out-of-memory killer) is reported as an error naming its log; the next
checkpoint starts a new worker, which takes the dead one's claim back. At the end of training, the checkpoints not
evaluated are listed with how to finish them (`scripts/report.py RUN --resume`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from transformers import TrainerCallback

from eval_bridge.bridge import Manifest, SuiteSpec, bridge_dir, completed, drain, enqueue, pending, unfinished

log = logging.getLogger(__name__)

# Launcher variables that would make the worker try to join the training's process group.
_DIST_ENV = (
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "ACCELERATE_USE_DEEPSPEED",
    "ACCELERATE_DEEPSPEED_ZERO_STAGE",
)


def _is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def _accelerate_deepspeed_config() -> dict:
    """The DeepSpeed config of accelerate's DeepSpeed plugin (`accelerate launch --config_file <deepspeed yaml>`)."""
    try:
        from accelerate.state import AcceleratorState
    except ImportError:
        return {}
    if not AcceleratorState._shared_state:  # no accelerator yet: reading the state would create one
        return {}
    plugin = getattr(AcceleratorState(), "deepspeed_plugin", None)
    return getattr(plugin, "deepspeed_config", None) or {}


def _zero3_config(args) -> dict | None:
    """The DeepSpeed ZeRO-3 section of the run's DeepSpeed config, if training under ZeRO-3.

    The config is on the training arguments when they name it (`deepspeed=...`), and on accelerate's DeepSpeed
    plugin when `accelerate launch` does (the shipped configs/accelerate/deepspeed_zero3.yaml)."""
    hf_ds = getattr(args, "hf_deepspeed_config", None)
    config = getattr(hf_ds, "config", None) or _accelerate_deepspeed_config()
    zero = config.get("zero_optimization", {})
    return zero if zero.get("stage") == 3 else None


class TrustEvalCallback(TrainerCallback):
    """Pass every saved checkpoint (and the starting model) to the trust suite.

    Args:
        suite: what to run on each checkpoint (`SuiteSpec`: suite, tasks, limit, judges, device, ...).
        base_model: the base model of LoRA checkpoints and the step-0 model; default: the path the trained
            model was loaded from (`config._name_or_path`, or the PEFT base).
        mode: "worker" (default; a separate process evaluates while training continues) or "sync".
        evaluate_start: also evaluate the starting model as step 0 (the baseline of the trade-off table).
        wait_at_end: at the end of training, wait for the worker to finish and write the trade-off report.
        report: options for the trade-off report (`tradeoff.write_report`): e.g. {"utility_tolerance": 5.0}.
        run_dir: where the queue and the trade-off report live (default: the trainer's output_dir). Several
            stages of one recipe share it, with `step_offset` keeping their steps apart.
        step_offset: added to the trainer's global step (a later stage continues the earlier one's steps).
        stage: label of this stage in the trade-off table ("sft", "dpo", ...); step 0 is labelled "base".
        stale_claim_after_s: the worker takes back claims of another host's workers (which it cannot check)
            older than this (default: never; a dead worker of this host is always detected).
    """

    def __init__(
        self,
        suite: SuiteSpec | None = None,
        *,
        base_model: str | None = None,
        mode: str = "worker",
        evaluate_start: bool = True,
        wait_at_end: bool = True,
        report: dict | None = None,
        run_dir: str | None = None,
        step_offset: int = 0,
        stage: str = "",
        stale_claim_after_s: float | None = None,
    ):
        if mode not in ("worker", "sync"):
            raise ValueError(f"mode must be 'worker' or 'sync', got {mode!r}")
        self.suite = suite or SuiteSpec()
        self.base_model = base_model
        self.mode = mode
        self.evaluate_start = evaluate_start
        self.wait_at_end = wait_at_end
        self.report_options = report or {}
        self.run_dir: Path | None = Path(run_dir) if run_dir else None
        self.step_offset = step_offset
        self.stage = stage
        self.stale_claim_after_s = stale_claim_after_s
        self.worker: subprocess.Popen | None = None
        self._reported_worker: subprocess.Popen | None = None
        self._logged: set[tuple[int, bool]] = set()
        self._last_poll = 0.0
        self._trackers: list = []

    # --- training events --------------------------------------------------------------------------------------

    def configure_stage(self, stage: str, *, base_model: str, step_offset: int, evaluate_start: bool) -> None:
        """Point the callback at the next stage of a multi-stage run (one callback, one worker, one table)."""
        self.stage, self.base_model = stage, base_model
        self.step_offset, self.evaluate_start = step_offset, evaluate_start

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.run_dir = self.run_dir or Path(args.output_dir)
        if self.mode == "sync" and getattr(args, "world_size", 1) > 1:
            raise ValueError(
                f"mode='sync' evaluates inside one training process, but this run has {args.world_size} processes "
                "(the others would wait on it, or time out): use mode='worker' (eval_mode worker or auto)"
            )
        zero3 = _zero3_config(args)
        if zero3 is not None:
            if not zero3.get("stage3_gather_16bit_weights_on_model_save", False):
                raise ValueError(
                    "TrustEvalCallback under DeepSpeed ZeRO-3 needs full 16-bit weights in each checkpoint: set "
                    '"stage3_gather_16bit_weights_on_model_save": true in the zero_optimization section of your '
                    "DeepSpeed config (otherwise checkpoints hold only sharded states the suite cannot load)"
                )
            if self.mode == "sync":
                raise ValueError(
                    "mode='sync' evaluates inside the training process, which can hang under ZeRO-3; "
                    "use mode='worker' (the default)"
                )
        if args.save_total_limit and self.mode == "worker":
            log.warning(
                "save_total_limit=%s may delete a checkpoint before the worker evaluates it; such "
                "checkpoints are recorded as failed",
                args.save_total_limit,
            )
        if self.suite.server and model is not None and not getattr(model, "peft_config", None):
            raise ValueError(
                f"eval server {self.suite.server}: a server cannot swap full weights, so it can only evaluate LoRA "
                "checkpoints; train with LoRA (use_lora) or evaluate in the worker without a server"
            )
        if not state.is_world_process_zero:
            return
        if self.base_model is None and model is not None:
            self.base_model = _base_model_path(model)
        if self.suite.server and self.suite.server_base is None:
            self.suite = replace(self.suite, server_base=self.base_model)  # the first stage's base is the served one
        (bridge_dir(self.run_dir) / "STOP").unlink(missing_ok=True)
        self._trackers = _trackers(args)
        if self.mode == "worker" and (self.worker is None or self.worker.poll() is not None) and pending(self.run_dir):
            self._start_worker()  # a resumed run: what the killed one left queued is evaluated from the start
        if self.evaluate_start and state.global_step == 0:
            if self.base_model is None:
                raise ValueError("cannot evaluate the starting model: pass base_model= (a path or hub id)")
            step = self.step_offset
            out = bridge_dir(self.run_dir) / "results" / f"step-{step}"
            self._submit(Manifest(step, self.base_model, None, str(out), self.suite, stage="base"))

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if _is_adapter_dir(checkpoint):
            if self.base_model is None:
                raise ValueError(f"{checkpoint} holds a LoRA adapter: pass base_model= to TrustEvalCallback")
            model, adapter = self.base_model, str(checkpoint)
        else:
            model, adapter = str(checkpoint), None
        step = state.global_step + self.step_offset
        self._submit(Manifest(step, model, adapter, str(checkpoint / "trust_eval"), self.suite, stage=self.stage))
        self._log_new_results()

    def on_log(self, args, state, control, **kwargs):
        if state.is_world_process_zero and time.monotonic() - self._last_poll > 10:
            self._check_worker()
            self._log_new_results()

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.run_dir is None:
            return
        if not self.wait_at_end:
            return
        self.finish()
        from eval_bridge.tradeoff import write_report

        table = write_report(self.run_dir, **self.report_options)
        print(table)

    def submit(self, model_dir: str | Path, step: int, stage: str | None = None, *, final: bool = False) -> None:
        """Queue a model directory saved outside the trainer's checkpoints (e.g. a stage's merged final model).

        With `final=True` it gets its own row even when a checkpoint was saved at the same step."""
        if self.run_dir is None:
            raise ValueError("submit() needs run_dir (pass it to TrustEvalCallback or train first)")
        out = Path(model_dir) / "trust_eval"
        manifest = Manifest(step, str(model_dir), None, str(out), self.suite, stage=stage or self.stage, final=final)
        self._submit(manifest)

    # --- helpers ----------------------------------------------------------------------------------------------

    def _submit(self, manifest: Manifest) -> None:
        enqueue(self.run_dir, manifest)
        if self.mode == "sync":
            drain(self.run_dir, stale_after_s=self.stale_claim_after_s)
            return
        self._check_worker()
        if self.worker is None or self.worker.poll() is not None:
            self._start_worker()

    def _start_worker(self) -> None:
        bridge_dir(self.run_dir).mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in _DIST_ENV}
        if self.suite.device in (None, "cpu") and not _cuda_available():
            # On a CPU-only machine the worker shares the cores with training: one thread keeps it from
            # oversubscribing them (training threads stalled behind the worker's cost far more than its speed).
            env.setdefault("OMP_NUM_THREADS", "1")
        command = [sys.executable, "-m", "eval_bridge.bridge", str(self.run_dir), "--parent-pid", str(os.getpid())]
        if self.stale_claim_after_s is not None:
            command += ["--stale-claim-after", str(self.stale_claim_after_s)]
        with open(bridge_dir(self.run_dir) / "worker.log", "a") as log_file:  # the worker keeps its own copy
            self.worker = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)

    def _check_worker(self) -> None:
        """Log an error (once per worker) if the worker exited non-zero: crashed, killed, out of memory."""
        code = None if self.worker is None else self.worker.poll()
        if not code or self.worker is self._reported_worker:
            return
        self._reported_worker = self.worker
        how = f"exited with code {code}"
        if code < 0:
            how = f"was killed by signal {-code} ({signal.Signals(-code).name})"
        log.error(
            "the eval-bridge worker (pid %d) %s; see its log %s. A new worker starts with the next checkpoint and "
            "evaluates what it left; after training: python scripts/report.py %s --resume",
            self.worker.pid,
            how,
            bridge_dir(self.run_dir) / "worker.log",
            self.run_dir,
        )

    def finish(self) -> None:
        """Tell the worker no more checkpoints are coming, wait for the queue, log what is new, and report (as an
        error) each checkpoint left unevaluated, why, and how to finish it."""
        if self.run_dir is None:
            return
        (bridge_dir(self.run_dir) / "STOP").touch()
        self.wait()
        self._check_worker()
        self._log_new_results()
        left = unfinished(self.run_dir)
        if left:
            log.error(
                "%d checkpoint(s) were not evaluated: %s. Finish them with: python scripts/report.py %s --resume",
                len(left),
                "; ".join(f"step {r['step']} ({_label(r)}): {r['error']}" for r in left),
                self.run_dir,
            )

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until the queue is evaluated (the worker exits once STOP is written and the queue is empty)."""
        if self.worker is None:
            return
        n = len(pending(self.run_dir))
        if n:
            print(f"waiting for the eval bridge to evaluate {n} queued checkpoint(s)...", file=sys.stderr)
        self.worker.wait(timeout=timeout_s)

    def _log_new_results(self) -> None:
        self._last_poll = time.monotonic()
        if self.run_dir is None:
            return
        for record in completed(self.run_dir):
            step = record["step"]
            key = (step, record.get("final", False))
            if key in self._logged or record.get("error"):
                continue
            self._logged.add(key)
            metrics = {
                f"trust/{k}": v
                for k, v in record["headline"].items()
                if k not in ("utility", "over_refusal") and v is not None
            }
            metrics.update(
                {
                    f"utility/{k}": v
                    for k, v in record["headline"].items()
                    if k in ("utility", "over_refusal") and v is not None
                }
            )
            for tracker in self._trackers:
                tracker(metrics, step)


def _label(record: dict) -> str:
    return (record.get("stage") or "?") + (", final" if record.get("final") else "")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _base_model_path(model) -> str | None:
    """Where the trained model was loaded from (the PEFT base for adapters)."""
    peft_config = getattr(model, "peft_config", None)
    if peft_config:
        base = next(iter(peft_config.values())).base_model_name_or_path
        if base:
            return base
    return getattr(getattr(model, "config", None), "name_or_path", None) or None


def _trackers(args) -> list:
    """Functions logging (metrics, step) to the run's trackers: wandb (same run) and/or TensorBoard."""
    trackers = []
    report_to = [args.report_to] if isinstance(args.report_to, str) else (args.report_to or [])
    if "wandb" in report_to:
        try:
            import wandb

            if wandb.run is not None:
                run = wandb.run
                # Trust scores arrive after training has moved on: key them by their own step metric.
                run.define_metric("trust/step")
                run.define_metric("trust/*", step_metric="trust/step")
                run.define_metric("utility/*", step_metric="trust/step")
                trackers.append(lambda metrics, step: run.log({**metrics, "trust/step": step}))
        except ImportError:
            pass
    if "tensorboard" in report_to:
        from torch.utils.tensorboard import SummaryWriter

        # Next to the Trainer's own TensorBoard logs (same precedence as transformers' TensorBoardCallback).
        log_dir = os.getenv("TENSORBOARD_LOGGING_DIR") or getattr(args, "logging_dir", None)
        writer = SummaryWriter(log_dir=log_dir or os.path.join(args.output_dir, "runs", "trust_eval"))

        def to_tensorboard(metrics, step):
            for key, value in metrics.items():
                writer.add_scalar(key, value, global_step=step)
            writer.flush()

        trackers.append(to_tensorboard)
    return trackers
