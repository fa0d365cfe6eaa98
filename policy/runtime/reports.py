"""The report pipeline: a bounded queue per handler, delivered in batches by a worker task.

``put`` never blocks and never raises: when a handler's queue is full the instance
is dropped and counted. Each handler's worker takes what has accumulated (up to
``batch_size``) and calls ``report(batch)``: coroutine handlers are awaited under
their timeout, plain ones run in a worker thread so a slow or hanging adapter
never holds the event loop, and so never slows a check. ``drain`` waits until every
accepted instance was handed to its adapter (used on reload and graceful shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from policy.runtime.snapshot import HandlerEntry

log = logging.getLogger("policy.reports")


@dataclass
class ReportStats:
    """Counters of one handler's queue."""

    accepted: int = 0
    delivered: int = 0
    dropped: int = 0
    failed: int = 0
    batches: int = 0


@dataclass
class _Lane:
    queue: asyncio.Queue
    worker: asyncio.Task | None = None
    stats: ReportStats = field(default_factory=ReportStats)


class ReportQueue:
    """Per-handler bounded queues with batched, isolated delivery."""

    def __init__(self, max_queue: int = 10_000, batch_size: int = 100) -> None:
        self.max_queue = max_queue
        self.batch_size = batch_size
        self._lanes: dict[HandlerEntry, _Lane] = {}
        self._closed = False

    def put(self, entry: HandlerEntry, instance: Any) -> int:
        """Queue one instance for ``entry``; 1 when accepted, 0 when dropped (queue full or closed)."""
        lane = self._lanes.get(entry)
        if lane is None:
            lane = self._lanes[entry] = _Lane(asyncio.Queue(self.max_queue))
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
        while True:
            batch = [await queue.get()]
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._deliver(entry, batch)
                lane.stats.delivered += len(batch)
            except Exception as exc:
                lane.stats.failed += len(batch)
                log.error("handler %s: report of %d instance(s) failed: %s: %s",
                          entry.name, len(batch), type(exc).__name__, exc)
            finally:
                lane.stats.batches += 1
                for _ in batch:
                    queue.task_done()

    async def _deliver(self, entry: HandlerEntry, batch: list[Any]) -> None:
        if entry.report_is_async:
            await asyncio.wait_for(entry.handler.report(batch), entry.timeout)
        else:
            await asyncio.wait_for(asyncio.to_thread(entry.handler.report, batch), entry.timeout)

    async def drain(self, entries: Iterable[HandlerEntry] | None = None, timeout: float = 10.0) -> bool:
        """Wait until every accepted instance (of ``entries``, or all) was delivered; False on timeout."""
        lanes = [self._lanes[e] for e in entries if e in self._lanes] if entries is not None else list(self._lanes.values())
        try:
            await asyncio.wait_for(asyncio.gather(*(lane.queue.join() for lane in lanes)), timeout)
            return True
        except asyncio.TimeoutError:
            log.error("reports: drain timed out after %gs", timeout)
            return False

    async def retire(self, entries: Iterable[HandlerEntry], timeout: float = 10.0) -> None:
        """Drain and stop the lanes of handlers that are going away."""
        entries = [e for e in entries if e in self._lanes]
        await self.drain(entries, timeout)
        for entry in entries:
            lane = self._lanes.pop(entry)
            if lane.worker is not None:
                lane.worker.cancel()

    async def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting, deliver everything accepted, and stop the workers."""
        self._closed = True
        delivered = await self.drain(timeout=timeout)
        for lane in self._lanes.values():
            if lane.worker is not None:
                lane.worker.cancel()
        await asyncio.gather(*(l.worker for l in self._lanes.values() if l.worker), return_exceptions=True)
        return delivered

    def stats(self) -> dict[str, ReportStats]:
        """Counters by handler name."""
        return {entry.name: lane.stats for entry, lane in self._lanes.items()}

    def depth(self) -> dict[str, int]:
        """Instances waiting, by handler name."""
        return {entry.name: lane.queue.qsize() for entry, lane in self._lanes.items()}
