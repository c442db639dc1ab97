"""File helpers shared by the suite's data builders, the eval bridge and the recipes."""

from __future__ import annotations

import os
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
