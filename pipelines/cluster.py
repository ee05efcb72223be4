"""A Dask client for stage drivers: an existing scheduler, or a small LocalCluster on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from distributed import Client, LocalCluster

__all__ = ["dask_client"]


@contextlib.contextmanager
def dask_client(
    address: str | None = None,
    *,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    processes: bool = True,
) -> Iterator[Client]:
    """Yield a client of the scheduler at ``address``, or of a LocalCluster started here.

    The LocalCluster (``n_workers`` x ``threads_per_worker``; ``processes=False`` runs the
    workers as threads of this process, the cheap choice for tests) binds to 127.0.0.1, has no
    dashboard, and is closed on exit. A given ``address`` is only connected to, never closed.
    """
    if address is not None:
        with Client(address) as client:
            yield client
        return
    # Threads talk in-process ("inproc://"), which takes no host; processes listen on TCP.
    host = {"host": "127.0.0.1"} if processes else {}
    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            dashboard_address=None,
            **host,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
