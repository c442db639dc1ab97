"""Content fingerprints of models, so caches and results can tell two checkpoints apart.

Hashing every byte of a 14 GB checkpoint on each run would cost minutes, so each file contributes its name,
size and the bytes of three 1 MiB windows (start, middle, end). A checkpoint directory written by a later
training step differs in those bytes; a copy of the same checkpoint elsewhere gets the same fingerprint.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_WINDOW = 1 << 20
_MODEL_FILES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja")


def file_digest(path: Path) -> str:
    """sha256 over a file's size and three 1 MiB windows (the whole file when it is small)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        if size <= 3 * _WINDOW:
            h.update(f.read())
        else:
            for offset in (0, size // 2, size - _WINDOW):
                f.seek(offset)
                h.update(f.read(_WINDOW))
    return h.hexdigest()


def directory_digest(directory: str | os.PathLike) -> str:
    """Fingerprint a saved model or adapter directory from its weight, config and tokenizer files."""
    root = Path(directory)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _MODEL_FILES):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("checkpoint-", "runs/", "trust_eval")):
            continue  # results or nested checkpoints written next to the weights are not the model
        h.update(rel.encode())
        h.update(file_digest(path).encode())
    return h.hexdigest()


def _state_dict_digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def fingerprint(name: str, adapter: str | None = None, *, model=None) -> str:
    """Fingerprint a (base, adapter) pair: directories by content, hub ids by the cached snapshot.

    A model that exists only in memory (no directory to hash) is fingerprinted from its weights.
    """
    parts = []
    for ref in (name, adapter):
        if ref is None:
            continue
        if Path(ref).is_dir():
            parts.append(directory_digest(ref))
        elif model is not None and ref == "in-memory":
            parts.append(_state_dict_digest(model))
        else:
            parts.append(_hub_digest(ref))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _hub_digest(repo_id: str) -> str:
    """A hub id resolves to the snapshot the local cache holds, so a new revision gets a new fingerprint."""
    try:
        from huggingface_hub import snapshot_download

        return directory_digest(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (or not a hub id): the name is all we know
        return hashlib.sha256(repo_id.encode()).hexdigest()
