"""The report queue's batching: order kept across batches, a full batch leaves without lingering, a drain or a
close delivers at once; a plain adapter's batches go through its thread in order."""

from __future__ import annotations

import asyncio
import threading

from policy.config.snapshot import HandlerEntry
from policy.runtime.reports import ReportQueue
from tests.reports._receivers import PATIENCE

FOREVER = 3600.0  # a linger no test may wait out


class AsyncRecorder:
    """An async report adapter recording each batch, waking waiters on each."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.arrived = asyncio.Event()

    async def report(self, batch):
        self.batches.append(list(batch))
        self.arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(PATIENCE):
            while sum(map(len, self.batches)) < count:
                self.arrived.clear()
                await self.arrived.wait()


class ThreadRecorder:
    """A plain report adapter (run on its lane's thread) recording each batch and the thread it ran on."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()

    def report(self, batch):
        self.threads.add(threading.get_ident())
        self.batches.append(list(batch))


def entry(handler, name: str = "sink") -> HandlerEntry:
    return HandlerEntry(name, object, handler)  # type: ignore[arg-type]


async def test_a_drain_delivers_at_once_instead_of_lingering():
    queue, recorder = ReportQueue(linger=FOREVER), AsyncRecorder()
    sink = entry(recorder)
    assert [queue.put(sink, i) for i in range(3)] == [1, 1, 1]
    assert await queue.drain(timeout=PATIENCE)  # before: waited out the linger
    assert recorder.batches == [[0, 1, 2]]
    queue.put(sink, 3)
    assert await queue.drain(timeout=PATIENCE)
    assert recorder.batches == [[0, 1, 2], [3]]
    assert await queue.close(timeout=PATIENCE)


async def test_a_full_batch_leaves_without_waiting_out_the_linger():
    queue, recorder = ReportQueue(batch_size=4, linger=FOREVER), AsyncRecorder()
    sink = entry(recorder)
    for i in range(10):
        queue.put(sink, i)
    await recorder.wait_for(8)
    assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert queue.depth() == {"sink": 2}  # a partial batch lingers
    assert await queue.close(timeout=PATIENCE)
    assert recorder.batches[-1] == [8, 9]
    stats = queue.stats()["sink"]
    assert (stats.accepted, stats.delivered, stats.dropped, stats.batches) == (10, 10, 0, 3)


async def test_order_is_kept_across_batches_and_lanes():
    queue = ReportQueue(batch_size=7, linger=0)
    first, second = AsyncRecorder(), ThreadRecorder()
    a, b = entry(first, "a"), entry(second, "b")
    for i in range(100):
        queue.put(a, i)
        queue.put(b, i)
        if i % 9 == 0:
            await asyncio.sleep(0)  # let workers take partial batches
    assert await queue.drain(timeout=PATIENCE)
    assert [i for batch in first.batches for i in batch] == list(range(100))
    assert [i for batch in second.batches for i in batch] == list(range(100))
    assert max(map(len, first.batches)) <= 7 and max(map(len, second.batches)) <= 7
    assert len(second.threads) == 1 and threading.get_ident() not in second.threads
    assert await queue.close(timeout=PATIENCE)


async def test_closed_and_full_queues_drop_and_count():
    queue, recorder = ReportQueue(max_queue=3, linger=FOREVER), AsyncRecorder()
    sink = entry(recorder)
    assert [queue.put(sink, i) for i in range(5)] == [1, 1, 1, 0, 0]
    assert await queue.close(timeout=PATIENCE)
    assert queue.put(sink, 9) == 0
    assert recorder.batches == [[0, 1, 2]]
    stats = queue.stats()["sink"]
    assert (stats.accepted, stats.delivered, stats.dropped) == (3, 3, 3)


async def test_deferred_calls_run_in_order_on_a_full_batch_a_drain_or_close():
    queue, recorder = ReportQueue(batch_size=3, linger=FOREVER), AsyncRecorder()
    sink = entry(recorder)
    calls, groups = [], []

    def make(items):
        groups.append(list(items))
        for i in items:
            calls.append(i)
            queue.put(sink, i)

    queue.defer(make, 0)
    queue.defer(make, 1)
    assert calls == []  # waiting for the linger (or a batch) to end
    queue.defer(make, 2)
    assert calls == []  # a batch's worth: run in the loop's next iteration, not by the caller
    await asyncio.sleep(0)
    assert calls == [0, 1, 2] and groups == [[0, 1, 2]]  # one call for the items deferred together
    queue.defer(make, 3)
    assert await queue.drain(timeout=PATIENCE)  # a drain runs what waits, then delivers it
    assert calls == [0, 1, 2, 3] and [i for b in recorder.batches for i in b] == [0, 1, 2, 3]
    queue.defer(make, 4)
    assert await queue.close(timeout=PATIENCE)
    assert [i for b in recorder.batches for i in b] == [0, 1, 2, 3, 4]


async def test_deferred_calls_run_after_the_linger_and_a_failing_one_spares_the_rest():
    queue, recorder = ReportQueue(linger=0.001), AsyncRecorder()
    sink = entry(recorder)

    def fail(items):
        raise RuntimeError("broken record")

    def put(items):
        for item in items:
            queue.put(sink, item)

    queue.defer(put, "a")
    queue.defer(fail, "x")
    queue.defer(put, "b")
    await recorder.wait_for(2)  # no drain: the linger timer ran them
    assert [i for b in recorder.batches for i in b] == ["a", "b"]
    assert await queue.close(timeout=PATIENCE)


def test_without_a_loop_deferred_calls_run_at_once():
    queue, calls = ReportQueue(), []
    queue.defer(calls.append, 1)
    assert calls == [[1]]


async def test_deferred_calls_never_wait_beyond_max_queue():
    queue, calls = ReportQueue(max_queue=5, batch_size=2, linger=FOREVER), []
    for i in range(5):
        queue.defer(calls.extend, i)
    assert calls == [0, 1, 2, 3, 4]  # the bound reached: run by the caller, before its loop turns
