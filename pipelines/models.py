"""Models loaded once per worker process, and content hashes of input files.

Stage functions receive a checkpoint *path* (never a model: Dask would pickle it for every
task); the first shard a worker runs loads it, later shards reuse it.
"""

from __future__ import annotations

import os
import threading

from segrefiner.checkpoint import load_for_inference, resolve_checkpoint
from segrefiner.inference import InferenceConfig
from segrefiner.inference.score import ScoreCalibration
from segrefiner.io import file_sha256
from segrefiner.model import DenoiseUNet

__all__ = ["checkpoint_id", "file_sha256", "load_cached_model"]

_LOCK = threading.Lock()
_MODELS: dict[
    tuple[str, str], tuple[DenoiseUNet, InferenceConfig, dict[str, ScoreCalibration]]
] = {}


def checkpoint_id(checkpoint: str | os.PathLike) -> str:
    """``preset:<name>`` for a preset (random weights), else ``sha256:<hex>`` of the file
    (:func:`segrefiner.checkpoint.resolve_checkpoint`)."""
    return resolve_checkpoint(checkpoint).ident


def load_cached_model(
    checkpoint: str | os.PathLike, device: str
) -> tuple[DenoiseUNet, InferenceConfig, dict[str, ScoreCalibration]]:
    """The network of ``checkpoint`` on ``device``, its saved inference settings and its
    refinement-score calibration per path ("instance", "semantic"), loaded once per process and
    content hash (:func:`segrefiner.checkpoint.load_for_inference`)."""
    source = resolve_checkpoint(checkpoint)
    key = (source.ident, device)
    with _LOCK:
        if key not in _MODELS:
            loaded = load_for_inference(source)
            _MODELS[key] = (loaded.model.to(device).eval(), loaded.inference, loaded.calibrations)
        return _MODELS[key]
