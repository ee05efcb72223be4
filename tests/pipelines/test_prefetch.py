from __future__ import annotations

import threading
import time

import pytest

from pipelines.prefetch import prefetch


def test_order_and_read_ahead() -> None:
    started = {i: threading.Event() for i in range(10)}
    consumed_0 = threading.Event()

    def slow(i: int) -> int:
        started[i].set()
        if i in (1, 2):
            # finishes only once item 0 has been handed out: read-ahead, not a serial loop
            assert consumed_0.wait(10), f"item {i} was never released"
        time.sleep(0.01 * (5 - i % 5))  # items finish out of order
        return i * i

    seen = []
    for item, value in prefetch(slow, range(10), depth=3):
        if item == 0:
            # items 1 and 2 are loading while 0 is consumed (waited for, with a deadline)
            assert started[1].wait(10) and started[2].wait(10)
            consumed_0.set()
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


def test_write_behind_runs_in_order_off_the_caller_thread() -> None:
    from pipelines.prefetch import WriteBehind

    done: list[int] = []
    threads = set()

    def write(i: int) -> None:
        time.sleep(0.002 * (3 - i % 3))
        threads.add(threading.current_thread().name)
        done.append(i)

    with WriteBehind(depth=2) as behind:
        for i in range(12):
            behind.submit(write, i)
            assert len(behind._pending) <= 2  # bounded
    assert done == list(range(12))
    assert threading.current_thread().name not in threads


def test_write_behind_error_stops_later_jobs_and_surfaces() -> None:
    from pipelines.prefetch import WriteBehind

    done: list[int] = []

    def write(i: int) -> None:
        if i == 3:
            raise OSError("disk full at 3")
        done.append(i)

    behind = WriteBehind(depth=100)
    for i in range(8):
        behind.submit(write, i)
    with pytest.raises(OSError, match="disk full at 3"):
        behind.close()
    assert done == [0, 1, 2]


def test_write_behind_keeps_the_blocks_own_error() -> None:
    from pipelines.prefetch import WriteBehind

    done: list[int] = []
    with pytest.raises(KeyError, match="caller"):
        with WriteBehind() as behind:
            behind.submit(done.append, 1)
            raise KeyError("caller")
    assert done == [1]  # queued work was finished, not dropped
