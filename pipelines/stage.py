"""The contract every sharded stage keeps, so one runner (:func:`pipelines.refine.run_stage` in
this process or on Dask) and one Prefect task factory (:func:`flows.tasks.stage_tasks`) serve
them all.

A stage works in one folder (its work directory or store): ``prepare`` plans the shards and
writes what they need, ``run_shard`` does one shard and writes its completion record (a
completed shard is skipped), ``finalize`` checks that every shard is complete and writes the
stage's product. The predicates tell a cache whether a product is really on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipelines.sharding import Shard

__all__ = ["Stage"]


@dataclass(frozen=True)
class Stage:
    """One sharded stage.

    - ``name``: ``refine-coco``, ``refine-hr``, ``coarse-hr``; its Prefect tasks are
      ``prepare-<name>``, ``<name>-shard`` and ``finalize-<name>``.
    - ``prepare(*, work_dir, config, num_shards, overwrite=False, **inputs) -> list[Shard]``,
      called with keywords only, so a stage's own prepare function serves when its parameters
      have these names.
    - ``run_shard(work, config, shard) -> record``: module level, so it pickles for Dask.
    - ``finalize(work, **outputs) -> dict``: the summary.
    - ``planned(work)``: the folder holds a prepared stage; ``shard_done(work, shard)``: the
      shard's completion record is there; ``finalized(work, **outputs)``: the product is there
      (``None``: finalize is cheap and always runs).
    """

    name: str
    prepare: Callable[..., list[Shard]]
    run_shard: Callable[[str, Any, Shard], Any]
    finalize: Callable[..., dict[str, Any]]
    planned: Callable[[str], bool]
    shard_done: Callable[[str, Shard], bool]
    finalized: Callable[..., bool] | None = None
