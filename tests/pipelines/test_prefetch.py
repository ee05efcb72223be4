from __future__ import annotations

import threading
import time

import pytest

from pipelines.prefetch import prefetch


def test_order_and_read_ahead() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def slow(i: int) -> int:
        with lock:
            started.append(i)
        time.sleep(0.01 * (5 - i % 5))
        return i * i

    seen = []
    for item, value in prefetch(slow, range(10), depth=3):
        if item == 0:
            time.sleep(0.1)
            assert len(started) >= 3  # items 1 and 2 were loading while 0 was consumed
        seen.append((item, value))
    assert seen == [(i, i * i) for i in range(10)]


def test_errors_surface_at_their_item() -> None:
    def fn(i: int) -> int:
        if i == 2:
            raise ValueError("bad item 2")
        return i

    out = []
    with pytest.raises(ValueError, match="bad item 2"):
        for _item, value in prefetch(fn, range(5)):
            out.append(value)
    assert out == [0, 1]
