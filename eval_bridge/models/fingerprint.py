"""Content fingerprints of models, so caches and results can tell two checkpoints apart.

Hashing every byte of a 14 GB checkpoint on each run would cost minutes, so a file contributes a sample of its
bytes. A safetensors file contributes its whole header (every tensor's name, dtype, shape and offsets) and a
strided sample of *every* tensor's bytes (`_SAMPLES` chunks of `_CHUNK` bytes spread over it; a small tensor
whole), so a checkpoint in which only the projector, or only the vision tower, changed gets a new fingerprint.
Other files contribute their size and three 1 MiB windows (start, middle, end), or all of their bytes when
small. A copy of the same checkpoint elsewhere gets the same fingerprint; a hub id is fingerprinted by the
snapshot of the requested revision in the local cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

_WINDOW = 1 << 20
_CHUNK = 4096
_SAMPLES = 16
_MODEL_FILES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja")


def _window_digest(path: Path) -> str:
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


def _tensor_offsets(length: int) -> list[int]:
    """Where the sampled chunks of a tensor of `length` bytes start (one chunk covering it if small)."""
    if length <= _CHUNK * _SAMPLES:
        return [0]
    stride = (length - _CHUNK) / (_SAMPLES - 1)
    return [round(i * stride) for i in range(_SAMPLES)]


def safetensors_digest(path: Path) -> str:
    """sha256 over a safetensors file's header and a strided sample of every tensor's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = f.read(n)
        h.update(header)
        base = 8 + n
        for name, info in sorted(json.loads(header).items()):
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            length = end - start
            size = length if length <= _CHUNK * _SAMPLES else _CHUNK
            for offset in _tensor_offsets(length):
                f.seek(base + start + offset)
                h.update(f.read(size))
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """A file's content digest: per-tensor samples for safetensors, size + three 1 MiB windows otherwise."""
    if path.suffix == ".safetensors":
        try:
            return safetensors_digest(path)
        except (struct.error, ValueError, KeyError, UnicodeDecodeError):
            pass  # not a well-formed safetensors file: loading will say so; hash its bytes meanwhile
    return _window_digest(path)


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


def state_dict_digest(model) -> str:
    """sha256 over every tensor of an in-memory model (names, dtypes and values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def fingerprint(name: str, adapter: str | None = None, *, model=None, revision: str | None = None) -> str:
    """Fingerprint a (base, adapter) pair: directories by content, hub ids by the cached snapshot of `revision`.

    A model that exists only in memory (`name="in-memory"`) is fingerprinted from its weights.
    """
    parts = []
    for ref in (name, adapter):
        if ref is None:
            continue
        if Path(ref).is_dir():
            parts.append(directory_digest(ref))
        elif model is not None and ref == "in-memory":
            parts.append(state_dict_digest(model))
        else:
            parts.append(_hub_digest(ref, revision if ref == name else None))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _hub_digest(repo_id: str, revision: str | None = None) -> str:
    """A hub id resolves to the snapshot the local cache holds for `revision`, so a new revision gets a new
    fingerprint."""
    try:
        from huggingface_hub import snapshot_download

        return directory_digest(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # not cached (or not a hub id): the name and revision are all we know
        return hashlib.sha256(f"{repo_id}@{revision}".encode()).hexdigest()
