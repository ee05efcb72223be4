"""Shards and the one runner that executes them in-process or on a Dask cluster.

A shard is a contiguous range of items in a stage's fixed item order. Stage functions take
(paths, a shard, a config) and return a small record; this module runs them, reports
progress, and collects failures per shard so that one bad shard never stops the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from segrefiner.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["Shard", "ShardsFailedError", "plan_shards", "run_shards"]


@dataclass(frozen=True)
class Shard:
    """Items ``[start, stop)`` of the stage order; ``name`` is its completion-record name."""

    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.index:05d}"

    def __len__(self) -> int:
        return self.stop - self.start


class ShardsFailedError(RuntimeError):
    """Some shards raised; the others finished. ``failures`` maps shard index -> message."""

    def __init__(self, failures: dict[int, str]) -> None:
        self.failures = failures
        lines = "\n".join(f"shard {i}: {msg}" for i, msg in sorted(failures.items()))
        super().__init__(f"{len(failures)} shard(s) failed (re-run to retry only those):\n{lines}")


def plan_shards(num_items: int, num_shards: int) -> list[Shard]:
    """Cut ``num_items`` into ``num_shards`` contiguous ranges whose sizes differ by <= 1.

    Never makes empty shards: with fewer items than shards, one item per shard.
    """
    if num_shards < 1:
        raise InputError(f"num_shards: must be >= 1, got {num_shards}")
    count = min(num_shards, num_items)
    bounds = [i * num_items // count for i in range(count + 1)] if count else [0]
    return [Shard(i, bounds[i], bounds[i + 1]) for i in range(count)]


ProgressFn = Callable[[Shard, Any | None, str | None], None]


def run_shards(
    fn: Callable[..., Any],
    shards: Sequence[Shard],
    args: Sequence[Any],
    *,
    dask_address: str | None = None,
    n_workers: int = 0,
    threads_per_worker: int = 1,
    processes: bool = True,
    resources: dict[str, float] | None = None,
    retries: int = 0,
    progress: ProgressFn | None = None,
    gpus: Sequence[str] | None = None,
) -> tuple[list[Any], dict[int, str]]:
    """Run ``fn(*args, shard)`` for every shard; return ``(results, failures)``.

    ``n_workers=0`` and no ``dask_address``: in this process, one shard after another (no Dask;
    the cheap path for one CPU or GPU). Otherwise on the scheduler at ``dask_address`` or a
    LocalCluster of ``n_workers`` x ``threads_per_worker`` on 127.0.0.1. ``resources`` (e.g.
    ``{"GPU": 1}``) pins each shard to workers that advertise them; ``gpus`` makes the
    LocalCluster one worker per GPU, each seeing only its own (see
    :func:`pipelines.cluster.local_cluster`); ``retries`` re-submits a shard that raised. ``progress(shard, result, error)`` is called as each shard ends.
    """
    results: list[Any] = []
    failures: dict[int, str] = {}

    def finished(shard: Shard, result: Any | None, error: BaseException | None) -> None:
        if error is None:
            results.append(result)
        else:
            failures[shard.index] = f"{type(error).__name__}: {error}"
            log.error("shard %d failed: %s", shard.index, error)
        if progress is not None:
            progress(shard, result, None if error is None else failures[shard.index])

    if not shards:
        return results, failures
    if dask_address is None and n_workers == 0:
        for shard in shards:
            error: BaseException | None = None
            for attempt in range(retries + 1):
                try:
                    result = fn(*args, shard)
                    error = None
                    break
                except Exception as exc:  # reported per shard; the other shards keep going
                    error = exc
                    log.warning("shard %d attempt %d failed: %s", shard.index, attempt + 1, exc)
            finished(shard, None if error else result, error)
        return results, failures

    from distributed import as_completed

    from pipelines.cluster import dask_client

    started = time.perf_counter()
    with dask_client(
        dask_address,
        n_workers=max(n_workers, 1),
        threads_per_worker=threads_per_worker,
        processes=processes,
        gpus=gpus,
    ) as client:
        futures = {
            client.submit(
                fn,
                *args,
                shard,
                pure=False,
                resources=resources,
                retries=retries,
                key=f"{fn.__name__}-{shard.name}-{time.time_ns()}",
            ): shard
            for shard in shards
        }
        for future in as_completed(futures):
            shard = futures[future]
            try:
                finished(shard, future.result(), None)
            except Exception as exc:
                finished(shard, None, exc)
    log.info("%d shards in %.1f s", len(shards), time.perf_counter() - started)
    return results, failures
