"""What the refinement stages share: their config, the model set-up on a worker, the work
directory's store (created once, resumed when the inputs and settings are the same), and how a
stage and each of its shards run."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from pipelines.config import COMPILE_MODES, RefineConfig
from pipelines.fingerprint import content_key
from pipelines.models import checkpoint_id, load_cached_model
from pipelines.sharding import Shard
from pipelines.stage import Stage
from pipelines.stores import MaskStore
from segrefiner.diffusion import DiscreteDiffusion
from segrefiner.errors import InputError
from segrefiner.inference import InferenceConfig
from segrefiner.inference.runtime import AutocastDenoiser, PaddedBatches
from segrefiner.inference.score import ScoreCalibration
from segrefiner.io import read_json, write_json

__all__ = [
    "COMPILE_MODES",
    "KIND",
    "InferenceSetup",
    "RefineConfig",
    "completed_parts",
    "inference_setup",
    "open_or_create_work",
    "refine_key",
    "refine_shard",
    "refine_stage",
    "run_fingerprint",
    "work_planned",
    "work_shard_done",
]

log = logging.getLogger(__name__)

KIND = "refined"  # the mask kind refined outputs are stored under


class InferenceSetup(NamedTuple):
    denoiser: Any
    diffusion: DiscreteDiffusion
    infer: InferenceConfig
    calibrations: dict[str, ScoreCalibration]  # per path: "instance", "semantic"


def inference_setup(config: RefineConfig) -> InferenceSetup:
    model, saved, calibrations = load_cached_model(config.checkpoint, config.device)
    infer = saved.replace(guard=config.guard)
    if config.batch_size:
        infer = infer.replace(batch_size=config.batch_size)
    if config.model_size:
        infer = infer.replace(model_size=config.model_size)
    denoiser = model
    if config.channels_last:
        denoiser = denoiser.to(memory_format=torch.channels_last)
    if config.compile:  # a few batch shapes only: no recompilation for each tail batch
        denoiser = _compiled(denoiser, config.compile_mode)
        if torch.device(config.device).type != "cpu":  # the CPU runs one item per call
            denoiser = PaddedBatches(denoiser, (config.pack_images, infer.batch_size))
    if config.bf16:
        denoiser = AutocastDenoiser(denoiser, torch.device(config.device).type, torch.bfloat16)
    diffusion = DiscreteDiffusion(num_steps=model.config.num_timesteps)
    return InferenceSetup(denoiser, diffusion, infer, calibrations)


_COMPILED: dict[tuple[int, str | None], Any] = {}


def _compiled(model: torch.nn.Module, mode: str | None = None) -> Any:
    # One compiled wrapper per cached model and mode, so later shards on the worker reuse its
    # kernels. The mode was checked when the config was made (RefineConfig's declaration).
    key = (id(model), mode)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(model, mode=mode, dynamic=False)
    return _COMPILED[key]


def run_fingerprint(config: RefineConfig, **inputs: Any) -> dict[str, Any]:
    fingerprint = {
        "checkpoint": checkpoint_id(config.checkpoint),
        "seed": config.seed,
        "model_size": config.model_size,
        "bf16": config.bf16,  # batch size, shard layout and workers do not change results
        **inputs,
    }
    if config.guard is not None:  # absent when off: runs from before the guard still resume
        fingerprint["guard"] = config.guard
    return fingerprint


def open_or_create_work(
    work: Path,
    fingerprint: dict[str, Any],
    sample_ids: list[str],
    columns: dict,
    overwrite: bool,
    layout: str,
) -> MaskStore:
    """The work directory's store: resumed when ``fingerprint`` (inputs, checkpoint, settings)
    matches, recreated with ``overwrite``, else an error (never mix two runs' outputs)."""
    store_path = work / "refined.zarr"
    if MaskStore.exists(store_path):
        store = MaskStore.open(store_path, "r+")
        if store.attrs.get("fingerprint") == fingerprint and not overwrite:
            return store  # resume
        if not overwrite:
            raise InputError(
                f"{work}: holds a run with other inputs or settings; use another work "
                "directory or overwrite"
            )
        for sub in ("refined.zarr", "inputs", "parts"):
            shutil.rmtree(work / sub, ignore_errors=True)
    return MaskStore.create(
        store_path,
        layout=layout,
        kinds=[KIND],
        sample_ids=sample_ids,
        columns=columns,
        attrs={"fingerprint": fingerprint},
    )


def work_planned(work_dir: str | os.PathLike) -> bool:
    """A refinement stage was prepared in ``work_dir``: its store is there."""
    return MaskStore.exists(Path(work_dir) / "refined.zarr")


def work_shard_done(work_dir: str | os.PathLike, shard: Shard) -> bool:
    """The shard's completion record is in the store of ``work_dir``."""
    path = Path(work_dir) / "refined.zarr"
    return MaskStore.exists(path) and MaskStore.open(path).completion_record(shard.name) is not None


def refine_stage(
    name: str,
    prepare: Callable[..., list[Shard]],
    run_shard: Callable[[str, Any, Shard], Any],
    finalize: Callable[..., dict[str, Any]],
    finalized: Callable[..., bool],
    fingerprint: Callable[..., str],
) -> Stage:
    """A refinement stage's contract (:class:`~pipelines.stage.Stage`): its work folder holds
    the ``refined.zarr`` store (:func:`work_planned`, :func:`work_shard_done`)."""
    return Stage(
        name, prepare, run_shard, finalize, work_planned, work_shard_done, finalized, fingerprint
    )


def refine_key(config: RefineConfig, num_shards: int | None, **content: Any) -> str:
    """The content key of a refinement run: ``content`` (what the inputs hold), the
    checkpoint's content hash (its path left out of the config), the config and the shards."""
    plain_config = dataclasses.replace(config, checkpoint="")
    return content_key(
        checkpoint=config.checkpoint, config=plain_config, num_shards=num_shards, **content
    )


def completed_parts(work: Path) -> tuple[MaskStore, list[dict[str, Any]]]:
    """The store and every shard's part file, after checking that all shards completed."""
    store = MaskStore.open(work / "refined.zarr", "r+")
    shards = [Shard(**s) for s in store.attrs["shards"]]
    missing = [s.index for s in shards if store.completion_record(s.name) is None]
    if missing:
        raise InputError(
            f"{work}: shards {missing} are not complete; run the stage again to finish them"
        )
    return store, [read_json(work / "parts" / f"{s.name}.json") for s in shards]


def refine_shard(
    work_dir: str | os.PathLike,
    config: RefineConfig,
    shard: Shard,
    refine: Callable[[Any, MaskStore, RefineConfig, InferenceSetup], tuple[dict, dict]],
) -> dict[str, Any]:
    """One shard of a refinement stage; a completed shard is skipped. Returns the completion
    record.

    ``refine(inputs, store, config, setup)`` gets the shard's ``inputs/<shard>.json`` and the
    model (:func:`inference_setup`) and returns the content of ``parts/<shard>.json`` and the
    record's counts; the part file is written before the completion record.
    """
    started = time.perf_counter()
    work = Path(work_dir)
    store = MaskStore.open(work / "refined.zarr", "r+")
    done = store.completion_record(shard.name)
    if done is not None:
        return {**done, "skipped": True}
    inputs = read_json(work / "inputs" / f"{shard.name}.json")
    part, counts = refine(inputs, store, config, inference_setup(config))
    write_json(work / "parts" / f"{shard.name}.json", part)
    record = {
        "shard": shard.index,
        **counts,
        "seconds": round(time.perf_counter() - started, 3),
    }
    store.mark_complete(shard.name, record)
    return {**record, "skipped": False}
