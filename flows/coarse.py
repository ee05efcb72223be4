"""Flow ``gen-coarse-hr``: the offline HR coarse masks (DIS-TR + ThinObject-5K train) in a
zarr mask store: prepare (one task) -> one task per shard on Dask -> finalize (one task).

The cache key covers the ground-truth masks' content, the seed and the degradation
parameters; a shard's cached result is used only while its completion record is in the store.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from flows.caching import content_key, keyed
from flows.cluster import on_cluster
from flows.params import CoarseHRParams
from flows.tasks import absolute, artifact_key, map_shards, shard_progress
from pipelines.coarse import (
    CoarseHRConfig,
    Shard,
    ShardResult,
    finalize_coarse_hr,
    list_samples,
    prepare_coarse_hr,
    run_shard,
)
from pipelines.models import file_sha256
from pipelines.stores import MaskStore

__all__ = ["gen_coarse_hr"]

DEFAULT_COARSE = CoarseHRParams()


def _store_exists(parameters: dict[str, Any]) -> bool:
    return MaskStore.exists(parameters["store"])


def _shard_done(parameters: dict[str, Any]) -> bool:
    if not MaskStore.exists(parameters["store"]):
        return False
    shard: Shard = parameters["shard"]
    record = MaskStore.open(parameters["store"]).completion_record(shard.name)
    return record is not None and (record.get("start"), record.get("stop")) == (
        shard.start,
        shard.stop,
    )


@task(name="prepare-coarse-hr", cache_key_fn=keyed("store", "num_shards", exists=_store_exists))
def prepare(
    params: CoarseHRParams, store: str, config: CoarseHRConfig, num_shards: int | None,
    content_key: str,
) -> list[Shard]:  # fmt: skip
    """List the samples, create (or check) the store, plan the shards."""
    return prepare_coarse_hr(
        config.data_root,
        store,
        config,
        num_shards=num_shards,
        images=params.images,
        masks=params.masks,
        overwrite=params.overwrite,
    )


@task(name="coarse-hr-shard", retries=1, cache_key_fn=keyed("store", "shard", exists=_shard_done))
def coarse_shard(store: str, shard: Shard, config: CoarseHRConfig, content_key: str) -> ShardResult:
    """Make and write one shard's coarse masks (a completed shard is skipped)."""
    with shard_progress("gen-coarse-hr", shard.index, shard.stop - shard.start):
        return run_shard(store, shard, config)


@task(name="finalize-coarse-hr")
def finalize(store: str) -> dict[str, Any]:
    """Write the manifest once every shard is complete."""
    return finalize_coarse_hr(store)


@flow(name="gen-coarse-hr")
def gen_coarse_hr(params: CoarseHRParams = DEFAULT_COARSE) -> dict[str, Any]:
    """Offline coarse masks for HR training, deterministic per (seed, sample)."""
    with on_cluster(params.cluster):
        root, store = absolute(params.data_root), absolute(params.store)
        config = CoarseHRConfig(data_root=root, seed=params.seed)
        samples = list_samples(root, images=params.images, masks=params.masks)
        key = content_key(
            config=dataclasses.replace(config, data_root=""),
            ground_truth=[[r.sample_id, file_sha256(r.gt) if r.gt and Path(r.gt).is_file() else None]
                          for r in samples],
        )  # fmt: skip
        step = (
            (lambda t: t.with_options(refresh_cache=True))
            if params.refresh_cache
            else (lambda t: t)
        )
        shards = step(prepare)(params, store, config, params.num_shards, key)
        results = map_shards(
            step(coarse_shard),
            shards,
            {"store": store, "config": config, "content_key": key},
            stage="gen-coarse-hr",
        )
        summary = finalize(store)
        summary["skipped_shards"] = sum(r.skipped for r in results)
        create_table_artifact(
            [{k: v for k, v in summary.items() if not isinstance(v, list | dict)}],
            key=artifact_key("gen-coarse-hr", "summary"),
            description=f"gen-coarse-hr: {store}",
        )
        return summary
