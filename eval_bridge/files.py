"""File helpers shared by the suite's data builders, the eval bridge and the recipes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a hidden temporary file next to `path`, then rename it onto `path`.

    A reader (another rank of a multi-process launch, the bridge's worker) sees the old file or the whole new
    one, never half of one. The temporary name carries the process id, so ranks writing the same file do not
    share it; it does not end in the file's suffix, so writers that infer a format from the name (PIL) must be
    told it. If `write` fails, the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


BUILD_MARKER = "BUILD_COMPLETE.json"


def is_built(path: str | os.PathLike) -> bool:
    """True if `path` holds a finished `build_once` build (its marker file exists)."""
    return (Path(path) / BUILD_MARKER).is_file()


def build_once(out: str | os.PathLike, build: Callable[[Path], object]) -> Path:
    """The directory `out`, built by `build(tmp)` unless it is already finished; returns `out`.

    `build` fills a sibling temporary directory and writes `BUILD_MARKER` into it last; the directory is then
    renamed onto `out`, so an interrupted build is never mistaken for a finished one. An unfinished earlier
    build at `out` (no marker) is replaced; a build another process finished first is kept.
    """
    out = Path(out)
    if is_built(out):
        return out
    partial = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        build(partial)
        if is_built(out):  # another process finished first: keep its build
            return out
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out
