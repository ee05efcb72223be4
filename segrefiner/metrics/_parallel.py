"""Run independent metric tasks in this process, in local worker processes, or on a Dask cluster.

The Dask client is taken duck-typed (anything with ``map`` and ``gather``, e.g.
``distributed.Client``) so that the library never imports dask itself.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def check_client(client: Any) -> None:
    """Raise ``TypeError`` unless ``client`` looks like a Dask client (``map`` + ``gather``)."""
    if client is not None and not (
        callable(getattr(client, "map", None)) and callable(getattr(client, "gather", None))
    ):
        raise TypeError(
            f"client must be a Dask client (with map and gather), got {type(client).__name__}"
        )


def run_tasks(
    fn: Callable[[T], R], tasks: Sequence[T], workers: int = 1, client: Any = None
) -> list[R]:
    """``[fn(t) for t in tasks]``, in order, possibly in parallel.

    ``client`` (a Dask client) wins over ``workers``; ``workers > 1`` starts that many local
    processes. ``fn`` must be a module-level function and ``tasks`` picklable. Processes are
    started with "spawn": forking a process that already runs threads (PyTorch, Dask, OpenCV)
    can deadlock, and spawn behaves the same on every platform.
    """
    check_client(client)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if client is not None:
        return list(client.gather(client.map(fn, list(tasks), pure=False)))
    if workers == 1 or len(tasks) <= 1:
        return [fn(t) for t in tasks]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        return list(pool.map(fn, tasks))


def chunked(items: Sequence[T], parts: int) -> list[list[T]]:
    """Split ``items`` into at most ``parts`` contiguous, near-equal, non-empty lists."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for k in range(parts):
        end = start + size + (1 if k < extra else 0)
        out.append(list(items[start:end]))
        start = end
    return [chunk for chunk in out if chunk]
