"""Task cache keys made from content: input file hashes, the checkpoint hash, the config.

A flow computes one *content key* per stage run (:func:`content_key`) from what determines its
result: the SHA-256 of every input file (a folder hashes its files' names and hashes), the
checkpoint's identity (:func:`pipelines.models.checkpoint_id`, a content hash) and the config.
Tasks receive it as their ``content_key`` parameter; :func:`keyed` turns it into a Prefect
cache key together with the task name and the other parameters named. A renamed or moved input
with the same bytes keeps its key; the same path with other bytes gets a new one.

Where a task's product lives on disk (a refined file, a shard's masks) the key is only given
while that product is there (``exists``): a deleted output is made again instead of being
"found" in the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipelines.models import checkpoint_id, file_sha256

__all__ = ["content_key", "folder_sha256", "keyed", "path_sha256"]


def folder_sha256(folder: str | os.PathLike, suffixes: Iterable[str] = (".png",)) -> str:
    """Hash of the files under ``folder`` with these suffixes: relative names + content hashes."""
    root = Path(folder)
    wanted = tuple(suffixes)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(wanted)):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(file_sha256(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def path_sha256(path: str | os.PathLike) -> str:
    """Content hash of a file, or of a folder's masks."""
    return folder_sha256(path) if Path(path).is_dir() else file_sha256(path)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def content_key(
    *,
    files: dict[str, str | os.PathLike] | None = None,
    checkpoint: str | None = None,
    config: Any = None,
    **extra: Any,
) -> str:
    """One hex digest of input contents (``files``: role -> path), checkpoint and config."""
    payload = {
        "files": {role: path_sha256(path) for role, path in sorted((files or {}).items())},
        "checkpoint": checkpoint_id(checkpoint) if checkpoint else None,
        "config": _plain(config),
        "extra": {k: _plain(v) for k, v in sorted(extra.items())},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def keyed(
    *names: str, exists: Callable[[dict[str, Any]], bool] | None = None
) -> Callable[[Any, dict[str, Any]], str | None]:
    """A Prefect ``cache_key_fn``: task name + ``content_key`` + the parameters ``names``.

    ``exists(parameters)`` (optional) must hold for the key to be given at all.
    """

    def cache_key(context: Any, parameters: dict[str, Any]) -> str | None:
        if exists is not None and not exists(parameters):
            return None
        parts = {
            "task": context.task.name,
            "content": parameters["content_key"],
            **{name: _plain(parameters.get(name)) for name in names},
        }
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    return cache_key
