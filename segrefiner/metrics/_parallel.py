"""Run independent metric tasks in this process, in local worker processes, or on a Dask cluster.

The Dask client is taken duck-typed (anything with ``map`` and ``gather``, e.g.
``distributed.Client``) so that the library never imports dask itself.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from segrefiner.errors import InputError

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


class TaskRunner:
    """Runs lists of independent tasks here, in local worker processes, or on a Dask client.

    ``client`` (a Dask client) wins over ``workers``; ``workers > 1`` starts that many local
    processes on first use and keeps them until :meth:`close` (or the end of a ``with`` block),
    so several stages share one start-up. Processes are started with "spawn": forking a process
    that already runs threads (PyTorch, Dask, OpenCV) can deadlock, and spawn behaves the same
    on every platform. Task functions must be module-level and their arguments picklable.
    """

    def __init__(self, workers: int = 1, client: Any = None) -> None:
        check_client(client)
        if workers < 1:
            raise InputError(f"workers: must be >= 1, got {workers}")
        self.workers = workers
        self.client = client
        self._pool: ProcessPoolExecutor | None = None

    @property
    def parallel(self) -> bool:
        return self.client is not None or self.workers > 1

    @property
    def slots(self) -> int:
        """How many tasks can run at once (a guess for a Dask cluster)."""
        return self.workers if self.client is None else 8

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> list[R]:
        """``[fn(t) for t in tasks]``, in order."""
        if self.client is not None:
            return list(self.client.gather(self.client.map(fn, list(tasks), pure=False)))
        if self.workers == 1 or len(tasks) <= 1:
            return [fn(t) for t in tasks]
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return list(self._pool.map(fn, tasks))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
