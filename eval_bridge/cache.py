"""On-disk caches: model responses and judge replies, so an interrupted run resumes and a rerun costs nothing.

Responses are keyed by (model fingerprint, method, generation settings) — one folder each — and, inside it, by
(task, dataset, sample id, sample content hash). Each process appends to its own JSON Lines file and flushes
after every batch, so a crash loses at most the batch in flight and parallel ranks never write the same file.
Judge replies are keyed by (judge id, prompt hash).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from eval_bridge.models.fingerprint import file_digest
from eval_bridge.samples import Sample

CACHE_ENV = "VLM_TRUST_CACHE"


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


def _read_jsonl(path: Path) -> Iterable[dict]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: that response is simply generated again


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
            for row in _read_jsonl(path):
                self._entries[(row["task"], row["dataset"], row["sample_id"], row["hash"])] = row["response"]

    def get(self, key: tuple) -> str | None:
        return self._entries.get(key)

    def put_many(self, items: Iterable[tuple[tuple, str]]) -> None:
        """Append (key, response) pairs and flush them to disk."""
        with self.path.open("a", encoding="utf-8") as f:
            for key, response in items:
                task, dataset, sample_id, digest = key
                row = {"task": task, "dataset": dataset, "sample_id": sample_id, "hash": digest, "response": response}
                f.write(json.dumps(row) + "\n")
                self._entries[key] = response
            f.flush()
            os.fsync(f.fileno())

    def __len__(self) -> int:
        return len(self._entries)


class JudgeCache:
    """Judge replies keyed by (judge id, prompt): a judge is never asked the same question twice."""

    def __init__(self, root: str | os.PathLike, judge_id: str):
        self.path = Path(root) / "judges" / f"{stable_hash(judge_id)}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries = {row["prompt"]: row["reply"] for row in _read_jsonl(self.path)} if self.path.exists() else {}

    def get(self, prompt: str) -> str | None:
        return self._entries.get(stable_hash(prompt))

    def put_many(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Store successful (prompt, reply) pairs; failures are not cached, so they are retried next run."""
        with self.path.open("a", encoding="utf-8") as f:
            for prompt, reply in pairs:
                key = stable_hash(prompt)
                f.write(json.dumps({"prompt": key, "reply": reply}) + "\n")
                self._entries[key] = reply
