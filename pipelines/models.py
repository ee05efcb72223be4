"""Models loaded once per worker process, and content hashes of input files.

Stage functions receive a checkpoint *path* (never a model: Dask would pickle it for every
task); the first shard a worker runs loads it, later shards reuse it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from segrefiner.checkpoint import load_checkpoint
from segrefiner.inference import InferenceConfig
from segrefiner.inference.score import ScoreCalibration, calibration_from_meta
from segrefiner.io import file_sha256
from segrefiner.model import PRESET_SEED, PRESETS, DenoiseUNet, build_unet

__all__ = ["checkpoint_id", "file_sha256", "load_cached_model"]

_LOCK = threading.Lock()
_MODELS: dict[
    tuple[str, str], tuple[DenoiseUNet, InferenceConfig, dict[str, ScoreCalibration]]
] = {}
MODES = ("instance", "semantic")


def checkpoint_id(checkpoint: str | os.PathLike) -> str:
    """``preset:<name>`` for a preset (random weights), else ``sha256:<hex>`` of the file."""
    if isinstance(checkpoint, str) and checkpoint in PRESETS and not Path(checkpoint).exists():
        return f"preset:{checkpoint}"
    return f"sha256:{file_sha256(checkpoint)}"


def load_cached_model(
    checkpoint: str | os.PathLike, device: str
) -> tuple[DenoiseUNet, InferenceConfig, dict[str, ScoreCalibration]]:
    """The network of ``checkpoint`` on ``device``, its saved inference settings and its
    refinement-score calibration per path ("instance", "semantic"), loaded once per process and
    content hash. Presets are seeded with 0 so every worker builds the same random network."""
    ident = checkpoint_id(checkpoint)
    key = (ident, device)
    with _LOCK:
        if key not in _MODELS:
            if ident.startswith("preset:"):
                model = build_unet(str(checkpoint), seed=PRESET_SEED)
                meta: dict = {}
            else:
                model, meta = load_checkpoint(checkpoint)
            saved = meta.get("inference")
            config = InferenceConfig.from_dict(saved) if saved else InferenceConfig()
            calibrations = {mode: calibration_from_meta(meta, mode) for mode in MODES}
            _MODELS[key] = (model.to(device).eval(), config, calibrations)
        return _MODELS[key]
