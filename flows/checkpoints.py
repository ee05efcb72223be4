"""Checkpoint specs of the flows made concrete: ``models:/<name>@<alias>`` through the model
registry (:class:`flows.tracking.Tracker`), with a fallback; files and presets through the
library's resolver (:func:`segrefiner.checkpoint.resolve_checkpoint`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from flows.tracking import CHAMPION, Tracker

log = logging.getLogger(__name__)

__all__ = ["ResolvedCheckpoint", "resolve_checkpoint"]


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint spec made concrete: a file (or preset) and where it came from."""

    path: str
    source: str  # "file", "preset", "registry:<name>@<alias> v<n>", "fallback"
    sha: str  # checkpoint_id: "sha256:<hex>" or "preset:<name>"


def resolve_checkpoint(
    spec: str,
    fallback: str | None = None,
    *,
    tracker_factory: Callable[[], Tracker] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ResolvedCheckpoint:
    """``models:/<name>@<alias>`` -> the registry's file (downloaded), else ``fallback``;
    a file or preset name -> itself (:func:`segrefiner.checkpoint.resolve_checkpoint`, the
    library's resolver, decides which and hashes the file). Raises ``FileNotFoundError``
    when nothing is usable."""
    from segrefiner.checkpoint import resolve_checkpoint as resolve_local

    if spec.startswith("models:/"):
        name, _, alias = spec.removeprefix("models:/").partition("@")
        version = None
        try:
            tracker = (tracker_factory or Tracker)()
            version = tracker.champion(name, alias or CHAMPION)
        except Exception as exc:  # registry unreachable: the fallback is the documented answer
            log.warning("model registry not available (%s); using the fallback", exc)
        if version is not None:
            from services.settings import load_settings

            folder = cache_dir or load_settings().state_dir / "registry-cache"
            path = tracker.download_version(version, folder)
            source = f"registry:{name}@{alias or CHAMPION} v{version.version}"
            return ResolvedCheckpoint(str(path), source, resolve_local(path).ident)
        if fallback is None:
            raise FileNotFoundError(f"{spec}: no such registered model/alias and no fallback")
        log.info("%s: not in the registry; using %s", spec, fallback)
        spec, origin = fallback, "fallback"
    else:
        origin = "file"
    local = resolve_local(spec)  # CheckpointNotFoundError (a FileNotFoundError) when missing
    if local.kind == "preset" and origin == "file":
        origin = "preset"
    return ResolvedCheckpoint(local.path, origin, local.ident)
