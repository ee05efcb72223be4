"""Content fingerprints of a stage run: what determines its result, as one hex digest.

:func:`content_key` hashes every input file (a folder hashes its files' names and hashes), the
checkpoint's identity (:func:`pipelines.models.checkpoint_id`, a content hash) and the config.
A renamed or moved input with the same bytes keeps its key; the same path with other bytes gets
a new one. The flows key their task caches on it (:mod:`flows.caching`); the re-evaluation
ledger identifies drops by :func:`path_sha256`, and a run's outputs go to the folder named
after its key (:func:`run_folder`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipelines.models import checkpoint_id, file_sha256

__all__ = ["content_key", "folder_sha256", "path_sha256", "plain", "run_folder"]


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


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data (dataclasses and pydantic models as dicts, paths as str)."""
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
        "config": plain(config),
        "extra": {k: plain(v) for k, v in sorted(extra.items())},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def run_folder(output_dir: Path, key: str) -> Path:
    """``<output_dir>/<16 hex of the content key>/``: one folder per (inputs, checkpoint,
    config), so another checkpoint never meets the work of the previous one; ``latest`` links
    to the folder of the most recent run."""
    folder = output_dir / key[:16]
    folder.mkdir(parents=True, exist_ok=True)
    link = output_dir / "latest"
    tmp = output_dir / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(folder.name, target_is_directory=True)
    os.replace(tmp, link)
    return folder
