"""Run the trust suite on a model: batched generation with a resumable cache, scoring, aggregation.

    vlm = VLM.load("llava-hf/llava-1.5-7b-hf")
    results = run_suite(vlm, SuiteConfig(suite="mini", tasks="T1,S4"), output_dir="runs/eval")

Launched with several processes (`accelerate launch` / `torchrun`), each process generates its share of the
uncached samples into its own cache file; rank 0 then reads all of them, scores and writes the results (other
ranks return None). An inference-time mitigation plugs in as an `InferenceMethod`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from eval_bridge.cache import ResponseCache, sample_hash, stable_hash
from eval_bridge.data.sources import DataSource, data_hash, make_source
from eval_bridge.distributed import barrier, init_distributed
from eval_bridge.models.adapter import VLM, Generation, GenerationSettings
from eval_bridge.provenance import method_identity, provenance
from eval_bridge.reasoning import DEFAULT_FORMAT
from eval_bridge.samples import Sample
from eval_bridge.scoring import Scorers, score_dataset
from eval_bridge.tasks import TaskSpec, aggregate, select_tasks
from eval_bridge.tasks.rollup import cross_modal
from eval_bridge.tracks import DEFAULT_TRACKS, score_track

log = logging.getLogger(__name__)
TRACK_TASK = "track"


class InferenceMethod(Protocol):
    """An inference-time mitigation (e.g. VCD, ECSO): it owns decoding, the model and templates stay the toolkit's."""

    id: str
    version: str  # bump when the method's outputs change for the same settings: cached responses are then redone

    def cache_key(self) -> dict:
        """The method's settings that change its outputs (part of the response-cache key)."""

    def generate(self, vlm: VLM, samples: Sequence[Sample], settings: GenerationSettings) -> list[Generation]:
        """One response per sample, in order."""


@dataclass
class SuiteConfig:
    """What to run and how.

    Attributes:
        suite: "mini" (offline, generated) or "full" (real MultiTrust data under `data_root`).
        tasks: comma-separated task ids and/or aspects ("T1,S4", "safety"); all 32 if None.
        tracks: which of "utility", "over_refusal", "harmful_refusal" to run beside the tasks
            ("harmful_refusal" needs `harmful_file`).
        response_format: "reasoning" to score only the answer section of reasoning-then-answer responses
            (RESA); the results then report the format-failure rate.
        generation: decoding settings; `max_new_tokens` there is overridden per task unless
            `max_new_tokens` below is set.
        max_new_tokens: one generation length for every task (default: each task's own).
        limit: at most this many samples per dataset (quick looks; the results say so).
    """

    suite: str = "mini"
    data_root: str | None = None
    tasks: str | None = None
    tracks: tuple[str, ...] = DEFAULT_TRACKS
    cache_dir: str = ".cache/trust-suite"
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    max_new_tokens: int | None = None
    limit: int | None = None
    utility_file: str | None = None
    over_refusal_file: str | None = None
    harmful_file: str | None = None
    response_format: str | None = None

    def source(self) -> DataSource:
        return make_source(
            self.suite,
            self.cache_dir,
            self.data_root,
            utility_file=self.utility_file,
            over_refusal_file=self.over_refusal_file,
            harmful_file=self.harmful_file,
        )


@dataclass
class _Unit:
    """The samples of one dataset (or track) with their cache keys and generation settings."""

    task: str
    dataset: str
    samples: list[Sample]
    digests: list[str]
    settings: GenerationSettings
    responses: list[str | None] = field(default_factory=list)


def _settings_for(config: SuiteConfig, max_new_tokens: int) -> GenerationSettings:
    return replace(config.generation, max_new_tokens=config.max_new_tokens or max_new_tokens)


def _collect_units(tasks: list[TaskSpec], config: SuiteConfig, source: DataSource) -> list[_Unit]:
    units = []
    for task in tasks:
        for dataset_id in task.datasets:
            samples = source.load(dataset_id)[: config.limit]
            units.append(
                _Unit(
                    task.id,
                    dataset_id,
                    samples,
                    [sample_hash(s) for s in samples],
                    _settings_for(config, task.max_new_tokens),
                )
            )
    for track in config.tracks:
        samples = source.track(track)[: config.limit]
        units.append(_Unit(TRACK_TASK, track, samples, [sample_hash(s) for s in samples], _settings_for(config, 64)))
    return units


def _generate(
    vlm: VLM, units: list[_Unit], config: SuiteConfig, method: InferenceMethod | None, distributed: bool
) -> dict:
    """Fill every unit's responses from the cache, generating what is missing (this rank's share)."""
    rank, world = init_distributed() if distributed else (0, 1)
    sync = barrier if distributed else (lambda: None)
    sync()  # every process must see the same cache before the uncached samples are split between them
    method_key = "none" if method is None else f"{method.id}-{stable_hash(method_identity(method))}"
    caches: dict[str, ResponseCache] = {}

    def cache_for(settings: GenerationSettings) -> ResponseCache:
        key = stable_hash(settings.cache_key())
        if key not in caches:
            caches[key] = ResponseCache(config.cache_dir, vlm.cache_identity(), method_key, key, rank=rank)
        return caches[key]

    todo: dict[str, list[tuple[_Unit, int]]] = {}
    for unit in units:
        cache = cache_for(unit.settings)
        for i, (sample, digest) in enumerate(zip(unit.samples, unit.digests, strict=True)):
            if cache.get(ResponseCache.key(unit.task, unit.dataset, sample, digest)) is None:
                todo.setdefault(unit.task, []).append((unit, i))
    n_missing = sum(len(v) for v in todo.values())
    n_total = sum(len(u.samples) for u in units)
    if rank == 0:
        log.info("%d of %d responses in the cache; generating %d", n_total - n_missing, n_total, n_missing)

    generated = 0
    chunk = max(1, config.generation.batch_size * 4)
    for task_id, items in todo.items():
        mine = items[rank::world]
        with tqdm(total=len(mine), desc=f"{task_id} generate", unit="sample", disable=rank != 0) as bar:
            for start in range(0, len(mine), chunk):
                part = mine[start : start + chunk]
                by_settings: dict[GenerationSettings, list[tuple[_Unit, int]]] = {}
                for unit, i in part:
                    by_settings.setdefault(unit.settings, []).append((unit, i))
                for settings, group in by_settings.items():
                    samples = [unit.samples[i] for unit, i in group]
                    gens = method.generate(vlm, samples, settings) if method else vlm.generate(samples, settings)
                    cache_for(settings).put_many(
                        (ResponseCache.key(u.task, u.dataset, u.samples[i], u.digests[i]), g.text)
                        for (u, i), g in zip(group, gens, strict=True)
                    )
                    generated += len(group)
                    bar.update(len(group))
    sync()
    for cache in caches.values():
        cache.reload()
    for unit in units:
        cache = cache_for(unit.settings)
        unit.responses = [
            cache.get(ResponseCache.key(unit.task, unit.dataset, s, d))
            for s, d in zip(unit.samples, unit.digests, strict=True)
        ]
    return {"total": n_total, "from_cache": n_total - n_missing, "generated_here": generated, "processes": world}


def run_suite(
    vlm: VLM,
    config: SuiteConfig,
    *,
    method: InferenceMethod | None = None,
    scorers: Scorers | None = None,
    output_dir: str | Path | None = None,
    source: DataSource | None = None,
    distributed: bool = True,
) -> dict[str, Any] | None:
    """Run the selected tasks and tracks on `vlm`; return the results (None on ranks other than 0).

    With `output_dir`, rank 0 also writes `results.json`, `results.md`, `scores.csv` and `aspects.png` there.
    `source` overrides where samples come from (default: the config's suite). With `distributed=False` the
    call ignores any process group it runs in (the eval bridge evaluating inside one rank of a training run).
    """
    scorers = scorers or Scorers()
    tasks = select_tasks(config.tasks)
    source = source or config.source()
    units = _collect_units(tasks, config, source)
    counts = _generate(vlm, units, config, method, distributed)
    rank, _ = init_distributed() if distributed else (0, 1)
    if rank != 0:
        return None
    log.info("responses: %d from the cache, %d generated", counts["from_cache"], counts["total"] - counts["from_cache"])

    stats = _response_stats(vlm, units, config.response_format)
    results: dict[str, Any] = {"tasks": {}, "tracks": {}, "samples": [], "responses": stats}
    by_task: dict[str, list[_Unit]] = {}
    for unit in units:
        by_task.setdefault(unit.task, []).append(unit)
    for task in tasks:
        results["tasks"][task.id] = _score_task(task, by_task.get(task.id, []), scorers, config, results["samples"])
    for unit in by_task.get(TRACK_TASK, []):
        scored = score_track(unit.dataset, unit.samples, unit.responses)
        results["tracks"][unit.dataset] = {k: v for k, v in scored.items() if k != "per_sample"}
        for s, r, hit in zip(unit.samples, unit.responses, scored["per_sample"], strict=True):
            results["samples"].append(
                {"task": TRACK_TASK, "dataset": unit.dataset, "id": s.id, "response": r, "values": {unit.dataset: hit}}
            )

    results.update(aggregate({t: r["score"] for t, r in results["tasks"].items()}))
    results["provenance"] = provenance(
        vlm,
        method=method,
        scorers=scorers,
        config=config,
        source=source.describe(),
        data_hashes={f"{u.task}/{u.dataset}": data_hash(u.samples, u.digests) for u in units},
        responses=counts,
    )
    if output_dir is not None:
        from eval_bridge.report import write_results

        write_results(results, output_dir)
    return results


def _response_stats(vlm: VLM, units: list[_Unit], response_format: str | None) -> dict:
    """Mean length in tokens; with a reasoning format, swap each response for its answer and count failures.

    The raw responses stay in the cache; only what the scorers read changes.
    """
    lengths, failures, total = [], 0, 0
    for unit in units:
        lengths += [len(vlm.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in unit.responses]
        if response_format is None:
            continue
        if response_format != "reasoning":
            raise ValueError(f"unknown response_format {response_format!r}; use 'reasoning' or None")
        parsed = [DEFAULT_FORMAT.parse(r) for r in unit.responses]
        failures += sum(not p.well_formed for p in parsed)
        total += len(parsed)
        unit.responses = [p.answer for p in parsed]
    return {
        "mean_tokens": sum(lengths) / len(lengths) if lengths else None,
        "format": response_format,
        "format_failure_rate": 100.0 * failures / total if total else None,
    }


def _score_task(task: TaskSpec, units: list[_Unit], scorers: Scorers, config: SuiteConfig, sink: list) -> dict:
    dataset_scores, datasets_out, notes = {}, {}, set()
    for unit in units:
        scores, used = score_dataset(
            task.datasets[unit.dataset], unit.dataset, unit.samples, unit.responses, scorers, config.cache_dir
        )
        dataset_scores[unit.dataset] = scores
        metrics = {}
        for name in scores.values:
            metrics[name] = {"mean": scores.mean(name), "accuracy": scores.accuracy(name)}
            failures = sum(
                v is None and r is not None for v, r in zip(scores.values[name], unit.responses, strict=True)
            )
            if failures:
                metrics[name]["failures"] = failures
                notes.add(f"{name}: {failures} scorer failure(s) in {unit.dataset}, left out of the score")
        datasets_out[unit.dataset] = {
            "n": len(unit.samples),
            "metrics": metrics,
            "scorers": used,
            "scorer_failures": scores.failures(),
        }
        for how in used.values():
            if how.startswith(("fallback", "unavailable")):
                notes.add(how)
        for i, (s, r) in enumerate(zip(unit.samples, unit.responses, strict=True)):
            values = {k: _json_number(v[i]) for k, v in scores.values.items()}
            sink.append({"task": task.id, "dataset": unit.dataset, "id": s.id, "response": r, "values": values})
    score = task.score(dataset_scores) if dataset_scores else None
    return {
        "name": task.name,
        "aspect": task.aspect,
        "sub_aspect": task.sub_aspect,
        "risk": list(task.risk),
        "score": None if score is None or math.isnan(score) else round(score, 2),
        "formula": task.formula,
        "datasets": datasets_out,
        # Samples left out of the score because a scorer (judge, classifier) gave them no value.
        "scorer_failures": sum(d["scorer_failures"] for d in datasets_out.values()),
        "cross_modal": cross_modal(task, dataset_scores),
        "notes": sorted(notes),
        "limited_to": config.limit,
    }


def _json_number(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def config_dict(config: SuiteConfig) -> dict:
    """The config as plain JSON (for provenance)."""
    out = asdict(config)
    out["generation"] = asdict(config.generation)
    return out
