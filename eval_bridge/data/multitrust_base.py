"""Shared plumbing of the MultiTrust readers: the error type, file reading under the data root, unrelated images.

Every aspect module (`multitrust_<aspect>.py`) maps dataset ids to functions `loader(ctx) -> list[Sample]`; the
`Context` they receive knows the dataset id and the data root and does all path handling, so that every path goes
through `resolve_under_root` and every missing file is reported the same way.
"""

from __future__ import annotations

import csv
import json
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval_bridge.samples import Sample, SampleError, resolve_under_root

UNRELATED_KINDS = ("color", "nature", "noise")
UNRELATED_SUFFIXES = tuple(f"unrelated-image-{kind}" for kind in UNRELATED_KINDS)
# The text / image / three unrelated-image variants that many MultiTrust datasets come in.
VARIANTS = ("text", "image", *UNRELATED_SUFFIXES)


# Said of a malformed annotation file: the usual cause is an interrupted download or extraction.
_RETAKE = "; a truncated file? take it again from the MultiTrust release"


class MultiTrustDataError(FileNotFoundError):
    """A file or folder that a MultiTrust dataset needs is missing; the message names the dataset and the path."""


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically ("img2" < "img10"), as natsort does for plain names."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Context:
    """One load of one dataset: its id, the data root (MultiTrust's `data/`) and an optional render cache."""

    dataset_id: str
    root: Path
    cache_dir: Path | None = None

    # ---- paths -------------------------------------------------------------------------------------------------
    def path(self, rel: str | Path) -> Path:
        """`rel` resolved under the data root; a path that escapes it is refused with a `SampleError`."""
        try:
            return resolve_under_root(rel, self.root)
        except SampleError as err:
            raise SampleError(f"MultiTrust dataset '{self.dataset_id}': {err}") from None

    def missing(self, path: Path, what: str) -> MultiTrustDataError:
        return MultiTrustDataError(
            f"MultiTrust dataset '{self.dataset_id}': {what} not found at {path} "
            f"(data root {self.root}; the MultiTrust release's `data/` folder)"
        )

    def require_file(self, rel: str | Path, what: str) -> Path:
        path = self.path(rel)
        if not path.is_file():
            raise self.missing(path, what)
        return path

    def require_dir(self, rel: str | Path, what: str) -> Path:
        path = self.path(rel)
        if not path.is_dir():
            raise self.missing(path, what)
        return path

    def image(self, rel: str | Path) -> str:
        """Absolute path of an image that must exist (missing -> `MultiTrustDataError` naming it)."""
        return str(self.require_file(rel, "image file"))

    def image_or_none(self, rel: str | Path) -> str | None:
        """Absolute path of an image, or None with a warning when it is missing (the classes that drop samples)."""
        path = self.path(rel)
        if path.is_file():
            return str(path)
        warnings.warn(f"MultiTrust dataset '{self.dataset_id}': image {path} not found; sample dropped", stacklevel=3)
        return None

    def list_files(self, rel: str | Path, what: str) -> list[Path]:
        """Files of a folder, sorted by name (upstream uses filesystem order, which is not reproducible)."""
        return [p for p in self._entries(rel, what) if p.is_file()]

    def list_dirs(self, rel: str | Path, what: str) -> list[Path]:
        """Sub-folders of a folder, sorted by name."""
        return [p for p in self._entries(rel, what) if p.is_dir()]

    def _entries(self, rel: str | Path, what: str) -> list[Path]:
        folder = self.require_dir(rel, what)
        return [self.path(p) for p in sorted(folder.iterdir(), key=lambda p: p.name) if not p.name.startswith(".")]

    def rel(self, path: Path) -> str:
        """`path` relative to the data root, POSIX style (used in ids and `source`)."""
        return path.relative_to(self.root).as_posix()

    # ---- annotation files --------------------------------------------------------------------------------------
    def read_json(self, rel: str, what: str = "annotation file (JSON)") -> Any:
        path = self.require_file(rel, what)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise SampleError(f"invalid JSON ({err.msg} at line {err.lineno}){_RETAKE}", source=str(path)) from None

    def read_jsonl(self, rel: str, what: str = "annotation file (JSON Lines: one object a line)") -> list[Any]:
        """Records of a JSON Lines file; blank lines are skipped (upstream would crash on them)."""
        path = self.require_file(rel, what)
        records = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise SampleError(
                    f"invalid JSON Lines record ({err.msg}); this file is read one JSON object a line{_RETAKE}",
                    source=str(path),
                    row=lineno,
                ) from None
        return records

    def read_csv(self, rel: str, columns: tuple[str, ...], what: str = "annotation file (CSV)") -> list[dict]:
        """Rows of a CSV file with a header (as `csv.DictReader`); the named columns must be present."""
        path = self.require_file(rel, f"{what} with columns {', '.join(columns)}")
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise SampleError(
                    f"missing CSV column(s) {missing}; found {reader.fieldnames}", source=str(path), row=0
                )
            rows = list(reader)
        for row, rec in enumerate(rows):
            if None in rec.values():  # csv fills the columns a short (cut-off) row lacks with None
                short = [k for k, v in rec.items() if v is None]
                raise SampleError(
                    f"the row has no value for column(s) {short}: it is cut short{_RETAKE}",
                    source=str(path),
                    row=row,
                    field=short[0],
                )
        return rows

    def read_lines(self, rel: str, what: str) -> list[str]:
        """Stripped lines of a text file, trailing blank lines dropped."""
        lines = [line.strip() for line in self.require_file(rel, what).read_text(encoding="utf-8").splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    # ---- unrelated images --------------------------------------------------------------------------------------
    def unrelated_pool(self, kind: str) -> list[str]:
        """`unrelated_images/*<kind>*`, natural sort (as upstream's `UnrelatedImageDataset`)."""
        folder = self.require_dir("unrelated_images", f"folder of unrelated images (files named *{kind}*)")
        pool = sorted((p.name for p in folder.iterdir() if kind in p.name and p.is_file()), key=natural_key)
        if not pool:
            raise MultiTrustDataError(
                f"MultiTrust dataset '{self.dataset_id}': no unrelated image with '{kind}' in its name in {folder}"
            )
        return [str(self.path(Path("unrelated_images") / name)) for name in pool]

    def draw_unrelated(self, kind: str, key: Any, k: int = 1) -> list[str]:
        """`k` distinct unrelated images of `kind`, drawn with a RNG seeded by the dataset id and `key`.

        Upstream draws with the unseeded global `random`; seeding per sample keeps pairings reproducible and
        independent of how many samples come before.
        """
        pool = self.unrelated_pool(kind)
        if len(pool) < k:
            raise MultiTrustDataError(
                f"MultiTrust dataset '{self.dataset_id}': needs {k} unrelated '{kind}' images, found {len(pool)}"
            )
        return random.Random(f"{self.dataset_id}:{key}").sample(pool, k)

    # ---- samples -----------------------------------------------------------------------------------------------
    def sample(
        self,
        sid: str,
        prompt: str,
        images: tuple[str, ...] | list[str] = (),
        target: Any = None,
        extra: dict | None = None,
        source: str | None = None,
    ) -> Sample:
        """A `Sample` whose metadata is MultiTrust's `extra` plus the dataset id."""
        return Sample(
            id=sid,
            prompt=prompt,
            images=tuple(images),
            target=target,
            metadata={**(extra or {}), "dataset_id": self.dataset_id},
            source=source,
        )


def variant_images(ctx: Context, variant: str, related: str | Path | None, key: Any) -> tuple[str, ...] | None:
    """Images for a text / image / unrelated-image variant: none, the related image, or one drawn unrelated image.

    Returns None when `variant` is "image" and `related` is None (no related image for this row).
    """
    if variant == "text":
        return ()
    if variant in ("image", "related-image"):
        return None if related is None else (ctx.image(related),)
    kind = variant.rsplit("-", 1)[-1]
    return tuple(ctx.draw_unrelated(kind, key))


def yes_no(value: Any) -> Any:
    """MultiTrust's yes/no label: "Yes" -> 1, "No" -> 0, anything else unchanged."""
    return {"Yes": 1, "No": 0}.get(value, value) if isinstance(value, str) else value


def field(record: Any, name: str, *, source: str, row: int) -> Any:
    """`record[name]`, or a `SampleError` naming the file, row and field."""
    if not isinstance(record, dict):
        raise SampleError(f"expected a JSON object, got {type(record).__name__}", source=source, row=row)
    if name not in record:
        raise SampleError("missing field", source=source, row=row, field=name)
    return record[name]
