"""What produced a result: toolkit version and commit, model and adapter fingerprints, method, scorers, settings."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import eval_bridge

if TYPE_CHECKING:
    from eval_bridge.models.backend import Backend


def git_commit() -> str | None:
    """The toolkit checkout's commit (with '-dirty' for uncommitted changes), or None outside a git checkout."""
    root = Path(eval_bridge.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def method_identity(method) -> dict:
    """An inference method's settings and version: its part of the response-cache key and of the provenance."""
    return {"version": str(getattr(method, "version", "0")), "config": method.cache_key()}


def provenance(vlm: Backend, *, method, scorers, config, source: dict, data_hashes: dict, responses: dict) -> dict:
    """The provenance block of a results file (`vlm`: a local `VLM` or an API-served model)."""
    import torch
    import transformers

    return {
        "toolkit_version": eval_bridge.__version__,
        "git_commit": git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": vlm.name,
        "adapter": vlm.adapter,
        "model_fingerprint": vlm.fingerprint,
        "model_revision": vlm.revision,
        "dtype": vlm.dtype_name,
        "family": vlm.family,
        "method": None if method is None else {"id": method.id, **method_identity(method)},
        "scorers": scorers.ids(),
        "generation": asdict(config.generation),
        "max_new_tokens_override": config.max_new_tokens,
        "seed": config.generation.seed,
        "data": source,
        "data_hashes": data_hashes,
        "limit_per_dataset": config.limit,
        "responses": responses,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
