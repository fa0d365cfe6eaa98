"""The report pipeline: a bounded queue per handler, delivered in batches by a worker task.

``put`` never blocks and never raises: when a handler's queue is full the instance
is dropped and counted. Each handler's worker takes what has accumulated (up to
``batch_size``) and calls ``report(batch)``: coroutine handlers are awaited under
their timeout; plain ones run on the lane's own daemon thread, so a slow or
hanging adapter never holds the event loop (and so never slows a check), never
takes threads from other handlers, and never keeps the process from exiting.
``drain`` waits until every accepted instance was handed to its adapter (used on
reload and graceful shutdown); what a drain gives up on is counted as dropped.

Counters are kept per handler *name*, so they keep growing across config reloads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue as _queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from policy.runtime.snapshot import HandlerEntry

log = logging.getLogger("policy.reports")


@dataclass
class ReportStats:
    """Counters of one handler's reports (instances, except where it says batches)."""

    accepted: int = 0
    delivered: int = 0
    dropped: int = 0
    failed: int = 0
    batches: int = 0
    failed_batches: int = 0
    timed_out_batches: int = 0


class _Thread:
    """One daemon thread running a sync handler's ``report`` calls, one at a time, in order."""

    def __init__(self, name: str) -> None:
        self._calls: _queue.SimpleQueue = _queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> concurrent.futures.Future:
        """Run ``fn(arg)`` after the calls already submitted; a cancelled call that has not started is skipped."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.put((future, fn, arg))
        return future

    def stop(self) -> None:
        """Let the thread end after the calls already submitted (it is a daemon: a hung call does not block exit)."""
        self._calls.put(None)

    def _run(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            future, fn, arg = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(arg))
            except BaseException as exc:  # handed to the awaiting worker
                future.set_exception(exc)


@dataclass
class _Lane:
    queue: asyncio.Queue
    stats: ReportStats
    worker: asyncio.Task | None = None
    thread: _Thread | None = None


class ReportQueue:
    """Per-handler bounded queues with batched, isolated delivery."""

    def __init__(self, max_queue: int = 10_000, batch_size: int = 100) -> None:
        self.max_queue = max_queue
        self.batch_size = batch_size
        self._lanes: dict[HandlerEntry, _Lane] = {}
        self._totals: dict[str, ReportStats] = {}
        self._closed = False

    def _lane(self, entry: HandlerEntry) -> _Lane:
        lane = self._lanes.get(entry)
        if lane is None:
            stats = self._totals.setdefault(entry.name, ReportStats())
            lane = self._lanes[entry] = _Lane(asyncio.Queue(self.max_queue), stats)
        return lane

    def put(self, entry: HandlerEntry, instance: Any) -> int:
        """Queue one instance for ``entry``; 1 when accepted, 0 when dropped (queue full or closed)."""
        lane = self._lanes.get(entry) or self._lane(entry)
        if self._closed:
            lane.stats.dropped += 1
            return 0
        try:
            lane.queue.put_nowait(instance)
        except asyncio.QueueFull:
            lane.stats.dropped += 1
            return 0
        lane.stats.accepted += 1
        if lane.worker is None or lane.worker.done():
            lane.worker = asyncio.get_running_loop().create_task(
                self._work(entry, lane), name=f"reports:{entry.name}")
        return 1

    async def _work(self, entry: HandlerEntry, lane: _Lane) -> None:
        queue = lane.queue
        stats = lane.stats
        while True:
            batch = [await queue.get()]
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._deliver(entry, lane, batch)
                stats.delivered += len(batch)
            except asyncio.CancelledError:
                stats.dropped += len(batch)  # stopped mid-delivery (a drain gave up): never silent
                raise
            except (asyncio.TimeoutError, TimeoutError):
                stats.failed += len(batch)
                stats.timed_out_batches += 1
                log.error("handler %s: report of %d instance(s) timed out after %gs",
                          entry.name, len(batch), entry.timeout)
            except Exception as exc:
                stats.failed += len(batch)
                stats.failed_batches += 1
                log.error("handler %s: report of %d instance(s) failed: %s: %s",
                          entry.name, len(batch), type(exc).__name__, exc)
            finally:
                stats.batches += 1
                for _ in batch:
                    queue.task_done()

    async def _deliver(self, entry: HandlerEntry, lane: _Lane, batch: list[Any]) -> None:
        if entry.report_is_async:
            await asyncio.wait_for(entry.handler.report(batch), entry.timeout)
            return
        if lane.thread is None:
            lane.thread = _Thread(f"reports:{entry.name}")
        future = lane.thread.submit(entry.handler.report, batch)
        await asyncio.wait_for(asyncio.wrap_future(future), entry.timeout)

    async def drain(self, entries: Iterable[HandlerEntry] | None = None, timeout: float = 10.0) -> bool:
        """Wait until every accepted instance (of ``entries``, or all) was delivered; False on timeout."""
        if entries is None:
            lanes = list(self._lanes.values())
        else:
            lanes = [self._lanes[e] for e in entries if e in self._lanes]
        try:
            await asyncio.wait_for(asyncio.gather(*(lane.queue.join() for lane in lanes)), timeout)
            return True
        except asyncio.TimeoutError:
            log.error("reports: drain timed out after %gs", timeout)
            return False

    async def _stop(self, lanes: list[_Lane]) -> None:
        """Stop lanes' workers and threads; instances still waiting are counted as dropped."""
        for lane in lanes:
            left = lane.queue.qsize()
            if left:
                lane.stats.dropped += left
                log.error("reports: %d instance(s) not delivered in time were dropped", left)
                while not lane.queue.empty():
                    lane.queue.get_nowait()
                    lane.queue.task_done()
            if lane.worker is not None:
                lane.worker.cancel()
            if lane.thread is not None:
                lane.thread.stop()
        await asyncio.gather(*(lane.worker for lane in lanes if lane.worker), return_exceptions=True)

    async def retire(self, entries: Iterable[HandlerEntry], timeout: float = 10.0) -> None:
        """Drain and stop the lanes of handlers that are going away."""
        entries = [e for e in entries if e in self._lanes]
        await self.drain(entries, timeout)
        await self._stop([self._lanes.pop(entry) for entry in entries])

    async def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting, deliver everything accepted (up to ``timeout``), and stop the workers."""
        self._closed = True
        delivered = await self.drain(timeout=timeout)
        await self._stop(list(self._lanes.values()))
        return delivered

    def stats(self) -> dict[str, ReportStats]:
        """Counters by handler name (cumulative across reloads)."""
        return dict(self._totals)

    def depth(self) -> dict[str, int]:
        """Instances waiting, by handler name."""
        out: dict[str, int] = {}
        for entry, lane in list(self._lanes.items()):
            out[entry.name] = out.get(entry.name, 0) + lane.queue.qsize()
        return out
