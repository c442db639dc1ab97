"""The eval bridge's queue: checkpoints wait as manifest files until a worker runs the trust suite on them.

Layout under a training run's output directory:

    trust_eval/
      queue/<step>.json     manifests waiting (step 0 = the starting model)
      claims/<step>         a worker is evaluating it (so two workers never take the same checkpoint)
      done/<step>.json      one per evaluated checkpoint: headline scores and where the results are, or the error
      results/step-<n>/     results of checkpoints that have no directory of their own (step 0)
      STOP                  written at the end of training: the worker exits once the queue is empty
      worker.log            the worker's output

The queue lives on disk, so a crashed or killed run loses nothing: `python scripts/report.py RUN_DIR --resume`
evaluates whatever is still queued. A worker is a separate process (`python -m eval_bridge.bridge RUN_DIR`), so
evaluation never runs inside the training process (in-process evaluation under DeepSpeed ZeRO-3 can hang).
With `SuiteSpec.server` set, the worker loads nothing: each LoRA checkpoint is loaded into an external vLLM
server (runtime LoRA updating), evaluated through it and unloaded (`_served`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eval_bridge.files import write_atomically

log = logging.getLogger(__name__)


@dataclass
class SuiteSpec:
    """What the bridge runs on every checkpoint (plain data, so it can travel in a manifest)."""

    suite: str = "mini"
    data_root: str | None = None
    tasks: str | None = None
    limit: int | None = None
    max_new_tokens: int | None = None
    batch_size: int = 16
    cache_dir: str = ".cache/trust-suite"
    utility_file: str | None = None
    over_refusal_file: str | None = None
    harmful_file: str | None = None
    borderline_file: str | None = None
    tracks: tuple[str, ...] = ("utility", "over_refusal")
    response_format: str | None = None  # "reasoning": score the answer section only (RESA)
    judge: str | None = None
    harmbench_judge: str | None = None
    refusal_classifier: str | None = None
    toxicity_classifier: str | None = None
    device: str | None = None  # where the worker loads checkpoints (default: CUDA if available, else CPU)
    # An OpenAI-compatible server (`openai:<served base>@<url>`, a vLLM server with runtime LoRA updating) that
    # generates instead of a model loaded in the worker: each LoRA checkpoint is loaded into it, evaluated and
    # unloaded. `server_base` is the base model it serves, as a manifest names it (set by the callback).
    server: str | None = None
    server_base: str | None = None
    server_api_key_env: str = "OPENAI_API_KEY"
    server_concurrency: int = 8


@dataclass
class Manifest:
    """One checkpoint to evaluate.

    Attributes:
        step: the global step (0 = the model before training).
        model: the model to load: the checkpoint directory, or the base model for adapter checkpoints and step 0.
        adapter: the adapter directory for LoRA checkpoints, else None.
        output_dir: where its results go.
    """

    step: int
    model: str
    adapter: str | None
    output_dir: str
    suite: SuiteSpec = field(default_factory=SuiteSpec)
    stage: str = ""  # e.g. "base", "sft", "dpo": which part of a multi-stage recipe produced it
    final: bool = False  # a stage's final model (its own row, next to a checkpoint saved at the same step)

    @property
    def key(self) -> str:
        """The manifest's name in the queue: the step, and `-final` for a stage's final model."""
        return f"{self.step:09d}-final" if self.final else f"{self.step:09d}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        suite = data.get("suite", {})
        suite["tracks"] = tuple(suite.get("tracks", SuiteSpec.tracks))
        data["suite"] = SuiteSpec(**suite)
        return cls(**data)


def bridge_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "trust_eval"


def enqueue(run_dir: str | os.PathLike, manifest: Manifest) -> Path:
    """Add a manifest to the run's queue (atomically: a worker never reads half a file)."""
    path = bridge_dir(run_dir) / "queue" / f"{manifest.key}.json"
    return write_atomically(path, lambda tmp: tmp.write_text(manifest.to_json()))


def pending(run_dir: str | os.PathLike, *, include_claimed: bool = True) -> list[Path]:
    """Queued manifests not yet evaluated, in step order (optionally without those a worker has claimed)."""
    root = bridge_dir(run_dir)
    done = {p.stem for p in (root / "done").glob("*.json")}
    claimed = set() if include_claimed else {p.stem for p in (root / "claims").glob("*")}
    queued = sorted((root / "queue").glob("*.json"), key=lambda p: p.stem)  # a checkpoint before its final twin
    return [p for p in queued if p.stem not in done | claimed]


def _claim(run_dir: str | os.PathLike, path: Path) -> bool:
    """Atomically claim a manifest, so that two workers never evaluate the same checkpoint."""
    claims = bridge_dir(run_dir) / "claims"
    claims.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(claims / path.stem, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def completed(run_dir: str | os.PathLike) -> list[dict]:
    """The done records of a run, in step order."""
    paths = sorted((bridge_dir(run_dir) / "done").glob("*.json"), key=lambda p: p.stem)
    return [json.loads(p.read_text()) for p in paths]


def evaluate_manifest(manifest: Manifest, *, method=None) -> dict:
    """Run the suite on one checkpoint, optionally through an inference-time `method` (an object of the
    `InferenceMethod` protocol); returns the results (also written to `manifest.output_dir`)."""
    from eval_bridge.models.adapter import VLM, GenerationSettings
    from eval_bridge.runner import SuiteConfig, run_suite
    from eval_bridge.scoring import Scorers

    spec = manifest.suite
    config = SuiteConfig(
        suite=spec.suite,
        data_root=spec.data_root,
        tasks=spec.tasks,
        cache_dir=spec.cache_dir,
        generation=GenerationSettings(batch_size=spec.batch_size),
        max_new_tokens=spec.max_new_tokens,
        limit=spec.limit,
        utility_file=spec.utility_file,
        over_refusal_file=spec.over_refusal_file,
        harmful_file=spec.harmful_file,
        borderline_file=spec.borderline_file,
        tracks=tuple(spec.tracks),
        response_format=spec.response_format,
    )
    scorers = Scorers.from_specs(spec.judge, spec.harmbench_judge, spec.refusal_classifier, spec.toxicity_classifier)
    if spec.server:
        backend = _served(manifest)
    else:
        backend = nullcontext(VLM.load(manifest.model, manifest.adapter, device=spec.device))
    with backend as vlm:
        # One process evaluates a checkpoint, even when it sits inside a distributed training run (sync mode).
        return run_suite(vlm, config, method=method, scorers=scorers, output_dir=manifest.output_dir, distributed=False)


@contextmanager
def _served(manifest: Manifest):
    """The manifest's model on the suite's server: the served base itself, or a LoRA checkpoint loaded into it
    for the block. The cache identity holds the checkpoint's fingerprint, so a reused name is never stale."""
    from eval_bridge.models.api import APIModel, lora_name, served_lora
    from eval_bridge.models.fingerprint import fingerprint

    spec = manifest.suite
    base = APIModel.from_spec(spec.server, api_key_env=spec.server_api_key_env, concurrency=spec.server_concurrency)
    on_base = _same_model(manifest.model, spec.server_base) if spec.server_base else None
    if manifest.adapter is None and not (on_base or (on_base is None and manifest.stage == "base")):
        raise ValueError(
            f"{manifest.model} is a full-weight model and a server cannot swap full weights: the bridge evaluates "
            f"the served base ({base.name}) and LoRA checkpoints on it. Evaluate this one with scripts/evaluate.py "
            f"--model {manifest.model}, or serve it (vllm serve {manifest.model})"
        )
    if manifest.adapter is not None and on_base is False:
        raise ValueError(
            f"the LoRA checkpoint {manifest.adapter} is trained on {manifest.model}, not on {spec.server_base}, "
            f"which {base.name} serves (a later stage's checkpoints sit on the previous stage's merged model): "
            f"serve that base (vllm serve {manifest.model} --enable-lora) or evaluate with scripts/evaluate.py"
        )
    weights = fingerprint(manifest.model, manifest.adapter)
    if manifest.adapter is None:
        yield base.with_model(base.model, weights_fingerprint=weights)
        return
    name = lora_name(weights)
    with served_lora(base.http, name, manifest.adapter):
        yield base.with_model(name, weights_fingerprint=weights, adapter=manifest.adapter)


def _same_model(a: str, b: str) -> bool:
    """Whether two model references (paths or hub ids) name the same model."""
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def process(run_dir: str | os.PathLike, path: Path) -> dict:
    """Evaluate one queued manifest and record the outcome in done/; a failure is recorded, not raised."""
    from eval_bridge.report import headline, headline_counts

    manifest = Manifest.from_json(path.read_text())
    record: dict = {
        "step": manifest.step,
        "stage": manifest.stage,
        "final": manifest.final,
        "model": manifest.model,
        "adapter": manifest.adapter,
    }
    started = time.perf_counter()
    try:
        results = evaluate_manifest(manifest)
        record.update(
            results_path=str(Path(manifest.output_dir) / "results.json"),
            headline=headline(results),
            counts=headline_counts(results),
            tasks={t: r["score"] for t, r in results["tasks"].items()},
            error=None,
        )
    except Exception as err:
        log.error("step %d: evaluation failed: %s", manifest.step, err)
        record.update(error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=5))
    record["seconds"] = round(time.perf_counter() - started, 2)
    done = bridge_dir(run_dir) / "done"
    done.mkdir(parents=True, exist_ok=True)
    (done / path.name).write_text(json.dumps(record, indent=1))
    return record


def drain(run_dir: str | os.PathLike, *, ignore_claims: bool = False) -> list[dict]:
    """Evaluate everything queued, in step order (sync mode; `report.py --resume` with `ignore_claims`, since a
    killed worker leaves its claim behind)."""
    records = []
    for path in pending(run_dir, include_claimed=ignore_claims):
        if ignore_claims or _claim(run_dir, path):
            records.append(process(run_dir, path))
    return records


def work(run_dir: str | os.PathLike, poll_s: float = 1.0, parent_pid: int | None = None) -> None:
    """The worker loop: evaluate queued manifests until STOP is written and the queue is empty.

    Exits early if the training process (`parent_pid`) died; what is left stays queued for `--resume`.
    """
    root = bridge_dir(run_dir)
    while True:
        queue = pending(run_dir, include_claimed=False)
        if queue:
            if _claim(run_dir, queue[0]):
                process(run_dir, queue[0])
            continue
        if (root / "STOP").exists():
            return
        if parent_pid is not None and not _alive(parent_pid):
            log.error("the training process %d is gone; leaving the queue for report.py --resume", parent_pid)
            return
        time.sleep(poll_s)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv=None) -> None:
    """`python -m eval_bridge.bridge RUN_DIR [--parent-pid PID]`: the worker process."""
    p = argparse.ArgumentParser(description="Eval-bridge worker: evaluate a run's queued checkpoints.")
    p.add_argument("run_dir")
    p.add_argument("--parent-pid", type=int)
    p.add_argument("--poll", type=float, default=1.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    work(args.run_dir, args.poll, args.parent_pid)


if __name__ == "__main__":
    main()
