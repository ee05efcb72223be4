"""Flow ``gen-coarse-hr``: the offline HR coarse masks (DIS-TR + ThinObject-5K train) in a
zarr mask store: prepare (one task) -> one task per shard on Dask -> finalize (one task).

The cache key covers the ground-truth masks' content, the seed and the degradation
parameters; a shard's cached result is used only while its completion record is in the store.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.cluster import on_cluster
from flows.params import CoarseHRParams
from flows.tasks import absolute, artifact_key, stage_tasks
from pipelines.coarse import COARSE_HR, CoarseHRConfig

__all__ = ["TASKS", "gen_coarse_hr"]

DEFAULT_COARSE = CoarseHRParams()


# prepare-coarse-hr, coarse-hr-shard, finalize-coarse-hr
TASKS = stage_tasks(COARSE_HR)


@flow(name="gen-coarse-hr")
def gen_coarse_hr(params: CoarseHRParams = DEFAULT_COARSE) -> dict[str, Any]:
    """Offline coarse masks for HR training, deterministic per (seed, sample)."""
    with on_cluster(params.cluster):
        root, store = absolute(params.data_root), absolute(params.store)
        config = CoarseHRConfig(data_root=root, seed=params.seed)
        inputs = {"images": params.images, "masks": params.masks, "overwrite": params.overwrite}
        key = TASKS.key(config, params.num_shards, inputs)
        refresh = params.refresh_cache
        shards = TASKS.run_prepare(store, config, params.num_shards, key, inputs, refresh)
        results = TASKS.run_shards(shards, store, config, key, refresh, stage="gen-coarse-hr")
        summary = TASKS.run_finalize(store, key, {})
        summary["skipped_shards"] = sum(r.skipped for r in results)
        create_table_artifact(
            [{k: v for k, v in summary.items() if not isinstance(v, list | dict)}],
            key=artifact_key("gen-coarse-hr", "summary"),
            description=f"gen-coarse-hr: {store}",
        )
        return summary
