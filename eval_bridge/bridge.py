"""The eval bridge's queue: checkpoints wait as manifest files until a worker runs the trust suite on them.

Layout under a training run's output directory:

    trust_eval/
      queue/<step>.json     manifests waiting (step 0 = the starting model)
      claims/<step>         a worker is evaluating it: its pid and host (bridge_claims.py; so two workers never
                            take the same checkpoint, and a dead worker's checkpoint is taken back)
      retakes/              one file per claim taken back from a dead worker
      done/<step>.json      one per evaluated checkpoint: headline scores and where the results are, or the error
      results/step-<n>/     results of checkpoints that have no directory of their own (step 0)
      STOP                  written at the end of training: the worker exits once the queue is empty
      worker.log            the worker's output

The queue lives on disk, so a crashed or killed run loses nothing: `python scripts/report.py RUN_DIR --resume`
evaluates whatever is still queued, taking back the claims of workers that died. Every file here is written whole
(`write_atomically`, or a hard link for claims); one that cannot be read anyway (a crash of the machine, a hand
edit) is reported with its path and evaluated again, never a `JSONDecodeError` in the trainer.

A worker is a separate process (`python -m eval_bridge.bridge RUN_DIR`), so evaluation never runs inside the
training process (in-process evaluation under DeepSpeed ZeRO-3 can hang).
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
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eval_bridge import bridge_claims
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


def _files(folder: Path) -> list[Path]:
    """The `.json` files of a bridge folder in step order (a checkpoint before its final twin), no temporaries."""
    return sorted((p for p in folder.glob("*.json") if not p.name.startswith(".")), key=lambda p: p.stem)


def pending(
    run_dir: str | os.PathLike, *, include_claimed: bool = True, stale_after_s: float | None = None
) -> list[Path]:
    """Queued manifests without a readable done record, in step order; with `include_claimed=False`, without those
    a worker holds (a claim whose worker is dead, or stale past `stale_after_s`, is free to take)."""
    root = bridge_dir(run_dir)
    done = {key for key, record in _done_records(root) if not record.get("unreadable")}
    out = [p for p in _files(root / "queue") if p.stem not in done]
    if include_claimed:
        return out
    claims = {p.stem: bridge_claims.inspect(root / "claims" / p.stem) for p in out}
    return [p for p in out if claims[p.stem] is None or claims[p.stem].takeable(stale_after_s)]


def _claim(run_dir: str | os.PathLike, path: Path, stale_after_s: float | None = None) -> bool:
    """Claim a manifest for this process, so that two workers never evaluate the same checkpoint (a dead worker's
    claim is taken back: `bridge_claims.claim`)."""
    return bridge_claims.claim(bridge_dir(run_dir), path.stem, stale_after_s=stale_after_s)


def _key_fields(key: str) -> dict:
    """What a queue key says by itself: `000000004-final` -> step 4, final."""
    step, _, final = key.partition("-")
    return {"step": int(step) if step.isdigit() else -1, "final": final == "final"}


_warned: set[Path] = set()


def _done_records(root: Path) -> Iterator[tuple[str, dict]]:
    """(key, done record) per done file; a file that does not parse gives a failed record naming it."""
    for path in _files(root / "done"):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("not a done record (an object with an integer step)")
        except (OSError, ValueError, UnicodeDecodeError) as err:
            if path not in _warned:  # once: pending() reads the records at every poll of the worker
                _warned.add(path)
                log.warning("unreadable done record %s: %s; it will be evaluated again", path, err)
            record = {
                **_key_fields(path.stem),
                "stage": "",
                "model": str(path),
                "adapter": None,
                "error": f"its done record {path} is unreadable ({err}); `scripts/report.py RUN --resume` evaluates "
                "the checkpoint again",
                "unreadable": True,
            }
        yield path.stem, record


def completed(run_dir: str | os.PathLike) -> list[dict]:
    """The done records of a run, in step order (an unreadable one as a failed record naming its file)."""
    return [record for _, record in _done_records(bridge_dir(run_dir))]


def unfinished(run_dir: str | os.PathLike) -> list[dict]:
    """A failed record, with the reason, for each queued checkpoint that has no done record: never evaluated, or
    claimed by a worker that did not finish it (dead, still running, on another host). Step order."""
    root = bridge_dir(run_dir)
    done = {p.stem for p in _files(root / "done")}
    out = []
    for path in _files(root / "queue"):
        if path.stem in done:
            continue
        record = {**_key_fields(path.stem), "stage": "", "model": str(path), "adapter": None}
        try:
            manifest = Manifest.from_json(path.read_text())
            record.update(step=manifest.step, stage=manifest.stage, final=manifest.final, model=manifest.model)
            record["adapter"] = manifest.adapter
        except (OSError, ValueError, TypeError) as err:
            record["error"] = f"its queue entry {path} is unreadable ({err}); queue the checkpoint again"
            out.append(record)
            continue
        claim = bridge_claims.inspect(root / "claims" / path.stem)
        resume = f"`python scripts/report.py {run_dir} --resume` evaluates it"
        if claim is None:
            reason = f"not evaluated: still queued when its worker stopped; {resume}"
        elif claim.state == bridge_claims.HELD:
            reason = f"not finished yet: {claim.describe()}"
        elif claim.state == bridge_claims.DEAD:
            reason = f"not finished: {claim.describe()}; {resume} again"
        else:
            reason = f"not finished: {claim.describe()}; if that worker is gone, {resume} (add --stale-claim-after 0)"
        out.append({**record, "error": reason, "unfinished": True})
    return out


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

    started = time.perf_counter()
    try:
        manifest = Manifest.from_json(path.read_text())
    except (OSError, ValueError, TypeError) as err:
        log.error("unreadable queue entry %s: %s", path, err)
        record = {**_key_fields(path.stem), "stage": "", "model": str(path), "adapter": None}
        record["error"] = f"its queue entry {path} is unreadable ({type(err).__name__}: {err}); queue it again"
        return _record_done(run_dir, path, record, started)
    record: dict = {
        "step": manifest.step,
        "stage": manifest.stage,
        "final": manifest.final,
        "model": manifest.model,
        "adapter": manifest.adapter,
    }
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
    return _record_done(run_dir, path, record, started)


def _record_done(run_dir: str | os.PathLike, path: Path, record: dict, started: float) -> dict:
    record["seconds"] = round(time.perf_counter() - started, 2)
    done = bridge_dir(run_dir) / "done" / path.name
    write_atomically(done, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    return record


def drain(run_dir: str | os.PathLike, *, stale_after_s: float | None = None) -> list[dict]:
    """Evaluate everything queued that no live worker holds, in step order (sync mode, `report.py --resume`);
    claims of dead workers (or stale past `stale_after_s`) are taken back. Returns the new done records."""
    return [process(run_dir, path) for path in pending(run_dir) if _claim(run_dir, path, stale_after_s)]


def work(
    run_dir: str | os.PathLike,
    poll_s: float = 1.0,
    parent_pid: int | None = None,
    stale_after_s: float | None = None,
) -> None:
    """The worker loop: evaluate queued manifests until STOP is written and no queued one is left to take.

    A claim whose worker died is taken back (`stale_after_s`: see `bridge_claims`). Exits early if the training
    process (`parent_pid`) died; what is left stays queued for `--resume`.
    """
    root = bridge_dir(run_dir)
    while True:
        path = _claim_next(run_dir, stale_after_s)
        if path is not None:
            process(run_dir, path)
            continue  # look at the queue afresh: a stage's final model may have been queued meanwhile
        if (root / "STOP").exists():
            return
        if parent_pid is not None and not bridge_claims.alive(parent_pid):
            log.error("the training process %d is gone; leaving the queue for report.py --resume", parent_pid)
            return
        time.sleep(poll_s)


def _claim_next(run_dir: str | os.PathLike, stale_after_s: float | None) -> Path | None:
    """The first queued manifest this process could claim, claimed; None if there is none."""
    return next((p for p in pending(run_dir) if _claim(run_dir, p, stale_after_s)), None)


def main(argv=None) -> None:
    """`python -m eval_bridge.bridge RUN_DIR [--parent-pid PID]`: the worker process."""
    p = argparse.ArgumentParser(description="Eval-bridge worker: evaluate a run's queued checkpoints.")
    p.add_argument("run_dir", help="the training run's output directory (its trust_eval/ holds the queue)")
    p.add_argument("--parent-pid", type=int, help="exit when this process (the trainer) is gone")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between looks at an empty queue")
    p.add_argument(
        "--stale-claim-after",
        type=float,
        help="take back claims of another host's workers (which cannot be checked) older than this many seconds "
        "(default: never; a dead worker of this host is always detected)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    work(args.run_dir, args.poll, args.parent_pid, args.stale_claim_after)


if __name__ == "__main__":
    main()
