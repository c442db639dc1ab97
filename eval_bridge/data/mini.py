"""The offline mini suite: a small generated instance of all 32 MultiTrust tasks, built from packaged assets.

Every dataset id of MultiTrust's 32 tasks gets a few samples whose `target` and `metadata` have the shape the
real MultiTrust dataset gives them (docs: MULTITRUST_DATA.md section 3), so the same scorer chains run on both.
Content comes from easy-VQA images (perception, hallucination, OOD and adversarial tasks), AdvBench / HarmBench /
Do-Not-Answer behaviours (jailbreak tasks), RealToxicityPrompts samples (toxicity) and text, statements and
synthetic PII written here (robustness text tasks, fairness, privacy). One builder module per aspect:
`mini_truthfulness`, `mini_safety`, `mini_robustness`, `mini_fairness`, `mini_privacy`.

The suite is built once into `<cache_dir>/mini-v<MINI_VERSION>/` (a temporary folder renamed into place, so an
interrupted build leaves nothing half-written) and is byte-identical on every rebuild: all randomness is seeded
by name. Layout: `<dataset_id with '/' as '__'>.jsonl` in the sample format of `eval_bridge.samples`, images
under `images/`, and the two extra tracks in `tracks/{utility,over_refusal}.jsonl`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from eval_bridge.data import assets
from eval_bridge.samples import Sample, load_samples

MINI_VERSION = "1"

_UNRELATED = tuple(f"unrelated-image-{k}" for k in assets.UNRELATED_KINDS)


def _variants(prefix: str, kinds: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{prefix}{k}" for k in kinds)


P4_DATA_TYPES = tuple(
    f"personal-{q}-{n}-{o}"
    for q in ("email", "phone", "address")
    for n in ("name", "wo-name")
    for o in ("occupation", "wo-occupation")
)

#: task -> its dataset ids, in MultiTrust's order.
MINI_TASKS: dict[str, tuple[str, ...]] = {
    "T1": ("d-basic-attribute", "d-basic-object", "d-basic-scene", "g-basic-grounding", "g-basic-ocr"),
    "T2": _variants(
        "advanced-", ("spatial", "temporal", "compare", "daily", "traffic", "causality", "math", "code", "translate")
    ),
    "T3": ("instruction-enhancement-factual", "instruction-enhancement-logic"),
    "T4": _variants("visual-assistance-", ("text", "image", *_UNRELATED)),
    "T5": ("g-text-misleading",),
    "T6": ("d-mis-visual-confusion",),
    "T7": _variants("g-text-", ("assistance", "misvisual", *_UNRELATED, "none")),
    "S1": ("nsfw-image-description",),
    "S2": ("object-detection", "risk-analysis"),
    "S3": _variants("toxicity-prompt-", ("text", "unrelated", "image")),
    "S4": ("typographic-prompt-and-behavior", "typographic-prompt", "typographic-behavior"),
    "S5": ("opimized-jailbreak-graphic", "mm-safety-bench", "safebench"),
    "S6": _variants("crossmodal-jailbreak-", ("text", "unrelated", "pos", "neg")),
    "R1": _variants("coco-o-", ("cartoon", "handmake", "painting", "sketch", "tattoo", "weather")),
    "R2": _variants("benchlmm-", ("infrared", "lxray", "hxray", "mri", "ct", "remote", "driving")),
    "R3": _variants("dt-", ("text", "related-image", *_UNRELATED)),
    "R4": ("adv-clean", "adv-untarget"),
    "R5": ("adv-target",),
    "R6": _variants("advglue-", ("text", "related-image", *_UNRELATED))
    + _variants("advglue-plus-", ("text", "related-image", *_UNRELATED)),
    "F1": ("stereo-generation",),
    "F2": _variants("stereo-agreement-", ("text", "image", *_UNRELATED)),
    "F3": _variants("stereo-classification-", ("text", "image", *_UNRELATED))
    + _variants("stereo-topic-classification-", ("text", "image", *_UNRELATED)),
    "F4": _variants("stereo-query-", ("text", "image", *_UNRELATED)),
    "F5": ("vision-preference",),
    "F6": ("profession-pred", "profession-pred-with-description"),
    "F7": _variants("subjective-preference-plain-", ("text", "image", *_UNRELATED))
    + _variants("subjective-preference-force-", ("text", "image", *_UNRELATED)),
    "P1": ("vispr-recognition", "vizwiz-recognition"),
    "P2": ("vispr-recognition-pri-query",),
    "P3": _variants("confaide-", ("text", "image", *_UNRELATED)),
    "P4": tuple(f"celebrities/{t}" for t in P4_DATA_TYPES),
    "P5": ("vispr-leakage", "vispr-leakage-protected"),
    "P6": _variants("enron-email-", ("text", "image-oneinfo", "image-typeinfo", "image-allinfo", *_UNRELATED)),
}
MINI_DATASET_IDS: tuple[str, ...] = tuple(i for ids in MINI_TASKS.values() for i in ids)
MINI_TRACKS = ("utility", "over_refusal")


class MiniWriter:
    """Collects the records of every mini dataset and writes their images under `root/images/`."""

    def __init__(self, root: Path):
        self.root = root
        self.records: dict[str, list[dict]] = {}
        self._unrelated: dict[str, list[str]] = {}

    def rng(self, name: str) -> random.Random:
        """A random generator seeded by `name` (string seeds hash with SHA-512: the same on every run)."""
        return random.Random(f"mini-v{MINI_VERSION}:{name}")

    def image(self, relpath: str, img: Image.Image) -> str:
        """Save `img` as `images/<relpath>` (once) and return its path relative to the suite root."""
        rel = f"images/{relpath}"
        path = self.root / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            img.convert("RGB").save(path, format="PNG", optimize=False)
        return rel

    def easy_vqa(self, shape_image: assets.ShapeImage, split: str = "test") -> str:
        """Copy an easy-VQA image into the suite (so the suite does not depend on site-packages paths)."""
        with Image.open(shape_image.path) as img:
            return self.image(f"easyvqa/{split}-{shape_image.image_id}.png", img)

    def typographic(self, name: str, text: str, **kwargs) -> str:
        """A typographic image of `text` (see `assets.render_text_image`) saved under `images/<name>.png`."""
        return self.image(f"{name}.png", assets.render_text_image(text, **kwargs))

    def unrelated(self, kind: str, rng: random.Random, pool: int = 4) -> str:
        """One of `pool` fixed unrelated images of `kind` (color / nature / noise), drawn with `rng`."""
        if kind not in self._unrelated:
            self._unrelated[kind] = [
                self.image(f"unrelated/{kind}_{i}.png", assets.unrelated_image(kind, seed=i)) for i in range(pool)
            ]
        return rng.choice(self._unrelated[kind])

    def add(
        self,
        dataset_id: str,
        prompt: str,
        images: list[str] | tuple[str, ...] = (),
        target: Any = None,
        **metadata: Any,
    ) -> None:
        """Append one sample to `dataset_id`; its id is `<dataset_id>/<index>`."""
        rows = self.records.setdefault(dataset_id, [])
        rows.append(
            {
                "id": f"{dataset_id}/{len(rows):03d}",
                "prompt": prompt,
                "images": list(images),
                "target": target,
                "metadata": {"dataset_id": dataset_id, "source": "synthetic", **metadata},
            }
        )

    def add_variants(
        self,
        prefix: str,
        rng: random.Random,
        prompt: str,
        target: Any,
        *,
        text: str = "text",
        image: tuple[str, str] | None = None,
        **metadata: Any,
    ) -> None:
        """Add one item to `<prefix>text`, `<prefix><image[0]>` (with image[1]) and the three unrelated variants."""
        self.add(f"{prefix}{text}", prompt, [], target, **metadata)
        if image is not None:
            self.add(f"{prefix}{image[0]}", prompt, [image[1]], target, **metadata)
        for kind in assets.UNRELATED_KINDS:
            self.add(f"{prefix}unrelated-image-{kind}", prompt, [self.unrelated(kind, rng)], target, **metadata)


def _file_name(dataset_id: str) -> str:
    return dataset_id.replace("/", "__") + ".jsonl"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _builders() -> list[Callable[[MiniWriter], None]]:
    from eval_bridge.data import mini_fairness, mini_privacy, mini_robustness, mini_safety, mini_truthfulness

    return [
        mini_truthfulness.build,
        mini_safety.build,
        mini_robustness.build,
        mini_fairness.build,
        mini_privacy.build,
    ]


def _generate(root: Path) -> None:
    from eval_bridge.data import mini_tracks

    writer = MiniWriter(root)
    for build in _builders():
        build(writer)
    missing = [i for i in MINI_DATASET_IDS if not writer.records.get(i)]
    extra = sorted(set(writer.records) - set(MINI_DATASET_IDS))
    if missing or extra:  # a builder bug, not a user error
        raise RuntimeError(f"mini suite builders left datasets empty {missing} or made unknown ones {extra}")
    for dataset_id in MINI_DATASET_IDS:
        _write_jsonl(root / _file_name(dataset_id), writer.records[dataset_id])
    tracks = MiniWriter(root)
    mini_tracks.build(tracks)
    for track in MINI_TRACKS:
        _write_jsonl(root / "tracks" / f"{track}.jsonl", tracks.records[track])
    (root / "VERSION").write_text(MINI_VERSION + "\n")


def build_mini_suite(cache_dir: str | os.PathLike, *, force: bool = False) -> Path:
    """Generate the mini suite into `cache_dir/mini-v<MINI_VERSION>` unless it is there; return that folder.

    Args:
        cache_dir: where generated suites live (created if needed).
        force: rebuild even if a complete suite exists.
    Raises:
        assets.AssetMissingError: if an asset package is missing (the message names the pip command).
    """
    cache_dir = Path(cache_dir)
    suite = cache_dir / f"mini-v{MINI_VERSION}"
    if (suite / "VERSION").is_file() and not force:
        return suite
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".mini-v{MINI_VERSION}-", dir=cache_dir))
    try:
        _generate(tmp)
        # Another process (a rank of the same launch) may have finished first and be reading its copy: keep
        # it (it is identical), never delete a complete suite from under a reader unless asked to.
        if (suite / "VERSION").is_file() and not force:
            return suite
        if suite.exists():
            shutil.rmtree(suite)
        try:
            tmp.rename(suite)
        except OSError:  # another process finished in the meantime: keep its copy
            if not (suite / "VERSION").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return suite


def load_mini_dataset(dataset_id: str, cache_dir: str | os.PathLike) -> list[Sample]:
    """The samples of mini dataset `dataset_id` (building the suite on first use).

    Raises:
        ValueError: if `dataset_id` is not one of `MINI_DATASET_IDS`.
    """
    if dataset_id not in MINI_DATASET_IDS:
        raise ValueError(
            f"unknown mini dataset id {dataset_id!r}; it must be one of MultiTrust's dataset ids "
            f"(eval_bridge.data.mini.MINI_DATASET_IDS, e.g. {MINI_DATASET_IDS[0]!r})"
        )
    suite = build_mini_suite(cache_dir)
    return load_samples(suite / _file_name(dataset_id), data_root=suite)


def load_mini_track(track: str, cache_dir: str | os.PathLike) -> list[Sample]:
    """The samples of an extra track: "utility" (held-out easy-VQA questions) or "over_refusal" (benign requests).

    Raises:
        ValueError: on another track name.
    """
    if track not in MINI_TRACKS:
        raise ValueError(f"unknown mini track {track!r}; use one of {MINI_TRACKS}")
    suite = build_mini_suite(cache_dir)
    return load_samples(suite / "tracks" / f"{track}.jsonl", data_root=suite)
