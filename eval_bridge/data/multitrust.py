"""MultiTrust (thu-ml/MMTrustEval) datasets read from its released `data/` folder as lists of `Sample`.

MultiTrust: "Benchmarking Trustworthiness of Multimodal Large Language Models" (Zhang et al., 2024). Its 32 tasks
(T1-T7 truthfulness, S1-S6 safety, R1-R6 robustness, F1-F7 fairness, P1-P6 privacy) run over the dataset ids in
`DATASET_IDS`; `load_multitrust_dataset(dataset_id, data_root)` builds the same requests as MultiTrust's dataset
class for that id (`mmte/datasets/*.py` at a067801): the same files, prompt wrappers, targets and `extra` fields
(as `metadata`, plus `dataset_id`). The per-aspect readers are in `multitrust_<aspect>.py`.

Sample fields: `id` is `<row>:<image or key>` (row = 0-based record index in the annotation file; listing-based
datasets use the image's path under the data root), unique within a dataset and stable across runs; `source` is
`<annotation file relative to the data root>:<row>`; `images` are absolute paths, empty for text-only variants.
Every path goes through `resolve_under_root`, so annotation paths that escape the data root are refused.
P4's ids are `celebrities/<data_type_id>` for the 12 "personal-*" data types of MultiTrust's P4 run script.

Deviations from upstream (each on purpose):
- Unrelated images (`unrelated_images/*color*|*nature*|*noise*`, natural sort) are drawn with a
  `random.Random` seeded by the dataset id and the sample index (S6: the row and kind), so pairings are
  reproducible; upstream uses the unseeded global `random`.
- Directory listings (S1, S2, S6 pos/neg, F1, F4) are sorted by name; upstream uses filesystem order.
- A missing image is a `MultiTrustDataError` naming the path, except in the classes that drop such samples
  upstream (T1, T5, T6, P1/P2/P5 VISPR, P1 VizWiz), which drop them with a warning. T1 grounding drops too (upstream
  would crash opening it). Text-only variants do not require the image folders.
- T2: a `truth` other than Yes/No is kept raw (upstream leaves the previous row's target).
- T6 and T5 label problems, unknown F3 labels/topics and malformed rows raise `SampleError` naming file, row and
  field (upstream raises bare errors or crashes).
- S3 `-image`: the image's category is the prompt's own category (upstream computes `index // 10`; the same
  when, as released, every category holds 10 prompts).
- F5 uses the wording of its task config (`force_prompt: False`: "Give me your answer and tell me why.").
- F6 keeps upstream's zip of per-flag attribute lists (a row without exactly one flag per attribute shifts later
  rows) but warns about such rows.
- F7 reproduces upstream's bug: every variant, image and unrelated-image ones included, is text-only. Its force
  variants keep upstream's misaligned `subset` (the topic of item i for item 120+i); `metadata["topic"]` holds
  the item's own topic.
- P3: prompts.txt and labels.txt must have the same number of lines (upstream silently truncates to the shorter).
- P4 never downloads celebrity photos: a missing `celeb/imgs/<First_Last>.jpeg` is a `MultiTrustDataError` that
  gives the photo's URL.
- P6 never downloads `five_shot.json` from a hub. Synthetic PII values come from one RNG with a fixed seed shared
  by all P6 variants (so text and image variants ask about the same values); upstream is unseeded. The ground
  truth keeps first-seen order (upstream: `set` order). The typographic images are rendered here with PIL
  (`data_root/fonts/FreeMonoBold.ttf` at 90 pt if present, else PIL's default font), into
  `<cache_dir>/enron_email_related_imgs/<oneinfo|typeinfo|allinfo>/`, where `cache_dir` defaults to
  `<data_root>/../cache` as upstream's `./cache`; files are named by sample index, PII type and a hash of the
  rendered text (upstream names them by type and value, so equal values overwrite each other) and reused when
  present. `allinfo` shuffles with a RNG seeded by the dataset id and sample index. `metadata` adds `pii_type`.
- R3/R6 `metadata` adds the fields the scorers need: R3 `category`; R6 `task` and `label`.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from eval_bridge.data import (
    multitrust_fairness,
    multitrust_privacy,
    multitrust_robustness,
    multitrust_safety,
    multitrust_truthfulness,
)
from eval_bridge.data.multitrust_base import Context, MultiTrustDataError
from eval_bridge.samples import Sample

_LOADERS = {
    **multitrust_truthfulness.LOADERS,
    **multitrust_safety.LOADERS,
    **multitrust_robustness.LOADERS,
    **multitrust_fairness.LOADERS,
    **multitrust_privacy.LOADERS,
}
DATASET_IDS: tuple[str, ...] = tuple(_LOADERS)

__all__ = ["DATASET_IDS", "MultiTrustDataError", "load_multitrust_dataset"]


def load_multitrust_dataset(
    dataset_id: str, data_root: str | Path, *, cache_dir: str | Path | None = None
) -> list[Sample]:
    """The samples MultiTrust builds for `dataset_id`, read from `data_root` (MultiTrust's `data/` folder).

    Args:
        dataset_id: one of `DATASET_IDS`.
        data_root: the folder holding `truthfulness/`, `safety/`, ... and `unrelated_images/`.
        cache_dir: where P6's rendered typographic images go (default `<data_root>/../cache`).
    Raises:
        ValueError: unknown dataset id (the message lists close matches).
        MultiTrustDataError: a file or folder the dataset needs is missing (the message names the path).
        SampleError: a malformed annotation, or a path that escapes the data root.
    """
    if dataset_id not in _LOADERS:
        close = difflib.get_close_matches(dataset_id, DATASET_IDS, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known ids: {', '.join(DATASET_IDS)}"
        raise ValueError(f"unknown MultiTrust dataset id {dataset_id!r}{hint}")
    root = Path(data_root).resolve()
    if not root.is_dir():
        raise MultiTrustDataError(
            f"MultiTrust dataset '{dataset_id}': data root not found at {root} (MultiTrust's `data/` folder)"
        )
    ctx = Context(dataset_id, root, Path(cache_dir) if cache_dir is not None else None)
    return _LOADERS[dataset_id](ctx)
