"""`lrv`: LRV-Instruction negative-instruction tuning (Liu et al., "Mitigating Hallucination in Large Multi-Modal
Models via Robust Instruction Tuning", ICLR 2024, arXiv 2306.14565; repo FuxiaoLiu/LRV-Instruction). Targets
truthfulness: object and attribute hallucination and agreement with false premises.

SFT (loss on the assistant tokens only) on positive instructions mixed with three kinds of negative ones, whose
answers reject the false premise and state what the image does show:
- nonexistent element manipulation: the instruction names an object that is not there ("Is there a triangle in
  the image?" -> "No, there is no triangle in the image; it shows a red circle.");
- existent element manipulation: a present object with a wrong attribute ("Is the circle blue?" -> "No, the
  circle is not blue; it is red.");
- knowledge manipulation: a chart with a falsified value ("The chart shows the red bar at 7. Is that right?" ->
  "No, the red bar is not at 7; it shows 4.").
Offline, each negative is asked next to a positive of the same form about the same image ("Is there a circle in
the image?" -> "Yes, there is a red circle in the image."): a first run with unpaired records taught the 135M
default model to answer "No" to every yes/no question (over-denial, the pitfall METHODS 3.2 warns about).

Data in LRV-Instruction's public schema, `{image_id, question, answer, task}` (a JSON list, or wrapped in
`{"annotations": [...]}` as the repo's loader reads it), images by image_id under an image root (Visual Genome
style `<image_id>.jpg`). `load_lrv` reads and validates it; the offline generator (`generate_offline`) writes the
same schema from easy-VQA **train** images (the mini suite's truthfulness tasks and the utility track use the test
images) and bar charts drawn here, with `"source": "synthetic"` and the instruction type on each record, so one
loader and one conversion serve both. GPT-4's `task` labels are unreliable upstream (issue #21): nothing here
stratifies on them. Upstream answers often say "There is no mention of ...", which refers to the captions GPT-4
read; `image_grounded` rephrases them to refer to the image.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from eval_bridge.data import assets
from eval_bridge.files import write_atomically
from eval_bridge.samples import SampleError, read_records, resolve_under_root
from mitigation.data.lrv_config import NEGATIVE_TYPES, LrvConfig
from mitigation.data.rows import sft_row

log = logging.getLogger(__name__)

INSTRUCTION_TYPES = ("positive", *NEGATIVE_TYPES)
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")
# LRV's image_id is the Visual Genome id: its README's layout keeps the images in `image/` next to the JSON, and
# Visual Genome itself ships them in two folders.
IMAGE_SUBDIRS = ("", "image", "VG_100K", "VG_100K_2")
SCHEMA_HINT = "an LRV-Instruction record is {image_id, question, answer, task}"


# ---------------------------------------------------------------- the schema and its loader


@dataclass(frozen=True)
class LrvRecord:
    """One LRV-Instruction instance.

    Attributes:
        image_id: the record's image id (Visual Genome id upstream; "easyvqa-train-12", "chart-0003" offline).
        question: the instruction.
        answer: the answer as the file gives it (see `image_grounded` for what the model is trained on).
        task: the file's task label (unreliable upstream: kept, never used to stratify); None if absent.
        image: the resolved image path.
        source: the record's `source` field ("synthetic" offline; default "lrv-instruction").
        instruction_type: offline records: one of `INSTRUCTION_TYPES`; None for upstream records.
        file: the file it was read from; row: its index there (for errors).
    """

    image_id: str
    question: str
    answer: str
    task: str | None
    image: str
    source: str
    instruction_type: str | None
    file: str
    row: int


def _rows(path: Path):
    """(row, record) from a JSON list, a JSON `{"annotations": [...]}` wrapper or a JSONL file."""
    if not path.is_file():
        raise SampleError(f"LRV-Instruction file not found: {path}")
    if path.suffix == ".jsonl":
        return read_records(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise SampleError(f"invalid JSON ({err.msg} at line {err.lineno})", source=str(path)) from None
    if isinstance(data, Mapping) and "annotations" in data:
        data = data["annotations"]
    if not isinstance(data, list):
        raise SampleError(
            f"expected a JSON list of records or {{'annotations': [...]}}, got {type(data).__name__}; " + SCHEMA_HINT,
            source=str(path),
        )
    return enumerate(data)


def _string(row: Mapping, key: str, source: str, index: int, *, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SampleError(
            f"expected a non-empty string, got {value!r}; {SCHEMA_HINT}", source=source, row=index, field=key
        )
    return value.strip()


def find_image(image_id: str, root: Path, *, source: str, index: int) -> Path:
    """The image of `image_id` under `root`: `<id>.jpg` (.png, .jpeg) there or in `IMAGE_SUBDIRS`, or `image_id`
    itself if it names a file."""
    names = [image_id] if Path(image_id).suffix.lower() in IMAGE_SUFFIXES else []
    names += [str(Path(sub) / f"{image_id}{suffix}") for sub in IMAGE_SUBDIRS for suffix in IMAGE_SUFFIXES]
    for name in names:
        try:
            path = resolve_under_root(name, root)
        except SampleError as err:
            raise SampleError(str(err), source=source, row=index, field="image_id") from None
        if path.is_file():
            return path
    raise SampleError(
        f"no image for image_id {image_id!r} under {root} (looked for {image_id}.jpg, .png, .jpeg, also in "
        "image/, VG_100K/ and VG_100K_2/); fix lrv_image_root or drop the record",
        source=source,
        row=index,
        field="image_id",
    )


def validate_record(raw, source: str, index: int) -> dict:
    """The record's fields checked against the LRV schema: {image_id: str, question, answer, task, source, type}."""
    if not isinstance(raw, Mapping):
        raise SampleError(f"expected a JSON object, got {type(raw).__name__}; {SCHEMA_HINT}", source=source, row=index)
    image_id = raw.get("image_id")
    if isinstance(image_id, bool) or not isinstance(image_id, str | int) or not str(image_id).strip():
        raise SampleError(
            f"expected an image id (string or number), got {image_id!r}; {SCHEMA_HINT}",
            source=source,
            row=index,
            field="image_id",
        )
    kind = _string(raw, "instruction_type", source, index, required=False)
    if kind is not None and kind not in INSTRUCTION_TYPES:
        raise SampleError(
            f"unknown instruction type {kind!r}; use one of {', '.join(INSTRUCTION_TYPES)}",
            source=source,
            row=index,
            field="instruction_type",
        )
    return {
        "image_id": str(image_id).strip(),
        "question": _string(raw, "question", source, index),
        "answer": _string(raw, "answer", source, index),
        "task": _string(raw, "task", source, index, required=False),
        "source": _string(raw, "source", source, index, required=False) or "lrv-instruction",
        "instruction_type": kind,
    }


def load_lrv(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[LrvRecord]:
    """LRV-Instruction records from `path`, images resolved under `image_root` (default: the file's folder).

    Raises:
        SampleError: naming the file, the row and the field, for a malformed file, a record off the schema or an
            image that is not there (an unreadable one is reported when the rows are built: `sft_rows`).
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    source, records = str(path), []
    for index, raw in _rows(path):
        fields = validate_record(raw, source, index)
        image = find_image(fields["image_id"], root, source=source, index=index)
        records.append(LrvRecord(image=str(image), file=source, row=index, **fields))
    if not records:
        raise SampleError("no records in the file; " + SCHEMA_HINT, source=source)
    return records


# Upstream answers refer to the captions GPT-4 read, not to the image the model sees (METHODS 3.2).
_CAPTION_REFERENCES = (
    (r"\bthere (?:is|are) no mention of\b", "the image does not show"),
    (
        r"\bthe (?:given )?(?:captions?|descriptions?) (?:does|do) not (?:mention|include|say anything about)\b",
        "the image does not show",
    ),
    (r"\b(is|are) not mentioned(?: in the (?:given )?(?:captions?|descriptions?))?", r"\1 not visible in the image"),
    (r"\bmentioned in the (?:given )?(?:captions?|descriptions?)", "visible in the image"),
    (r"\bno mention of\b", "no sign of"),
)


def image_grounded(answer: str) -> str:
    """`answer` with references to captions ("There is no mention of a teapot") rephrased to the image ("The image
    does not show a teapot")."""
    for pattern, repl in _CAPTION_REFERENCES:
        answer = re.sub(pattern, lambda m, repl=repl: _same_case(m.expand(repl), m.group(0)), answer, flags=re.I)
    return answer


def _same_case(text: str, like: str) -> str:
    return text[:1].upper() + text[1:] if like[:1].isupper() else text


def sft_rows(records: list[LrvRecord]) -> list[dict]:
    """The records as SFT rows (user: image + question; assistant: the image-grounded answer)."""
    return [sft_row(r.question, [r.image], image_grounded(r.answer), source=r.file, row=r.row) for r in records]


# ---------------------------------------------------------------- the offline generator

ABSENT_OBJECTS = ("dog", "cat", "car", "person", "tree", "cup", "book", "bicycle", "clock", "flower", "chair", "bird")
CHART_COLORS = ("red", "green", "blue", "yellow", "teal", "brown")  # distinct at the base model's 64 px
CHART_SIZE, CHART_BARS, CHART_MAX = 128, 3, 9


@dataclass(frozen=True)
class Inventory:
    """What one generated image shows: an easy-VQA shape (shape, color) or a bar chart (bars: ((color, value),))."""

    image_id: str
    shape: str | None = None
    color: str | None = None
    bars: tuple[tuple[str, int], ...] = ()


def _other(rng: random.Random, options, value):
    return rng.choice([o for o in options if o != value])


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# Each entry: (negative question, negative answer, positive question, positive answer). A negative and its
# positive are asked about the same image in the same form ("Is there a triangle?" / "Is there a circle?"), so
# the first answer word ("No" / "Yes") can only be learned from the image, never from the question's form.
# Negative answers are "<denial>; <what the image shows>". Fields: {s} shape, {c} colour, {x} the manipulated
# element, {a} its article; charts: {b} bar colour, {v} its value, {w} the falsified value, {t}/{tv} the tallest.
NONEXISTENT_SHAPE = (
    (
        "Is there a {x} in the image?",
        "No, there is no {x} in the image; it shows a {c} {s}.",
        "Is there a {s} in the image?",
        "Yes, there is a {c} {s} in the image.",
    ),
    (
        "What color is the {x} in the image?",
        "There is no {x} in the image; it shows a {c} {s}.",
        "What color is the {s} in the image?",
        "The {s} is {c}.",
    ),
    (
        "How many {x}s are in the image?",
        "The image shows no {x}s; it shows one {c} {s}.",
        "How many {s}s are in the image?",
        "The image shows one {c} {s}.",
    ),
)
NONEXISTENT_OBJECT = (
    (
        "Is there {a} {x} in the image?",
        "No, the image shows no {x}; it shows a {c} {s}.",
        "Is there a {c} shape in the image?",
        "Yes, the image shows a {c} {s}.",
    ),
    (
        "Describe the {x} next to the {s}.",
        "There is no {x} in the image; it shows only a {c} {s}.",
        "Describe the image briefly.",
        "The image shows a single {c} {s}.",
    ),
    (
        "Tell me what the {x} in the picture is doing.",
        "The picture shows no {x}; it shows a {c} {s}.",
        "Tell me what the picture shows.",
        "The picture shows a {c} {s}.",
    ),
)
EXISTENT_COLOR = (
    ("Is the {s} {x}?", "No, the {s} is not {x}; it is {c}.", "Is the {s} {c}?", "Yes, the {s} is {c}."),
    (
        "Describe the {x} {s} in the image.",
        "The {s} in the image is not {x}; it is a {c} {s}.",
        "Describe the {c} {s} in the image.",
        "The image shows a single {c} {s}.",
    ),
    (
        "The {s} in the image is {x}. What color is the {s}?",
        "The {s} is not {x}; it is {c}.",
        "The {s} in the image is {c}. What color is the {s}?",
        "The {s} is {c}.",
    ),
)
EXISTENT_SHAPE = (
    (
        "Is the {c} shape a {x}?",
        "No, the {c} shape is not a {x}; it is a {s}.",
        "Is the {c} shape a {s}?",
        "Yes, the {c} shape is a {s}.",
    ),
    (
        "Why is the {c} {x} drawn so small?",
        "The {c} shape in the image is not a {x}; it is a {s}.",
        "What is the {c} shape in the image?",
        "The {c} shape is a {s}.",
    ),
    (
        "Since the shape is a {c} {x}, what color is it?",
        "The shape is not a {x}; it is a {c} {s}.",
        "Since the shape is a {c} {s}, what color is it?",
        "The shape is {c}.",
    ),
)
KNOWLEDGE = (
    (
        "The chart shows the {b} bar at {w}. Is that right?",
        "No, the {b} bar is not at {w}; it shows {v}.",
        "The chart shows the {b} bar at {v}. Is that right?",
        "Yes, the {b} bar shows {v}.",
    ),
    (
        "Why does the {b} bar show {w} in the chart?",
        "The {b} bar does not show {w}; it shows {v}.",
        "What value does the {b} bar show in the chart?",
        "The {b} bar shows {v}.",
    ),
    (
        "Since the {b} bar shows {w}, which bar is the tallest?",
        "The {b} bar does not show {w}; it shows {v}, and the tallest bar is the {t} bar at {tv}.",
        "Which bar is the tallest in the chart?",
        "The {t} bar is the tallest, at {tv}.",
    ),
)
SHAPE_TEMPLATES = NONEXISTENT_SHAPE + NONEXISTENT_OBJECT + EXISTENT_COLOR + EXISTENT_SHAPE


def _manipulation(rng: random.Random, kind: str, inv: Inventory) -> tuple[tuple[str, ...], dict]:
    """A template of negative type `kind` and its fields, the manipulated element `x` false for `inv`."""
    if kind == "knowledge":
        b, v = rng.choice(inv.bars)
        t, tv = max(inv.bars, key=lambda bar: bar[1])
        # Never one of the chart's values: a correct answer then never repeats the falsified number.
        w = rng.choice([n for n in range(1, CHART_MAX + 1) if n not in {value for _, value in inv.bars}])
        return rng.choice(KNOWLEDGE), dict(b=b, v=v, w=w, t=t, tv=tv, x=str(w))
    fields = dict(s=inv.shape, c=inv.color)
    if kind == "nonexistent" and rng.random() < 0.5:
        x = rng.choice(ABSENT_OBJECTS)
        return rng.choice(NONEXISTENT_OBJECT), dict(fields, x=x, a=_article(x))
    if kind == "nonexistent":
        return rng.choice(NONEXISTENT_SHAPE), dict(fields, x=_other(rng, assets.SHAPES, inv.shape))
    if rng.random() < 0.5:
        return rng.choice(EXISTENT_COLOR), dict(fields, x=_other(rng, assets.COLORS, inv.color))
    return rng.choice(EXISTENT_SHAPE), dict(fields, x=_other(rng, assets.SHAPES, inv.shape))


def _positive_only(rng: random.Random, inv: Inventory) -> tuple[tuple[str, ...], dict]:
    """A positive with no negative partner: any template's positive side."""
    if inv.bars:
        return _manipulation(rng, "knowledge", inv)  # only its positive side is used
    return rng.choice(SHAPE_TEMPLATES), dict(s=inv.shape, c=inv.color, x="", a="")


def draw_chart(bars: tuple[tuple[str, int], ...], size: int = CHART_SIZE) -> Image.Image:
    """A bar chart: one bar per (color, value), heights on a 0-`CHART_MAX` grid, each value printed above its bar."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(8, size // 12))
    left, bottom, top = size // 8, size - size // 10, size // 8
    unit = (bottom - top) / CHART_MAX
    for v in range(CHART_MAX + 1):  # light grid lines: the value is readable from the height alone
        y = round(bottom - v * unit)
        draw.line([(left, y), (size - 4, y)], fill=(225, 225, 225))
    draw.line([(left, top), (left, bottom), (size - 4, bottom)], fill=(0, 0, 0), width=2)
    width = (size - left - 8) // len(bars)
    for k, (color, value) in enumerate(bars):
        x0 = left + 4 + k * width
        y0 = round(bottom - value * unit)
        draw.rectangle([x0, y0, x0 + width - 8, bottom - 1], fill=assets.RGB[color])
        draw.text((x0 + width // 2 - 6, y0 - size // 10), str(value), fill=(0, 0, 0), font=font)
    return img


def type_counts(n: int, negative_ratio: float, shares: Mapping[str, float]) -> dict[str, int]:
    """Records per instruction type: round(n * negative_ratio) negatives split by `shares` (largest remainder)."""
    n_negative = round(n * negative_ratio)
    exact = {t: n_negative * shares.get(t, 0.0) for t in NEGATIVE_TYPES}
    counts = {t: int(v) for t, v in exact.items()}
    for t in sorted(NEGATIVE_TYPES, key=lambda t: counts[t] - exact[t])[: n_negative - sum(counts.values())]:
        counts[t] += 1
    return {"positive": n - n_negative, **counts}


NEGATIVE_TASKS = {
    "nonexistent": "negative: nonexistent element",
    "existent": "negative: existent element",
    "knowledge": "negative: knowledge manipulation",
}


def generate_offline(
    out_dir: str | os.PathLike,
    *,
    n: int,
    negative_ratio: float = 0.5,
    shares: Mapping[str, float] | None = None,
    seed: int = 0,
) -> Path:
    """Write `n` LRV-schema records (`lrv_synthetic.json`, `{"annotations": [...]}`), their images under
    `out_dir/image` (the upstream layout) and what each image shows (`inventory.json`); deterministic for the
    arguments.

    Each negative is paired with a positive of the same form on the same image while positives last (at
    `negative_ratio` 0.5 every image carries one of each); the rest get an image of their own. Shape records use
    easy-VQA train images, knowledge ones drawn bar charts; charts carry their positives too. Returns the JSON
    file's path (load it with `load_lrv`).
    """
    from mitigation.data.lrv_config import parse_shares

    shares = dict(shares) if shares is not None else parse_shares(LrvConfig.negative_type_shares)
    out = Path(out_dir)
    rng = random.Random(f"lrv-offline:{seed}")
    counts = type_counts(n, negative_ratio, shares)
    negatives = [t for t in NEGATIVE_TYPES for _ in range(counts[t])]
    rng.shuffle(negatives)
    n_pairs = min(len(negatives), counts["positive"])
    lone = counts["positive"] - n_pairs
    lone_charts = round(lone * shares.get("knowledge", 0.0))
    groups = [(kind, True) for kind in negatives[:n_pairs]] + [(kind, False) for kind in negatives[n_pairs:]]
    groups += [("positive", False)] * lone  # kind "positive": a positive alone
    charts = [k == "knowledge" for k, _ in groups[: len(groups) - lone]] + [True] * lone_charts
    charts += [False] * (lone - lone_charts)
    order = list(range(len(groups)))
    rng.shuffle(order)
    pool = assets.easy_vqa_images("train")
    n_shapes = len(groups) - sum(charts)
    if n_shapes > len(pool):
        raise ValueError(f"asked for {n_shapes} shape images; easy-VQA has {len(pool)} train images")
    shapes = iter(rng.sample(pool, n_shapes))
    records, inventory = [], {}
    for k in order:
        (kind, paired), chart = groups[k], charts[k]
        inv = _new_image(out, rng, k, None if chart else next(shapes))
        inventory[inv.image_id] = (
            {"bars": [list(b) for b in inv.bars]} if chart else {"shape": inv.shape, "color": inv.color}
        )
        if kind == "positive":
            template, fields = _positive_only(rng, inv)
        else:
            template, fields = _manipulation(rng, kind, inv)
            records.append(_record(inv, template[0], template[1], fields, kind, NEGATIVE_TASKS[kind], fields["x"]))
        if kind == "positive" or paired:
            records.append(_record(inv, template[2], template[3], fields, "positive", "positive", None))
    path = out / "lrv_synthetic.json"
    _write_json(path, {"annotations": records})
    _write_json(out / "inventory.json", inventory)
    return path


def _new_image(out: Path, rng: random.Random, k: int, shape: assets.ShapeImage | None) -> Inventory:
    """The inventory of a copied easy-VQA image (`shape`) or of a new chart, its PNG written under `out/image`."""
    if shape is not None:
        inv = Inventory(f"easyvqa-train-{shape.image_id}", shape=shape.shape, color=shape.color)
        _write_png(out / "image" / f"{inv.image_id}.png", lambda: _open_rgb(shape.path))
        return inv
    colors = rng.sample(CHART_COLORS, CHART_BARS)
    values = rng.sample(range(1, CHART_MAX + 1), CHART_BARS)  # distinct: one tallest bar, values left to falsify
    inv = Inventory(f"chart-{k:05d}", bars=tuple(zip(colors, values, strict=True)))
    _write_png(out / "image" / f"{inv.image_id}.png", lambda: draw_chart(inv.bars))
    return inv


def _record(inv: Inventory, question: str, answer: str, fields: dict, kind: str, task: str, manipulated) -> dict:
    return {
        "image_id": inv.image_id,
        "question": question.format(**fields),
        "answer": answer.format(**fields),
        "task": task,
        "source": "synthetic",
        "instruction_type": kind,
        "manipulated": manipulated,
    }


def _open_rgb(path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def _write_png(path: Path, make) -> None:
    if not path.is_file():  # images are deterministic: another rank's copy is the same
        write_atomically(path, lambda tmp: make().save(tmp, format="PNG"))


def _write_json(path: Path, data) -> None:
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------- the recipe


def training_records(cfg: LrvConfig) -> list[LrvRecord]:
    """The offline instructions (if any) and the user's LRV file (if any), shuffled together with the seed."""
    records: list[LrvRecord] = []
    if cfg.synthetic_records:
        key = f"{cfg.synthetic_records}-{cfg.negative_ratio}-{sorted(cfg.shares().items())}"
        folder = Path(cfg.cache_dir) / "data" / f"lrv-s{cfg.seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
        path = generate_offline(
            folder, n=cfg.synthetic_records, negative_ratio=cfg.negative_ratio, shares=cfg.shares(), seed=cfg.seed
        )
        records += load_lrv(path)  # the same loader as the real data: the same checks on both
    if cfg.lrv_file:
        real = load_lrv(cfg.lrv_file, cfg.lrv_image_root)
        if 0 <= cfg.lrv_max_records < len(real):
            real = random.Random(f"lrv-subset:{cfg.seed}").sample(real, cfg.lrv_max_records)
        records += real
    random.Random(f"lrv-mix:{cfg.seed}").shuffle(records)
    return records


def plan(cfg: LrvConfig, base: str):
    """One SFT stage on the instructions; evaluated on the shared held-out tracks and `cfg.eval_tasks`."""
    from mitigation.training.method_recipe import RecipePlan, heldout_eval_files, shared_sources
    from mitigation.training.pipeline import Stage

    records = training_records(cfg)
    kinds = Counter(r.instruction_type or "lrv_file" for r in records)
    log.info("lrv data: %d instructions (%s)", len(records), ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    # the config's `max_steps` (the run-wide cap) is this stage's step count
    stage = Stage.from_config("sft", "sft", sft_rows(records), cfg, args={"assistant_only_loss": True})
    return RecipePlan([stage], heldout_eval_files(cfg, shared_sources(cfg)))


def run_lrv(cfg: LrvConfig) -> str | None:
    """Run the method: data -> SFT -> every checkpoint through the bridge; returns the trade-off table."""
    from mitigation.training.method_recipe import run_recipe

    return run_recipe(cfg, plan)
