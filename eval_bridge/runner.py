"""Run the trust suite on a model: batched generation with a resumable cache, scoring, aggregation.

    vlm = VLM.load("llava-hf/llava-1.5-7b-hf")
    results = run_suite(vlm, SuiteConfig(suite="mini", tasks="T1,S4"), output_dir="runs/eval")

Launched with several processes (`accelerate launch` / `torchrun`), each process generates its share of the
uncached samples into its own cache file; rank 0 then reads all of them, scores and writes the results (other
ranks return None). An inference-time mitigation plugs in as an `InferenceMethod` (`eval_bridge.inference`).
The model is any `Backend`: a local `VLM`, or an `APIModel` served behind an OpenAI-compatible endpoint
(`eval_bridge.models.api`).

Generation, step by step: find the samples the response cache lacks (`_missing`), give each process every
world-th of them, generate them in batches grouped by generation settings and append each batch's successes to
the cache (`_generate_share`, `_generate_and_store`), then reload every process's cache files (`_fill_responses`).
A failed generation is never cached: it is left out of the scores, counted, and retried by the next run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from eval_bridge.cache import ResponseCache, sample_hash, stable_hash
from eval_bridge.data.sources import DataSource, data_hash, make_source
from eval_bridge.distributed import barrier, init_distributed
from eval_bridge.inference import InferenceMethod
from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.models.backend import Backend
from eval_bridge.provenance import method_identity, provenance
from eval_bridge.reasoning import DEFAULT_FORMAT, consistent
from eval_bridge.samples import Sample
from eval_bridge.scoring import Scorers, score_dataset
from eval_bridge.tasks import TaskSpec, aggregate, select_tasks
from eval_bridge.tasks.rollup import cross_modal
from eval_bridge.tracks import DEFAULT_TRACKS, is_refusal, score_track

log = logging.getLogger(__name__)
TRACK_TASK = "track"


@dataclass
class SuiteConfig:
    """What to run and how.

    Attributes:
        suite: "mini" (offline, generated) or "full" (real MultiTrust data under `data_root`).
        tasks: comma-separated task ids and/or aspects ("T1,S4", "safety"); all 32 if None.
        tracks: which of "utility", "over_refusal", "harmful_refusal" to run beside the tasks
            ("harmful_refusal" needs `harmful_file`, "borderline_safe" `borderline_file`).
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
    borderline_file: str | None = None
    response_format: str | None = None

    def source(self) -> DataSource:
        return make_source(
            self.suite,
            self.cache_dir,
            self.data_root,
            utility_file=self.utility_file,
            over_refusal_file=self.over_refusal_file,
            harmful_file=self.harmful_file,
            borderline_file=self.borderline_file,
        )


@dataclass
class _Unit:
    """The samples of one dataset (or track) with their cache keys and generation settings.

    After generation, `responses[i]` is sample i's response, or None where generating it failed (an API
    request that gave up); `errors` says why, for the failures of this process.
    """

    task: str
    dataset: str
    samples: list[Sample]
    digests: list[str]
    settings: GenerationSettings
    responses: list[str | None] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)

    def key(self, i: int) -> tuple:
        """Sample i's key in the response cache."""
        return ResponseCache.key(self.task, self.dataset, self.samples[i], self.digests[i])

    def failures(self) -> int:
        return sum(r is None for r in self.responses)

    def error(self, i: int) -> str:
        return self.errors.get(i, "generation failed on another process (see its log)")


@dataclass(frozen=True)
class _Item:
    """One sample still to generate: sample `index` of `unit`."""

    unit: _Unit
    index: int

    @property
    def sample(self) -> Sample:
        return self.unit.samples[self.index]


def _settings_for(config: SuiteConfig, max_new_tokens: int) -> GenerationSettings:
    return replace(config.generation, max_new_tokens=config.max_new_tokens or max_new_tokens)


def _no_samples(what: str, source: DataSource, detail: str) -> ValueError:
    where = ", ".join(f"{k} {v}" for k, v in source.describe().items())
    return ValueError(f"{what} has no samples ({where}): {detail}")


def _collect_units(tasks: list[TaskSpec], config: SuiteConfig, source: DataSource) -> list[_Unit]:
    """Every dataset and track to run, with its samples; an empty one is an error (it would score as n/a)."""
    if config.limit is not None and config.limit < 1:
        raise ValueError(f"limit must be at least 1 sample per dataset, got {config.limit}")
    units = []
    for task in tasks:
        for dataset_id in task.datasets:
            samples = source.load(dataset_id)[: config.limit]
            if not samples:
                raise _no_samples(
                    f"task {task.id}, dataset {dataset_id!r},",
                    source,
                    "its annotation file holds no usable records (were they all dropped? see the warnings above)",
                )
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
        if not samples:
            raise _no_samples(f"the {track} track", source, "give a file with at least one request, or drop the track")
        units.append(_Unit(TRACK_TASK, track, samples, [sample_hash(s) for s in samples], _settings_for(config, 64)))
    return units


# --- generation: find what the cache lacks, split it between processes, generate and store, reload ---------------


class _Caches:
    """The response caches of one (model, method): one per distinct generation settings."""

    def __init__(self, root: str, model_identity: str, method_key: str, rank: int):
        self.root, self.model_identity, self.method_key, self.rank = root, model_identity, method_key, rank
        self._by_key: dict[str, ResponseCache] = {}

    def __getitem__(self, settings: GenerationSettings) -> ResponseCache:
        key = stable_hash(settings.cache_key())
        if key not in self._by_key:
            self._by_key[key] = ResponseCache(self.root, self.model_identity, self.method_key, key, rank=self.rank)
        return self._by_key[key]

    def reload(self) -> None:
        """Read every process's files again (after all of them finished their shares)."""
        for cache in self._by_key.values():
            cache.reload()


def _method_key(method: InferenceMethod | None) -> str:
    return "none" if method is None else f"{method.id}-{stable_hash(method_identity(method))}"


def _missing(units: list[_Unit], caches: _Caches) -> dict[str, list[_Item]]:
    """The samples with no cached response, by task, in suite order."""
    missing: dict[str, list[_Item]] = {}
    for unit in units:
        cache = caches[unit.settings]
        missing.setdefault(unit.task, [])
        missing[unit.task] += [_Item(unit, i) for i in range(len(unit.samples)) if cache.get(unit.key(i)) is None]
    return {task: items for task, items in missing.items() if items}


def _batches(items: list[_Item], size: int) -> Iterator[tuple[GenerationSettings, list[_Item]]]:
    """`size` items at a time (each batch is flushed to the cache), split by generation settings."""
    for start in range(0, len(items), size):
        by_settings: dict[GenerationSettings, list[_Item]] = {}
        for item in items[start : start + size]:
            by_settings.setdefault(item.unit.settings, []).append(item)
        yield from by_settings.items()


def _generate_and_store(
    vlm: Backend, method: InferenceMethod | None, settings: GenerationSettings, items: list[_Item], cache
) -> int:
    """Generate one batch and append its successful responses to the cache; returns how many failed.

    A failure is never cached, so the next run asks for it again."""
    samples = [item.sample for item in items]
    gens = method.generate(vlm, samples, settings) if method else vlm.generate(samples, settings)
    stored = []
    for item, gen in zip(items, gens, strict=True):
        if gen.error is None:
            stored.append((item.unit.key(item.index), gen.text))
        else:
            item.unit.errors[item.index] = gen.error
            log.warning(
                "%s/%s sample %s: generation failed: %s", item.unit.task, item.unit.dataset, item.sample.id, gen.error
            )
    cache.put_many(stored)
    return len(items) - len(stored)


def _generate_share(
    vlm: Backend,
    method: InferenceMethod | None,
    task_id: str,
    items: list[_Item],
    caches: _Caches,
    batch: int,
    bar: bool,
) -> int:
    """Generate one task's share of this process, batch by batch, with a progress bar; returns the failures."""
    failed = 0
    with tqdm(total=len(items), desc=f"{task_id} generate", unit="sample", disable=not bar) as progress:
        for settings, group in _batches(items, batch):
            failed += _generate_and_store(vlm, method, settings, group, caches[settings])
            progress.update(len(group))
    return failed


def _fill_responses(units: list[_Unit], caches: _Caches) -> None:
    """Every unit's responses from the caches (None where no process produced one)."""
    caches.reload()
    for unit in units:
        cache = caches[unit.settings]
        unit.responses = [cache.get(unit.key(i)) for i in range(len(unit.samples))]


def _generate(
    vlm: Backend, units: list[_Unit], config: SuiteConfig, method: InferenceMethod | None, distributed: bool
) -> dict:
    """Fill every unit's responses from the cache, generating what is missing (this rank's share)."""
    rank, world = init_distributed() if distributed else (0, 1)
    sync = barrier if distributed else (lambda: None)
    sync()  # every process must see the same cache before the uncached samples are split between them
    caches = _Caches(config.cache_dir, vlm.cache_identity(), _method_key(method), rank)
    missing = _missing(units, caches)
    n_missing = sum(len(items) for items in missing.values())
    n_total = sum(len(u.samples) for u in units)
    if rank == 0:
        log.info("%d of %d responses in the cache; generating %d", n_total - n_missing, n_total, n_missing)
    batch = max(1, config.generation.batch_size * 4)
    attempted = failed_here = 0
    for task_id, items in missing.items():
        mine = items[rank::world]
        failed_here += _generate_share(vlm, method, task_id, mine, caches, batch, bar=rank == 0)
        attempted += len(mine)
    sync()
    _fill_responses(units, caches)
    return {
        "total": n_total,
        "from_cache": n_total - n_missing,
        "generated_here": attempted - failed_here,
        "failed": sum(u.failures() for u in units),
        "processes": world,
    }


def run_suite(
    vlm: Backend,
    config: SuiteConfig,
    *,
    method: InferenceMethod | None = None,
    scorers: Scorers | None = None,
    output_dir: str | Path | None = None,
    source: DataSource | None = None,
    distributed: bool = True,
) -> dict[str, Any] | None:
    """Run the selected tasks and tracks on `vlm`; return the results (None on ranks other than 0).

    `vlm` is any `Backend`: a local `VLM` or an `APIModel` (a model behind an OpenAI-compatible endpoint).
    With `output_dir`, rank 0 also writes `results.json`, `results.md`, `scores.csv` and `aspects.png` there.
    `source` overrides where samples come from (default: the config's suite). With `distributed=False` the
    call ignores any process group it runs in (the eval bridge evaluating inside one rank of a training run).
    Samples whose generation failed are left out of every score and counted (`generation_failures`).
    """
    if method is not None and not isinstance(vlm, VLM):
        raise ValueError(
            f"inference-time method {method.id!r} needs a local model (it owns decoding); {vlm.name} is served "
            "behind an API: evaluate it without a method, or load the model locally"
        )
    scorers = scorers or Scorers()
    tasks = select_tasks(config.tasks)
    source = source or config.source()
    units = _collect_units(tasks, config, source)
    counts = _generate(vlm, units, config, method, distributed)
    rank, _ = init_distributed() if distributed else (0, 1)
    if rank != 0:
        return None
    log.info(
        "responses: %d from the cache, %d generated",
        counts["from_cache"],
        counts["total"] - counts["from_cache"] - counts["failed"],
    )
    if counts["failed"]:
        log.warning(
            "%d of %d generations failed: left out of the scores, not cached (a rerun retries them)",
            counts["failed"],
            counts["total"],
        )

    stats = _response_stats(vlm, units, config.response_format)
    results: dict[str, Any] = {"tasks": {}, "tracks": {}, "samples": [], "responses": stats}
    by_task: dict[str, list[_Unit]] = {}
    for unit in units:
        by_task.setdefault(unit.task, []).append(unit)
    for task in tasks:
        results["tasks"][task.id] = _score_task(task, by_task.get(task.id, []), scorers, config, results["samples"])
    for unit in by_task.get(TRACK_TASK, []):
        results["tracks"][unit.dataset] = _score_track(unit, results["samples"])

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
        from eval_bridge import report

        try:
            report.write_results(results, output_dir)
        except OSError as err:
            raise OSError(
                f"cannot write the results to {output_dir}: {err}; every response is cached in {config.cache_dir}: "
                "free space or fix the folder and run again (nothing is generated twice)"
            ) from err
    return results


def _response_stats(vlm: Backend, units: list[_Unit], response_format: str | None) -> dict:
    """Mean length (in tokens where the backend has a tokenizer, always in characters) and the generation
    failures; with a reasoning format, swap each response for its answer and count format failures.

    The raw responses stay in the cache; only what the scorers read changes.
    """
    responses = [r for unit in units for r in unit.responses if r is not None]
    tokens = None
    if vlm.tokenizer is not None and responses:
        tokens = sum(len(vlm.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses) / len(responses)
    failures, total, agree = 0, 0, 0
    if response_format is not None:
        if response_format != "reasoning":
            raise ValueError(f"unknown response_format {response_format!r}; use 'reasoning' or None")
        for unit in units:
            parsed = [None if r is None else DEFAULT_FORMAT.parse(r) for r in unit.responses]
            failures += sum(not p.well_formed for p in parsed if p is not None)
            total += sum(p is not None for p in parsed)
            agree += sum(consistent(p, is_refusal(p.answer)) for p in parsed if p is not None and p.well_formed)
            unit.responses = [None if p is None else p.answer for p in parsed]
    well_formed = total - failures
    return {
        "mean_tokens": tokens,
        "mean_chars": sum(map(len, responses)) / len(responses) if responses else None,
        "generation_failures": sum(unit.failures() for unit in units),
        "format": response_format,
        "format_failure_rate": 100.0 * failures / total if total else None,
        # Of the well-formed responses: the answer refuses exactly when Step 4 decides to decline.
        "reasoning_consistency": 100.0 * agree / well_formed if well_formed else None,
        "well_formed": well_formed if response_format is not None else None,
    }


def _answered(unit: _Unit) -> list[int]:
    """The indices of the unit's samples that have a response (failed generations are never scored)."""
    return [i for i, r in enumerate(unit.responses) if r is not None]


def _failed_records(unit: _Unit) -> list[dict]:
    """Per-sample records of the unit's failed generations: no response, no values, the error."""
    return [
        {"task": unit.task, "dataset": unit.dataset, "id": s.id, "response": None, "values": {}, "error": unit.error(i)}
        for i, (s, r) in enumerate(zip(unit.samples, unit.responses, strict=True))
        if r is None
    ]


def _score_track(unit: _Unit, sink: list) -> dict:
    """A track's score over the samples that have a response; per-sample records go to `sink`."""
    answered = _answered(unit)
    samples = [unit.samples[i] for i in answered]
    scored = score_track(unit.dataset, samples, [unit.responses[i] for i in answered])
    for i, hit in zip(answered, scored["per_sample"], strict=True):
        sink.append(
            {
                "task": TRACK_TASK,
                "dataset": unit.dataset,
                "id": unit.samples[i].id,
                "response": unit.responses[i],
                "values": {unit.dataset: hit},
            }
        )
    sink += _failed_records(unit)
    out = {k: v for k, v in scored.items() if k != "per_sample"}
    out["n"] = len(unit.samples)
    out["generation_failures"] = unit.failures()
    return out


def _score_task(task: TaskSpec, units: list[_Unit], scorers: Scorers, config: SuiteConfig, sink: list) -> dict:
    dataset_scores, datasets_out, notes = {}, {}, set()
    for unit in units:
        answered = _answered(unit)
        failed = len(unit.samples) - len(answered)
        if failed:
            notes.add(f"{failed} generation failure(s) in {unit.dataset}, left out of the score")
        sink += _failed_records(unit)
        if not answered:
            datasets_out[unit.dataset] = {
                "n": len(unit.samples),
                "metrics": {},
                "scorers": {},
                "generation_failures": failed,
                "scorer_failures": 0,
            }
            continue
        samples = [unit.samples[i] for i in answered]
        responses = [unit.responses[i] for i in answered]
        scores, used = score_dataset(
            task.datasets[unit.dataset], unit.dataset, samples, responses, scorers, config.cache_dir
        )
        dataset_scores[unit.dataset] = scores
        metrics = {}
        for name in scores.values:
            metrics[name] = {"mean": scores.mean(name), "accuracy": scores.accuracy(name)}
            failures = sum(v is None for v in scores.values[name])
            if failures:
                metrics[name]["failures"] = failures
                notes.add(f"{name}: {failures} scorer failure(s) in {unit.dataset}, left out of the score")
        datasets_out[unit.dataset] = {
            "n": len(unit.samples),
            "metrics": metrics,
            "scorers": used,
            "generation_failures": failed,
            "scorer_failures": scores.failures(),
        }
        for how in used.values():
            if how.startswith(("fallback", "unavailable")) or "(stand-in for " in how:  # offline stand-ins too
                notes.add(how)
        for k, (s, r) in enumerate(zip(samples, responses, strict=True)):
            values = {name: _json_number(v[k]) for name, v in scores.values.items()}
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
        "generation_failures": sum(d["generation_failures"] for d in datasets_out.values()),
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
