"""The report pipeline: a bounded queue per handler, delivered in batches by a worker task.

``put`` never blocks and never raises: when a handler's queue is full the instance
is dropped and counted. Each handler's worker takes what has accumulated (up to
``batch_size``, lingering a few milliseconds for a batch to fill) and calls
``report(batch)``: coroutine handlers are awaited under their timeout; plain ones
run on the lane's own daemon thread, so a slow or
hanging adapter never holds the event loop (and so never slows a check), never
takes threads from other handlers, and never keeps the process from exiting.
``drain`` waits until every accepted instance was handed to its adapter (used on
reload and graceful shutdown), delivering without lingering; what a drain gives up
on is counted as dropped. A full batch leaves at once.

``defer`` lets a caller postpone building instances: the decision log appends each
check's record to a list that runs in one go (at ``batch_size`` records, after
``linger``, or first thing in a drain or close), so the report work of many checks
runs in one tight loop instead of each between its own request's gRPC work, which
costs a loaded server noticeably less CPU.

A plain handler's call that times out cannot be stopped (it is a thread): the lane
keeps one call in flight and waits for it to return before handing over the next
batch, so what arrives meanwhile waits in the bounded queue (and beyond
``max_queue`` is dropped and counted); a hung adapter costs one thread and at most
``max_queue`` instances, never unbounded memory.

Counters are kept per handler *name*, so they keep growing across config reloads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue as _queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from policy.config.snapshot import HandlerEntry

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
    stalls: int = 0  # times the worker waited for a timed-out call still running on the lane's thread


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


class _Lane:
    """One handler's waiting instances, its worker task, and the counts that tell when it is idle."""

    __slots__ = ("items", "stats", "pending", "wakeup", "lingering", "idle", "worker", "thread", "in_flight")

    def __init__(self, stats: ReportStats) -> None:
        self.items: deque[Any] = deque()
        self.stats = stats
        self.pending = 0  # accepted and not finished: waiting, or in the batch being delivered
        #: What the worker awaits: the first instance (``lingering`` False) or the end of its linger (True).
        self.wakeup: asyncio.Future | None = None
        self.lingering = False
        self.idle = asyncio.Event()
        self.idle.set()
        self.worker: asyncio.Task | None = None
        self.thread: _Thread | None = None
        self.in_flight: concurrent.futures.Future | None = None  # the thread's latest call


def _release(lane: _Lane, wakeup: asyncio.Future | None = None) -> None:
    """Wake the lane's worker (from its wait for an instance, or its linger); only ``wakeup`` when given."""
    current = lane.wakeup
    if current is None or (wakeup is not None and current is not wakeup):
        return
    lane.wakeup = None
    lane.lingering = False
    if not current.done():
        current.set_result(None)


class ReportQueue:
    """Per-handler bounded queues with batched, isolated delivery.

    :param max_queue: instances that may wait per handler; more are dropped (and counted).
    :param batch_size: most instances handed to one ``report`` call.
    :param linger: seconds a worker waits for a batch to fill before delivering a partial
        one; a few milliseconds turn a report per check into a batch per handler per
        few milliseconds, which is what keeps reporting cheap under load.
    """

    def __init__(self, max_queue: int = 10_000, batch_size: int = 100, linger: float = 0.005) -> None:
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.linger = linger
        self._lanes: dict[HandlerEntry, _Lane] = {}
        self._totals: dict[str, ReportStats] = {}
        self._closed = False
        self._draining = 0  # drains under way: workers deliver what they have without lingering
        self._deferred: list[tuple[Callable[[list[Any]], Any], list[Any]]] = []
        self._deferred_count = 0
        self._deferred_timer: asyncio.Handle | None = None

    def _lane(self, entry: HandlerEntry) -> _Lane:
        lane = self._lanes.get(entry)
        if lane is None:
            lane = self._lanes[entry] = _Lane(self._totals.setdefault(entry.name, ReportStats()))
        return lane

    def put(self, entry: HandlerEntry, instance: Any) -> int:
        """Queue one instance for ``entry``; 1 when accepted, 0 when dropped (queue full or closed)."""
        lane = self._lanes.get(entry) or self._lane(entry)
        if self._closed or len(lane.items) >= self.max_queue:
            lane.stats.dropped += 1
            return 0
        items = lane.items
        items.append(instance)
        lane.stats.accepted += 1
        lane.pending += 1
        if lane.pending == 1:
            lane.idle.clear()
        wakeup = lane.wakeup
        if wakeup is not None:
            if not lane.lingering or len(items) >= self.batch_size:  # the first instance, or a full batch
                _release(lane)
        elif lane.worker is None or lane.worker.done():
            lane.worker = asyncio.get_running_loop().create_task(
                self._work(entry, lane), name=f"reports:{entry.name}")
        return 1

    def defer(self, fn: Callable[[list[Any]], Any], item: Any) -> None:
        """Call ``fn(items)`` later with ``item`` and the items deferred to ``fn`` right before or after it.

        ``fn`` builds and puts instances. Calls run in the order items were deferred:
        ``linger`` seconds after the first item at the latest, in the next loop iteration
        once ``batch_size`` items wait (at once when ``max_queue`` do), and first thing in
        any drain or close. A check that reports something does only this append, and the
        reports of many checks are built in one tight loop instead of each between its own
        request's gRPC work. Without a running loop (or with ``linger`` 0) it runs now.
        """
        deferred = self._deferred
        if deferred and deferred[-1][0] == fn:
            deferred[-1][1].append(item)
        else:
            deferred.append((fn, [item]))
        self._deferred_count = count = self._deferred_count + 1
        if count >= self.max_queue or self.linger <= 0:
            self.run_deferred()
        elif count == 1 or count == self.batch_size:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop to run them later
                self.run_deferred()
                return
            if self._deferred_timer is not None:
                self._deferred_timer.cancel()
            self._deferred_timer = (loop.call_soon(self.run_deferred) if count >= self.batch_size
                                    else loop.call_later(self.linger, self.run_deferred))

    def run_deferred(self) -> None:
        """Run every deferred call now (errors are logged; the other calls still run)."""
        timer = self._deferred_timer
        if timer is not None:
            self._deferred_timer = None
            timer.cancel()
        while self._deferred:
            deferred, self._deferred, self._deferred_count = self._deferred, [], 0
            for fn, items in deferred:
                try:
                    fn(items)
                except Exception:  # a broken record must not lose the others
                    log.exception("reports: building deferred reports failed")

    async def _work(self, entry: HandlerEntry, lane: _Lane) -> None:
        items, stats, loop = lane.items, lane.stats, asyncio.get_running_loop()
        while True:
            if not items:
                lane.lingering = False
                lane.wakeup = loop.create_future()
                await lane.wakeup
            if self.linger > 0 and len(items) < self.batch_size and not self._closed and not self._draining:
                # Linger for a batch to fill; cut short by a full batch (put), a drain or close.
                lane.lingering = True
                lane.wakeup = wakeup = loop.create_future()
                timer = loop.call_later(self.linger, _release, lane, wakeup)
                try:
                    await wakeup
                finally:
                    timer.cancel()
            stuck = lane.in_flight
            if stuck is not None and not stuck.done():
                # A timed-out call still runs on the lane's thread. One call in flight per lane:
                # later instances wait in the bounded queue (overflow dropped and counted by
                # ``put``) rather than as batches piling up behind the hung call.
                lane.stats.stalls += 1
                await asyncio.wait([asyncio.wrap_future(stuck)])
                continue
            batch = [items.popleft() for _ in range(min(self.batch_size, len(items)))]
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
                lane.pending -= len(batch)
                if lane.pending == 0:
                    lane.idle.set()

    async def _deliver(self, entry: HandlerEntry, lane: _Lane, batch: list[Any]) -> None:
        async with asyncio.timeout(entry.timeout):
            if entry.report_is_async:
                await entry.handler.report(batch)
                return
            if lane.thread is None:
                lane.thread = _Thread(f"reports:{entry.name}")
            call = lane.in_flight = lane.thread.submit(entry.handler.report, batch)
            await asyncio.wrap_future(call)

    async def drain(self, entries: Iterable[HandlerEntry] | None = None, timeout: float = 10.0) -> bool:
        """Wait until every accepted instance (of ``entries``, or all) was delivered; False on timeout.

        While a drain waits, workers deliver what they hold without lingering for a batch to fill.
        Deferred calls run first, so what they queue is drained too.
        """
        self.run_deferred()
        if entries is None:
            lanes = list(self._lanes.values())
        else:
            lanes = [self._lanes[e] for e in entries if e in self._lanes]
        self._draining += 1
        try:
            for lane in lanes:
                if lane.lingering:
                    _release(lane)
            await asyncio.wait_for(asyncio.gather(*(lane.idle.wait() for lane in lanes)), timeout)
            return True
        except asyncio.TimeoutError:
            log.error("reports: drain timed out after %gs", timeout)
            return False
        finally:
            self._draining -= 1

    async def _stop(self, lanes: list[_Lane]) -> None:
        """Stop lanes' workers and threads; instances still waiting are counted as dropped."""
        for lane in lanes:
            left = len(lane.items)
            if left:
                lane.stats.dropped += left
                lane.items.clear()
                lane.pending -= left
                log.error("reports: %d instance(s) not delivered in time were dropped", left)
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
        self.run_deferred()  # what checks deferred is accepted before the queue closes
        self._closed = True
        for lane in self._lanes.values():  # no lingering: deliver what is there now
            if lane.wakeup is not None:
                _release(lane)
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
            out[entry.name] = out.get(entry.name, 0) + len(lane.items)
        return out
