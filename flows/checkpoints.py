"""Checkpoints in the model registry (through :class:`flows.tracking.Tracker`'s client):
registering a trained checkpoint, the ``champion`` alias, downloading a version; and the flows'
checkpoint specs made concrete: ``models:/<name>@<alias>`` through the registry, with a
fallback; files and presets through the library's resolver
(:func:`segrefiner.checkpoint.resolve_checkpoint`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.tracking import CHAMPION, TrackedRun, Tracker

log = logging.getLogger(__name__)

__all__ = [
    "ResolvedCheckpoint",
    "champion",
    "download_version",
    "register_checkpoint",
    "resolve_checkpoint",
]


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
            version = champion(tracker, name, alias or CHAMPION)
        except Exception as exc:  # registry unreachable: the fallback is the documented answer
            log.warning("model registry not available (%s); using the fallback", exc)
        if version is not None:
            from services.settings import load_settings

            folder = cache_dir or load_settings().state_dir / "registry-cache"
            path = download_version(tracker, version, folder)
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


def register_checkpoint(
    tracker: Tracker,
    run: TrackedRun,
    checkpoint: str | os.PathLike,
    model_name: str,
    *,
    promote: str = "if-none",
    tags: Mapping[str, Any] | None = None,
) -> str:
    """Log ``checkpoint`` under ``checkpoint/`` of ``run``, register it as a new version of
    ``model_name`` and, per ``promote`` (``never`` / ``if-none`` / ``always``), point the
    ``champion`` alias at it. Returns the version."""
    from mlflow.exceptions import MlflowException

    from pipelines.models import checkpoint_id

    sha = checkpoint_id(checkpoint)
    run.log_artifact(checkpoint, "checkpoint")
    try:
        tracker.client.create_registered_model(
            model_name, description="SegRefiner checkpoints (weights + config, one file)"
        )
    except MlflowException:
        pass  # already there
    version = tracker.client.create_model_version(
        model_name,
        f"runs:/{run.run_id}/checkpoint",
        run_id=run.run_id,
        tags={"checkpoint.sha256": sha, "file": Path(checkpoint).name, **(tags or {})},
    ).version
    if promote == "always" or (promote == "if-none" and champion(tracker, model_name) is None):
        tracker.client.set_registered_model_alias(model_name, CHAMPION, version)
    run.set_tags({f"registered.{model_name}": version})
    return str(version)


def champion(tracker: Tracker, model_name: str, alias: str = CHAMPION) -> Any | None:
    """The model version the alias points at, or ``None`` (no model, no alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return tracker.client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def download_version(tracker: Tracker, version: Any, cache_dir: str | os.PathLike) -> Path:
    """The checkpoint file of a model version, downloaded once into ``cache_dir``."""
    import mlflow.artifacts

    sha = (version.tags or {}).get("checkpoint.sha256", "")
    name = (version.tags or {}).get("file")
    target = Path(cache_dir) / f"{version.name}-v{version.version}"
    if name and (target / name).is_file():
        return target / name
    target.mkdir(parents=True, exist_ok=True)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=version.source, dst_path=str(target), tracking_uri=tracker.uri
        )
    )
    files = sorted(p for p in local.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"model version {version.name} v{version.version}: no file")
    chosen = next((p for p in files if p.name == name), files[0])
    final = target / chosen.name
    if chosen != final:
        chosen.replace(final)
    log.info("champion %s v%s (%s) -> %s", version.name, version.version, sha, final)
    return final
