"""The README's main command (for now): build the tiny VLM of every family and generate with it, batched.

Until the RESA recipe lands this runs what the foundation offers, end to end and offline: it builds (or reuses)
the tiny random VLMs, writes a small file of mixed requests (with and without images, different lengths),
loads each model through the one model adapter, generates greedily in batches and one sample at a time, and
prints a table: whether both give the same text, and the samples/s of each.
"""

import argparse
import json
import time
from pathlib import Path

from PIL import Image, ImageDraw

from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.models.tiny import FAMILIES, save_tiny_vlm
from eval_bridge.samples import load_samples

SHAPES = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "circle")]


def _draw(colour: str, shape: str, path: Path) -> None:
    img = Image.new("RGB", (64, 64), "white")
    d = ImageDraw.Draw(img)
    box = (12, 12, 52, 52)
    if shape == "circle":
        d.ellipse(box, fill=colour)
    elif shape == "square":
        d.rectangle(box, fill=colour)
    else:
        d.polygon([(32, 10), (54, 54), (10, 54)], fill=colour)
    img.save(path)


def write_requests(folder: Path) -> Path:
    """Write 16 demo requests (12 with an image) and their images into `folder`; returns the .jsonl path."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(16):
        colour, shape = SHAPES[i % len(SHAPES)]
        if i % 4 == 3:
            rows.append({"id": f"t{i}", "prompt": "Name one shape that has " + "three " * (i % 5 + 1) + "corners."})
            continue
        name = f"{colour}_{shape}_{i}.png"
        _draw(colour, shape, folder / name)
        question = ["What shape is in the image?", "What colour is the shape?", "Is there a circle?"][i % 3]
        rows.append({"id": f"i{i}", "prompt": question, "images": [name], "target": shape})
    path = folder / "requests.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", default=".cache/demo", help="where tiny models and demo requests are kept")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=16)
    args = p.parse_args(argv)

    cache = Path(args.cache)
    samples = load_samples(write_requests(cache / "requests"))
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    print(
        f"{len(samples)} requests ({sum(bool(s.images) for s in samples)} with an image), greedy, "
        f"{args.max_new_tokens} new tokens\n"
    )
    print("| family | params | batched == one-by-one | batched samples/s | one-by-one samples/s | speed-up |")
    print("|---|---|---|---|---|---|")
    for family in FAMILIES:
        model_dir = cache / "tiny-vlms" / family
        if not (model_dir / "config.json").is_file():
            save_tiny_vlm(family, model_dir)
        vlm = VLM.load(str(model_dir))
        t0 = time.perf_counter()
        batched = vlm.generate(samples, settings)
        t1 = time.perf_counter()
        single = [vlm.generate([s], settings)[0] for s in samples]
        t2 = time.perf_counter()
        same = sum(a.text == b.text for a, b in zip(batched, single, strict=True))
        params = sum(t.numel() for t in vlm.model.parameters())
        rate_b, rate_s = len(samples) / (t1 - t0), len(samples) / (t2 - t1)
        print(
            f"| {family} | {params / 1e3:.0f}k | {same}/{len(samples)} | {rate_b:.1f} | {rate_s:.1f} | "
            f"{rate_b / rate_s:.1f}x |"
        )
    print(f"\nexample ({FAMILIES[-1]}, random weights): {samples[0].prompt!r} -> {batched[0].text!r}")


if __name__ == "__main__":
    main()
