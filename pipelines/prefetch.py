"""Read-ahead on threads: load the next items while the current ones are computed."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

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
