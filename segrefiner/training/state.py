"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A run directory (``checkpoint.dir``) holds::

    iter_0005000.pt      training checkpoints (the last ``checkpoint.keep`` are kept)
    latest.pt            the newest training checkpoint (a hard link, or a copy)
    model.pt             the final model for inference (weight average when enabled)
    segrefiner_official.pth   the final weights in the official released format
    config.yaml, metrics.jsonl, result.json

A training checkpoint is a :func:`segrefiner.checkpoint.save_checkpoint` file (so it loads with
:func:`~segrefiner.checkpoint.load_checkpoint` and ``Refiner.from_checkpoint``) whose extra
top-level entries are the optimiser state, the weight average and ``train_state``: the step,
the data position, the global batch, the seed and the torch RNG states. Data order and noise
derive from (seed, sample position) only, so with these a resumed run continues bit for bit.
Everything loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segrefiner.checkpoint import extract_state_dict, load_weights, read_checkpoint, save_checkpoint
from segrefiner.config import to_dict
from segrefiner.errors import CheckpointError
from segrefiner.training.config import TrainConfig
from segrefiner.training.optim import WeightAverage

log = logging.getLogger(__name__)

LATEST = "latest.pt"
MODEL = "model.pt"
OFFICIAL = "segrefiner_official.pth"
_ITER_RE = re.compile(r"^iter_(\d+)\.pt$")


def iter_name(step: int) -> str:
    return f"iter_{step:07d}.pt"


def checkpoint_meta(config: TrainConfig, step: int, metrics: dict[str, float]) -> dict[str, Any]:
    """What every checkpoint of a run carries in ``meta``: the step, the inference settings
    (read by ``Refiner.from_checkpoint``), the training config and the last metrics."""
    return {
        "step": step,
        "inference": to_dict(config.inference),
        "training": config.to_dict(),
        "metrics": dict(metrics),
    }


def save_training_checkpoint(
    run_dir: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    weight_average: WeightAverage | None,
    config: TrainConfig,
    step: int,
    metrics: dict[str, float],
) -> Path:
    """Write ``iter_<step>.pt``, point ``latest.pt`` at it and prune old ones; returns the
    path. Call on the main process only."""
    run_dir = Path(run_dir)
    path = run_dir / iter_name(step)
    train_state = {
        "step": step,
        "data_position": step * config.data.batch_size,
        "global_batch": config.data.batch_size,
        "seed": config.runtime.seed,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    save_checkpoint(
        path,
        model,
        meta=checkpoint_meta(config, step, metrics),
        extra={
            "optimizer": optimizer.state_dict(),
            "weight_average": weight_average.state_dict() if weight_average else None,
            "train_state": train_state,
        },
    )
    _link_latest(path, run_dir / LATEST)
    prune(run_dir, config.checkpoint.keep)
    return path


def _link_latest(path: Path, latest: Path) -> None:
    # A hard link costs nothing (the official network's training checkpoint is ~1.4 GB); file
    # systems without links get a copy. Either way the new name appears atomically.
    fd, tmp = tempfile.mkstemp(prefix=".latest.", suffix=".tmp", dir=latest.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(path, tmp)
    except OSError:
        shutil.copyfile(path, tmp)
    os.replace(tmp, latest)


def training_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of the run's ``iter_*.pt`` files, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for path in run_dir.iterdir():
        match = _ITER_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def prune(run_dir: str | os.PathLike, keep: int) -> None:
    """Remove all but the newest ``keep`` training checkpoints (``keep == 0``: keep all)."""
    if keep <= 0:
        return
    for _, path in training_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)


def resume_path(config: TrainConfig) -> Path | None:
    """The checkpoint to continue from: ``checkpoint.resume`` ``"auto"`` = ``<dir>/latest.pt``
    when present, ``"never"`` = none, else the given file (which must exist)."""
    choice = config.checkpoint.resume
    if choice == "never":
        return None
    if choice == "auto":
        latest = Path(config.checkpoint.dir) / LATEST
        return latest if latest.is_file() else None
    path = Path(choice)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint.resume names a file that does not exist")
    return path


@dataclass
class ResumeState:
    step: int
    metrics: dict[str, float]


def load_training_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    weight_average: WeightAverage | None,
    config: TrainConfig,
) -> ResumeState:
    """Restore model, optimiser, weight average and RNG states from a training checkpoint.

    Raises :class:`CheckpointError` when the file is not a training checkpoint or its model
    differs. A different global batch or seed changes the data that follows, so it is logged.
    """
    obj = read_checkpoint(path)
    state = obj.get("train_state")
    if not isinstance(state, dict) or "optimizer" not in obj:
        raise CheckpointError(f"{path}: not a training checkpoint (no optimizer/train_state)")
    load_weights(getattr(model, "module", model), extract_state_dict(obj, str(path)), str(path))
    try:
        optimizer.load_state_dict(obj["optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: optimizer state does not fit ({exc})") from None
    if weight_average is not None:
        if obj.get("weight_average"):
            weight_average.load_state_dict(obj["weight_average"])
        else:
            log.warning("%s: no weight average saved; starting it from the current weights", path)
            weight_average.shadow = {
                k: v.detach().float().clone()
                for k, v in getattr(model, "module", model).state_dict().items()
            }
    for key, now in (("global_batch", config.data.batch_size), ("seed", config.runtime.seed)):
        if state.get(key) != now:
            log.warning(
                "%s: saved with %s=%s, continuing with %s: the data that follows differs from "
                "an uninterrupted run",
                path,
                key,
                state.get(key),
                now,
            )
    if isinstance(state.get("torch_rng"), torch.Tensor):
        torch.set_rng_state(state["torch_rng"])
    cuda_states = state.get("cuda_rng") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    meta = obj.get("meta") or {}
    return ResumeState(step=int(state["step"]), metrics=dict(meta.get("metrics") or {}))
