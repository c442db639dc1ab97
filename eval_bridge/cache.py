"""On-disk caches: model responses and judge replies, so an interrupted run resumes and a rerun costs nothing.

Responses are keyed by (model fingerprint, method, generation settings) — one folder each — and, inside it, by
(task, dataset, sample id, sample content hash). Each process appends to its own JSON Lines file and flushes
after every batch, so a crash loses at most the batch in flight and parallel ranks never write the same file. An
entry that cannot be trusted (cut short by a kill, not JSON, the wrong shape) is logged with its file and line
and generated again.
Judge replies are keyed by (judge id, prompt hash).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from eval_bridge.models.fingerprint import file_digest
from eval_bridge.samples import Sample

CACHE_ENV = "VLM_TRUST_CACHE"
log = logging.getLogger(__name__)
# What a response entry must hold to be trusted (see `_read_jsonl`).
_RESPONSE_FIELDS = {"task": str, "dataset": str, "sample_id": (str, int), "hash": str, "response": str}


def cache_root() -> Path:
    """The toolkit's user cache (built models, stand-in classifiers): `$VLM_TRUST_CACHE`, else
    `$XDG_CACHE_HOME/vlm_trust`, else `~/.cache/vlm_trust`. Never inside the installed package."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "vlm_trust"


def stable_hash(obj: Any) -> str:
    """sha256 (16 hex chars) of a JSON-serialisable object, independent of dict order."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sample_hash(sample: Sample) -> str:
    """Hash of everything in a sample that reaches the model: texts and image contents."""
    images = []
    for ref in sample.images:
        if isinstance(ref, Image.Image):
            images.append(hashlib.sha256(ref.tobytes()).hexdigest())
        else:
            images.append(file_digest(Path(ref)))
    return stable_hash([sample.prompt, sample.system, list(sample.history), images])


_REPORTED: set[tuple[str, int]] = set()  # corrupt entries already logged (caches reload several times a run)


def _read_jsonl(path: Path, fields: dict[str, type | tuple[type, ...]]) -> Iterable[dict]:
    """The entries of a cache file that have every field in `fields` with its type.

    Anything else (a line cut short by a kill, a line that is not JSON, an entry of the wrong shape) is never
    trusted: it is logged once with the file and line, and skipped, so its response is generated again.
    """
    with path.open(encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
                problem = None
            except json.JSONDecodeError as err:
                row, problem = None, f"not JSON ({err.msg})"
            if problem is None:
                if not isinstance(row, dict):
                    problem = f"a JSON {type(row).__name__}, not an object"
                else:
                    bad = [k for k, t in fields.items() if not isinstance(row.get(k), t)]
                    problem = f"missing or mistyped field(s) {', '.join(bad)}" if bad else None
            if problem is None:
                yield row
            elif (str(path), lineno) not in _REPORTED:
                _REPORTED.add((str(path), lineno))
                log.warning(
                    "%s line %d: corrupt cache entry (%s): not trusted, it will be regenerated", path, lineno, problem
                )


def _append_lines(path: Path, lines: list[str]) -> None:
    """Append whole lines to `path` in one write, then fsync.

    A file whose last line was cut short (a kill mid-write) first gets a newline, so the cut line stays one
    corrupt entry and the new ones stay intact. One `os.write` per batch: a signal never splits a batch's
    lines, and O_APPEND keeps concurrent writers' batches whole.
    """
    if not lines:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        head = ""
        if size:
            with path.open("rb") as f:
                f.seek(size - 1)
                head = "" if f.read(1) == b"\n" else "\n"
        data = (head + "".join(lines)).encode("utf-8")
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)


class ResponseCache:
    """Responses of one (model, method, generation settings) combination.

    Args:
        root: the cache root folder.
        model_fingerprint, method_key, generation_key: identify the folder.
        rank: this process's index; it writes `responses.rank<rank>.jsonl` and reads every rank's file.
    """

    def __init__(self, root: str | os.PathLike, model_fingerprint: str, method_key: str, generation_key: str, rank=0):
        self.dir = Path(root) / "responses" / model_fingerprint / method_key / generation_key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"responses.rank{rank}.jsonl"
        self._entries: dict[tuple, str] = {}
        self.reload()

    @staticmethod
    def key(task: str, dataset: str, sample: Sample, digest: str) -> tuple:
        return (task, dataset, sample.id, digest)

    def reload(self) -> None:
        """Read every rank's file (e.g. after other processes finished their shards)."""
        self._entries.clear()
        for path in sorted(self.dir.glob("responses.rank*.jsonl")):
            for row in _read_jsonl(path, _RESPONSE_FIELDS):
                self._entries[(row["task"], row["dataset"], row["sample_id"], row["hash"])] = row["response"]

    def get(self, key: tuple) -> str | None:
        return self._entries.get(key)

    def put_many(self, items: Iterable[tuple[tuple, str]]) -> None:
        """Append (key, response) pairs and flush them to disk."""
        items = list(items)
        lines = []
        for (task, dataset, sample_id, digest), response in items:
            row = {"task": task, "dataset": dataset, "sample_id": sample_id, "hash": digest, "response": response}
            lines.append(json.dumps(row) + "\n")
        _append_lines(self.path, lines)
        self._entries.update(items)

    def __len__(self) -> int:
        return len(self._entries)


class JudgeCache:
    """Judge replies keyed by (judge id, prompt): a judge is never asked the same question twice."""

    def __init__(self, root: str | os.PathLike, judge_id: str):
        self.path = Path(root) / "judges" / f"{stable_hash(judge_id)}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = _read_jsonl(self.path, {"prompt": str, "reply": str}) if self.path.exists() else ()
        self._entries = {row["prompt"]: row["reply"] for row in rows}

    def get(self, prompt: str) -> str | None:
        return self._entries.get(stable_hash(prompt))

    def put_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Store successful (prompt, reply) pairs; failures are not cached, so they are retried next run."""
        entries = {stable_hash(prompt): reply for prompt, reply in pairs}
        _append_lines(self.path, [json.dumps({"prompt": key, "reply": reply}) + "\n" for key, reply in entries.items()])
        self._entries.update(entries)
