"""Dask clusters for stage drivers: an existing scheduler, a small LocalCluster on 127.0.0.1, or
on a multi-GPU machine one worker process per GPU, each seeing only its own GPU
(``dask_cuda.LocalCUDACluster`` where dask-cuda is installed, else a SpecCluster of nannies)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from typing import Any

from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster

from segrefiner.errors import InputError

__all__ = ["dask_client", "local_cluster", "visible_gpus"]

HOST = "127.0.0.1"
# Seconds to wait for a given scheduler before saying it cannot be reached.
CONNECT_TIMEOUT_S = 20


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs):
    that variable's list when it is set, else every device CUDA reports (none without CUDA)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        entries = [e.strip() for e in env.split(",") if e.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU
        return entries[: entries.index("-1")] if "-1" in entries else entries
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def local_cluster(
    *,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    processes: bool = True,
    gpus: Sequence[str] | None = None,
    host: str = HOST,
    dashboard_address: str | None = None,
    scheduler_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> LocalCluster | SpecCluster:
    """A cluster on this machine, listening on ``host`` (loopback) only.

    Without ``gpus``: a LocalCluster of ``n_workers`` x ``threads_per_worker`` (``kwargs``
    pass through, e.g. ``resources``). With ``gpus`` (``CUDA_VISIBLE_DEVICES`` entries, see
    :func:`visible_gpus`): one worker process per GPU, its ``CUDA_VISIBLE_DEVICES`` set to that
    GPU alone (so ``cuda`` means its own card) and advertising ``GPU=1``; ``n_workers`` is
    ignored and ``kwargs`` must be empty. That cluster is dask-cuda's ``LocalCUDACluster`` where
    dask-cuda is installed (its workers also get its CPU affinity and memory settings; each
    sees the GPU list rotated so that its own card comes first), else a SpecCluster of nannies.
    """
    scheduler_kwargs = dict(scheduler_kwargs or {})
    if not gpus:
        extra = {"host": host} if processes else {}  # threads talk in-process and take no host
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            dashboard_address=dashboard_address,
            scheduler_kwargs=scheduler_kwargs or None,
            **extra,
            **kwargs,
        )
    if not processes:
        raise InputError("one worker per GPU needs worker processes, not threads")
    unknown = set(kwargs) - {"resources"}
    if unknown:
        raise TypeError(f"local_cluster(gpus=...) does not take {sorted(unknown)}")
    # The scheduler's HTTP endpoint (health, metrics) runs even without a dashboard: keep it
    # on loopback and off the conventional port 8787.
    scheduler_kwargs.setdefault("dashboard_address", f"{host}:0")
    if importlib.util.find_spec("dask_cuda") is not None:
        from dask_cuda import LocalCUDACluster

        return LocalCUDACluster(
            CUDA_VISIBLE_DEVICES=",".join(str(g) for g in gpus),
            n_workers=len(gpus),
            threads_per_worker=threads_per_worker,
            host=host,
            dashboard_address=dashboard_address,
            scheduler_kwargs=scheduler_kwargs,
            resources={"GPU": 1},
        )
    scheduler = {
        "cls": Scheduler,
        "options": {"host": host, "dashboard": dashboard_address is not None, **scheduler_kwargs},
    }
    workers = {
        f"gpu-{gpu}": {
            "cls": Nanny,
            "options": {
                "nthreads": threads_per_worker,
                "host": host,
                "env": {"CUDA_VISIBLE_DEVICES": str(gpu)},
                "resources": {"GPU": 1},
                "dashboard": False,
            },
        }
        for gpu in gpus
    }
    return SpecCluster(workers=workers, scheduler=scheduler, name="segrefiner-gpus")


@contextlib.contextmanager
def dask_client(
    address: str | None = None,
    *,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    processes: bool = True,
    gpus: Sequence[str] | None = None,
) -> Iterator[Client]:
    """Yield a client of the scheduler at ``address``, or of a cluster started here.

    The local cluster (see :func:`local_cluster`: ``n_workers`` x ``threads_per_worker``, or
    one worker per entry of ``gpus``; ``processes=False`` runs the workers as threads of this
    process, the cheap choice for tests) binds to 127.0.0.1, has no dashboard, and is closed on
    exit. A given ``address`` is only connected to, never closed.
    """
    if address is not None:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise InputError(
                f"dask scheduler {address}: unreachable after {CONNECT_TIMEOUT_S} s ({exc}); "
                "check the address and that `dask scheduler` runs there"
            ) from exc
        with client:
            yield client
        return
    with (
        local_cluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            gpus=gpus,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
