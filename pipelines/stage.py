"""The contract every sharded stage keeps, so one runner (:func:`run_stage`, in this process or
on Dask, with the retry and resume rules) and one Prefect task factory
(:func:`flows.tasks.stage_tasks`) serve them all.

A stage works in one folder (its work directory or store): ``prepare`` plans the shards and
writes what they need, ``run_shard`` does one shard and writes its completion record (a
completed shard is skipped), ``finalize`` checks that every shard is complete and writes the
stage's product. The predicates tell a cache whether a product is really on disk.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from pipelines.sharding import Shard, ShardsFailedError, run_shards
from segrefiner.errors import InputError

__all__ = ["ShardRun", "Stage", "local_gpus", "run_stage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One sharded stage.

    - ``name``: ``refine-coco``, ``refine-hr``, ``coarse-hr``, ``evaluate-coco``,
      ``evaluate-hr``; its Prefect tasks are
      ``prepare-<name>``, ``<name>-shard`` and ``finalize-<name>``.
    - ``prepare(*, work_dir, config, num_shards, overwrite=False, **inputs) -> list[Shard]``,
      called with keywords only, so a stage's own prepare function serves when its parameters
      have these names.
    - ``run_shard(work, config, shard) -> record``: module level, so it pickles for Dask.
    - ``finalize(work, **outputs) -> dict``: the summary.
    - ``planned(work)``: the folder holds a prepared stage; ``shard_done(work, shard)``: the
      shard's completion record is there; ``finalized(work, **outputs)``: the product is there
      (``None``: finalize is cheap and always runs).
    - ``fingerprint(config, num_shards, **inputs) -> str``: the content key of a run (input
      contents, checkpoint, config; never a path alone), which the flows key their task caches
      and run folders on.
    """

    name: str
    prepare: Callable[..., list[Shard]]
    run_shard: Callable[[str, Any, Shard], Any]
    finalize: Callable[..., dict[str, Any]]
    planned: Callable[[str], bool]
    shard_done: Callable[[str, Shard], bool]
    finalized: Callable[..., bool] | None = None
    fingerprint: Callable[..., str] | None = None


class ShardRun(TypedDict, total=False):
    """Where and how a stage's shards run: the keyword arguments of :func:`run_stage` that the
    stage runners (:func:`pipelines.refine_coco.refine_coco`,
    :func:`pipelines.refine_hr.refine_hr`) pass through, whose defaults apply."""

    num_shards: int | None
    dask_address: str | None
    n_workers: int
    dask_threads: bool
    overwrite: bool
    progress: Any


def run_stage(
    stage: Stage,
    work: str | os.PathLike,
    config: Any,
    inputs: dict[str, Any],
    outputs: dict[str, Any] | None = None,
    *,
    num_shards: int | None = 1,
    dask_address: str | None = None,
    n_workers: int = 0,
    threads_per_worker: int = 1,
    dask_threads: bool = False,
    overwrite: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """Any stage end to end: ``stage.prepare(work_dir=work, config=config, num_shards=,
    overwrite=, **inputs)``, the shards (``stage.run_shard``, each retried once when it
    raises), ``stage.finalize(work, **outputs)``; the summary with ``shards`` (how many) and
    ``skipped_shards`` (complete before this run) added.

    ``n_workers=0`` without ``dask_address`` runs the shards in this process; otherwise on Dask:
    a LocalCluster of ``n_workers`` processes x ``threads_per_worker`` (``dask_threads``:
    threads of this process) or the scheduler at ``dask_address``. With a CUDA
    ``config.device`` every shard asks for a ``GPU=1`` resource; a LocalCluster then has one
    worker per GPU (at most ``n_workers``), each seeing only its own. Completed shards are
    skipped. Raises :class:`~pipelines.sharding.ShardsFailedError` when some failed (the others
    are kept; running again does the rest)."""
    shards = stage.prepare(
        work_dir=work, config=config, num_shards=num_shards, overwrite=overwrite, **inputs
    )
    resources, gpus = None, None
    if str(getattr(config, "device", "cpu")).startswith("cuda") and (dask_address or n_workers):
        resources = {"GPU": 1}
        if not dask_address:
            gpus = local_gpus(n_workers)
            n_workers = len(gpus)
    results, failures = run_shards(
        stage.run_shard,
        shards,
        (os.fspath(work), config),
        dask_address=dask_address,
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=not dask_threads,
        resources=resources,
        retries=1,
        progress=progress,
        gpus=gpus,
    )
    if failures:
        raise ShardsFailedError(failures)
    summary = stage.finalize(Path(work), **(outputs or {}))
    skipped = sum(bool(_skipped(result)) for result in results)
    return {**summary, "shards": len(shards), "skipped_shards": skipped}


def _skipped(record: Any) -> bool:
    # a shard's record says whether it was complete before (dict records or attributes)
    return record.get("skipped", False) if isinstance(record, dict) else record.skipped


def local_gpus(n_workers: int) -> list[str]:
    """The GPUs a local CUDA run spreads its workers over: the first ``n_workers`` visible."""
    from pipelines.cluster import visible_gpus

    gpus = visible_gpus()
    if not gpus:
        raise InputError("device cuda asked for, but no GPU is visible (CUDA_VISIBLE_DEVICES)")
    if n_workers > len(gpus):
        log.warning("%d workers asked for on %d GPUs: one worker per GPU", n_workers, len(gpus))
    return gpus[:n_workers]
