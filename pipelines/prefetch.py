"""Overlap CPU work with the network's: read-ahead of inputs (:func:`prefetch`) and in-order
write-behind of outputs (:class:`WriteBehind`)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(fn: Callable[[T], R], items: Iterable[T], depth: int = 4) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` in input order, computing up to ``depth`` items ahead on
    threads (image decoding and torch ops release the GIL). Exceptions raised by ``fn`` surface
    when their item is reached, so callers handle them in order."""
    queue: deque = deque()
    iterator = iter(items)
    with ThreadPoolExecutor(
        max_workers=max(1, min(depth, 4)), thread_name_prefix="prefetch"
    ) as pool:
        for item in iterator:
            queue.append((item, pool.submit(fn, item)))
            if len(queue) >= depth:
                break
        while queue:
            item, future = queue.popleft()
            nxt = next(iterator, _END)
            if nxt is not _END:
                queue.append((nxt, pool.submit(fn, nxt)))
            yield item, future.result()


_END = object()


class WriteBehind:
    """Runs output work (pasting, RLE encoding, PNG and store writes) on one thread, in the
    order it was submitted, while the caller goes on with the next batch.

    At most ``depth`` jobs wait at a time (``submit`` blocks beyond that), so memory stays
    bounded. The first error a job raises is raised again by the next ``submit`` or by
    :meth:`close`; the jobs after a failed one are not run. Use as a context manager:
    leaving the block waits for every job (and, on success, re-raises a job's error).
    """

    def __init__(self, depth: int = 4, name: str = "write-behind"):
        self.depth = max(1, depth)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: deque[Future] = deque()
        self._error: BaseException | None = None
        self._failed = threading.Event()

    def _check(self, keep: int) -> None:
        while len(self._pending) > keep:
            future = self._pending.popleft()
            try:
                future.result()
            except BaseException as exc:
                if self._error is None:
                    self._error = exc
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._check(self.depth - 1)

        def job() -> Any:
            if self._failed.is_set():
                return None
            try:
                return fn(*args, **kwargs)
            except BaseException:
                self._failed.set()
                raise

        self._pending.append(self._pool.submit(job))

    def close(self) -> None:
        """Wait for every job; raise the first error one of them raised."""
        try:
            self._check(0)
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # the block failed: finish what was queued, keep the block's error
            self._check(0)
        except BaseException:
            pass
        finally:
            self._pool.shutdown(wait=True)
