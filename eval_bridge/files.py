"""File helpers shared by the suite's data builders, the eval bridge and the recipes: atomic writes, builds that
are never half-finished, writable output directories and their lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
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


LOCK_NAME = ".output.lock"


class OutputDirInUse(RuntimeError):
    """Another live process holds the output directory's lock (the message names it: pid and host)."""


def writable_dir(path: str | os.PathLike, option: str) -> Path:
    """`path` as a directory this process can write to (created if needed), or an OSError naming `option`.

    Checked before any work starts, so a run never computes for hours and then fails to write its results.
    """
    path = Path(path)
    probe = path / f".write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OSError(
            f"{option} {path}: cannot write there ({err.strerror or err}); pass a folder you can write to"
        ) from None
    return path


@contextlib.contextmanager
def output_dir_lock(path: str | os.PathLike, option: str = "--output") -> Iterator[Path]:
    """Hold an advisory lock on the output directory `path` for the body of a `with`.

    A second process asking for the same directory is refused at once with an `OutputDirInUse` naming the
    holder's pid and host (written into the lock file), instead of both writing the same results. The lock is
    `fcntl.flock`, released by the kernel when the holder exits or is killed, so a dead run never leaves a stale
    lock behind; the lock file itself stays (deleting it would let two processes lock two different files).
    """
    path = writable_dir(path, option)
    with (path / LOCK_NAME).open("a+", encoding="utf-8") as handle:  # "a+": never truncate the holder's note
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "a process that has not written its name yet"
            raise OutputDirInUse(
                f"{option} {path} is in use by another run ({holder}); wait for it to finish or pass another {option}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield path
