"""The policy service: the current snapshot, hot reload, and the lifecycle around them.

Transports hold one :class:`PolicyService` and call ``check`` / ``report``. A reload
compiles a new snapshot beside the running one and swaps it in with one
assignment; a config that fails to load is logged with every error and the last
good snapshot keeps serving. The retired snapshot's reports are drained and its
handlers closed after a grace period, so requests in flight finish on it.

The compile (reading, parsing, validating and building: seconds for thousands of
policies) runs on a dedicated thread, never on the event loop, and so does the
config watcher's fingerprint (a stat per file). The thread shares the GIL with the
loop, so while it runs the interpreter's switch interval is lowered to
:data:`COMPILE_SWITCH_INTERVAL`: the loop waits at most that long for the GIL each
time it needs it, and checks keep being answered (at a lower rate) throughout.
Only the swap, the new snapshot's ``start`` and the hooks run on the loop.

CPython's cyclic garbage collector stops every thread while it runs, and a full
collection scans the whole heap (about 70 ms for 1,000 policies, 600 ms for 10,000).
So automatic collection is paused while a compile runs (the compile would otherwise
trigger full collections in the middle of it), and the objects alive at the swap are
frozen (:func:`gc.freeze`): the new snapshot never makes the collector run, nor
lengthens the collections that the steady traffic triggers. When the retired
snapshot has been closed the frozen objects are handed back to the collector
(:func:`gc.unfreeze`), so the old config's reference cycles are reclaimed by the
next full collection CPython makes on its own; no reload forces one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import sys
import threading
import time
from time import perf_counter
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy.attributes import AttributeBag
from policy.config import config_fingerprint, load_config
from policy.config.quota_specs import binding_quotas
from policy.runtime.decision_log import DecisionLog
from policy.runtime.decision import Decision
from policy.runtime.dispatch import Dispatcher
from policy.runtime.plugins import PluginHost, build_plugin_host
from policy.runtime.reports import ReportQueue
from policy.config.snapshot import Snapshot
from policy.runtime.ratelimit import RateLimitDecision, RateLimitDescriptor, RequestError, decide
from policy.sdk import AdapterError, Code, ConfigError, ConfigIssue, QuotaArgs, RateLimitHandler
from policy.runtime.telemetry import Telemetry

log = logging.getLogger("policy.service")

#: Seconds the interpreter lets a thread hold the GIL while a config compiles beside the loop
#: (Python's default is 0.005); restored when no compile runs.
COMPILE_SWITCH_INTERVAL = 0.001

_switch_lock = threading.Lock()
_compiles_running = 0
_saved_switch_interval = 0.005
_gc_was_enabled = True


def _run_compile(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` (on the compile thread) with the GIL switch interval lowered and automatic
    garbage collection paused while it runs (see the module docstring)."""
    global _compiles_running, _saved_switch_interval, _gc_was_enabled
    with _switch_lock:
        if _compiles_running == 0:
            _saved_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(_saved_switch_interval, COMPILE_SWITCH_INTERVAL))
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _compiles_running += 1
    try:
        return fn(*args, **kwargs)
    finally:
        with _switch_lock:
            _compiles_running -= 1
            if _compiles_running == 0:
                sys.setswitchinterval(_saved_switch_interval)
                # What the compile built is long-lived: frozen before collection resumes, else the
                # first young collection would scan all of it at once.
                gc.freeze()
                if _gc_was_enabled:
                    gc.enable()


def _close_abandoned(future: asyncio.Future) -> None:
    """Close a snapshot whose reload was cancelled while it compiled."""
    if future.cancelled() or future.exception() is not None:
        return
    result = future.result()
    if isinstance(result, Snapshot):
        task = asyncio.get_running_loop().create_task(result.close())
        _abandoned.add(task)
        task.add_done_callback(_abandoned.discard)


_abandoned: set[asyncio.Task] = set()

#: Adapters whose counters live in one process: refused when several workers serve (``serve --workers``).
PROCESS_LOCAL_ADAPTERS = frozenset({"memquota"})


def process_local_handlers(snapshot: Snapshot) -> list[Any]:
    """The handler entries of ``snapshot`` whose adapter keeps its counters in one process (memquota)."""
    return [entry for entry in snapshot.handlers.values()
            if getattr(entry.adapter, "name", None) in PROCESS_LOCAL_ADAPTERS]


@dataclass
class ReloadStatus:
    """The outcome of the last (re)load."""

    generation: int = 0
    ok: bool = True
    at: float = 0.0
    errors: tuple[str, ...] = ()
    reloads: int = 0
    failures: int = 0


class RateLimitUnavailable(Exception):
    """The rate-limit service cannot answer: not configured, or its handler cannot count."""


class PolicyService:
    """A config path served through a swappable snapshot, with a report queue.

    :param config_path: a YAML file or a directory of them.
    :param host: the plugin host (built with defaults when None).
    :param watch_interval: seconds between config checks; 0 disables watching.
    :param retire_grace: seconds a retired snapshot stays open for in-flight requests.
    :param metrics_listen: ``HOST:PORT`` to serve the service's Prometheus metrics on while started.
    :param decision_log: send every decision through the report rules (True, or a configured
        :class:`~policy.runtime.decision_log.DecisionLog`); None or False does not.
    :param workers: how many serving processes share the listen addresses (``serve --workers``);
        above 1, a config with a handler whose counters live in one process (memquota) is refused.
    """

    def __init__(
        self,
        config_path: str | Path,
        host: PluginHost | None = None,
        *,
        watch_interval: float = 1.0,
        retire_grace: float = 2.0,
        reports: ReportQueue | None = None,
        metrics_listen: str | None = None,
        decision_log: DecisionLog | bool | None = None,
        workers: int = 1,
    ) -> None:
        self.config_path = Path(config_path)
        self.workers = workers
        self.host = host or build_plugin_host()
        self.watch_interval = watch_interval
        self.retire_grace = retire_grace
        self.reports = reports or ReportQueue()
        self.reload_status = ReloadStatus()
        self._dispatcher: Dispatcher | None = None
        self._fingerprint: Any = None
        self._changing: Any = None
        self._watcher: asyncio.Task | None = None
        self._retiring: set[asyncio.Task] = set()
        self._retired: set[Snapshot] = set()
        self._started = False
        self._compiler: concurrent.futures.ThreadPoolExecutor | None = None
        self._reload_lock: asyncio.Lock | None = None
        #: (snapshot, its rate-limit config, the handler that counts): checked once per snapshot.
        self._rate_limiter: tuple[Any, Any, Any] = (None, None, None)
        self.metrics_listen = metrics_listen
        self.decision_log = DecisionLog() if decision_log is True else (decision_log or None)
        self.telemetry = Telemetry(self)
        try:  # adapters export through the service's registry (BuildContext.metrics_registry)
            self.host.build_extras.setdefault("metrics_registry", self.telemetry.registry)
        except ImportError:
            pass
        # adapters whose decisions change under them (a reloaded policy file) drop cached ones
        self.host.build_extras.setdefault("invalidate_decisions", self.invalidate_decisions)

    def invalidate_decisions(self) -> None:
        """Drop every cached decision: a handler's answers changed without a config reload."""
        dispatcher = self._dispatcher
        if dispatcher is not None and dispatcher.cache is not None:
            dispatcher.cache.clear()

    # --- loading ------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot now in force."""
        if self._dispatcher is None:
            raise RuntimeError("PolicyService: no config loaded yet (call load() or start())")
        return self._dispatcher.snapshot

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher of the snapshot now in force."""
        if self._dispatcher is None:
            raise RuntimeError("PolicyService: no config loaded yet (call load() or start())")
        return self._dispatcher

    def load(self) -> Snapshot:
        """Load the config the first time; raises ConfigError when it is invalid."""
        fingerprint = config_fingerprint(self.config_path)
        snapshot = load_config(self.config_path, self.host, generation=1)
        self._refuse_process_local(snapshot)
        self._fingerprint = fingerprint
        self._dispatcher = Dispatcher(snapshot, self.reports, self.telemetry)
        self.reload_status = ReloadStatus(generation=1, ok=True, at=time.time())
        return snapshot

    async def _off_loop(self, fn: Any, *args: Any, compile: bool = False, **kwargs: Any) -> Any:
        """Run ``fn`` on the compile thread; the loop goes on serving until it returns.

        ``compile`` runs it as a config compile (switch interval lowered, GC paused, the
        result frozen: see the module docstring). If the caller is cancelled meanwhile, the
        call still finishes on its thread and a snapshot it built is closed, never leaked.
        """
        if self._compiler is None:
            self._compiler = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="config-compile")
        loop = asyncio.get_running_loop()
        call = (lambda: _run_compile(fn, *args, **kwargs)) if compile else (lambda: fn(*args, **kwargs))
        future = loop.run_in_executor(self._compiler, call)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_close_abandoned)
            raise

    async def reload(self, *, force: bool = False) -> bool:
        """Reload when the config changed and then stayed the same for one more poll (or ``force``).

        A change is loaded only once its fingerprint (every file's path, mtime and size)
        is the same on two polls in a row, so a file being written in place is not loaded
        half-written; replacing files atomically (write a temporary file, rename it over)
        is still the way to publish a config. True when a new snapshot is in force.

        The new snapshot is compiled off the event loop (see the module docstring); the old
        one answers every check until the swap. Reloads run one at a time.
        """
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            return await self._reload(force)

    async def _reload(self, force: bool) -> bool:
        try:
            fingerprint = await self._off_loop(config_fingerprint, self.config_path)
        except OSError as exc:
            self._record_failure([f"{self.config_path}: {exc}"])
            return False
        if not force and not self._settled(fingerprint):
            return False
        self._fingerprint = fingerprint
        generation = self.reload_status.generation + 1
        try:
            previous = self._dispatcher.snapshot if self._dispatcher else None
            snapshot = await self._off_loop(load_config, self.config_path, self.host, generation=generation,
                                            previous=previous, compile=True)
            try:
                self._refuse_process_local(snapshot)
                await snapshot.start()
            except BaseException:
                await snapshot.close()
                raise
        except ConfigError as exc:
            self._record_failure([str(i) for i in exc.issues])
            return False
        except Exception as exc:  # a plugin's build blew up: keep serving the old config
            log.exception("config reload failed")
            self._record_failure([f"{type(exc).__name__}: {exc}"])
            return False
        old = self._dispatcher
        self._dispatcher = Dispatcher(snapshot, self.reports, self.telemetry)
        gc.freeze()  # the new config is long-lived: out of the collector's way (module docstring)
        status = self.reload_status
        self.reload_status = ReloadStatus(generation, True, time.time(), (), status.reloads + 1, status.failures)
        log.info("config generation %d in force (%d rules, %d handlers)",
                 generation, len(snapshot.rules), len(snapshot.handlers))
        for warning in snapshot.warnings:
            log.warning("config: %s", warning)
        if old is not None:
            self.telemetry.cache_retired(old.cache)
            self._retired.add(old.snapshot)
            task = asyncio.get_running_loop().create_task(self._retire(old.snapshot))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        await self.host.config_loaded(self, snapshot)
        return True

    def _settled(self, fingerprint: Any) -> bool:
        """True when the config changed and then held still for one poll (a file being written is not loaded)."""
        if fingerprint == self._fingerprint:
            self._changing = None
            return False
        if fingerprint != self._changing:
            self._changing = fingerprint  # changed since the last look: maybe still being written
            return False
        self._changing = None
        return True

    def _refuse_process_local(self, snapshot: Snapshot) -> None:
        """With several workers, refuse handlers whose counters would be per process (memquota)."""
        if self.workers <= 1:
            return
        issues = [ConfigIssue(entry.source, f"handler {entry.name}", "adapter",
                              f"{entry.adapter.name} counts in one process: with {self.workers} workers each"
                              " would grant the whole quota; use redisquota (shared counters) or --workers 1")
                  for entry in process_local_handlers(snapshot)]
        if issues:
            raise ConfigError(issues)

    def _record_failure(self, errors: list[str]) -> None:
        gc.unfreeze()  # what the rejected compile built (frozen with it) is garbage
        status = self.reload_status
        self.reload_status = ReloadStatus(status.generation, False, time.time(), tuple(errors),
                                          status.reloads, status.failures + 1)
        log.error("config reload rejected; generation %d keeps serving:\n  %s",
                  status.generation, "\n  ".join(errors))

    async def _retire(self, snapshot: Snapshot, grace: float | None = None) -> None:
        await asyncio.sleep(self.retire_grace if grace is None else grace)
        await self.reports.retire(snapshot.handlers.values())
        self._retired.discard(snapshot)
        await snapshot.close()
        del snapshot
        gc.unfreeze()  # the old config's cycles go to the next full collection CPython makes

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_interval)
            try:
                await self.reload()
            except Exception:
                log.exception("config watcher")

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Load the config (if not loaded), run start-up hooks and start watching."""
        if self._dispatcher is None:
            self.load()
        if self._started:
            return
        try:
            await self.snapshot.start()
        except BaseException:
            await self.snapshot.close()
            raise
        self._started = True
        if self.metrics_listen and self.telemetry.metrics_address is None:
            self.telemetry.serve_http(self.metrics_listen)
        await self.host.startup(self)
        await self.host.config_loaded(self, self.snapshot)
        if self.watch_interval > 0:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="config-watcher")

    async def stop(self) -> None:
        """Stop watching, deliver every accepted report, close handlers and run shutdown hooks."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        for task in list(self._retiring):
            task.cancel()
        await self.reports.close()
        # Retired snapshots still in their grace period are closed too: handlers flush their buffers.
        retired, self._retired = list(self._retired), set()
        await asyncio.gather(*(snapshot.close() for snapshot in retired))
        if self._dispatcher is not None:
            await self._dispatcher.snapshot.close()
        if self._compiler is not None:
            self._compiler.shutdown(wait=False)
            self._compiler = None
        gc.unfreeze()  # what reloads froze goes back to the collector
        if self._started:
            self._started = False
            await self.host.shutdown(self)
        self.telemetry.close()

    async def __aenter__(self) -> "PolicyService":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # --- requests -----------------------------------------------------------

    async def check(
        self,
        attributes: AttributeBag | Mapping[str, Any],
        quotas: Mapping[str, QuotaArgs] | None = None,
        *,
        api: str = "inprocess",
        quota_specs: str | None = None,
    ) -> Decision:
        """Decide one request on the snapshot now in force.

        Transports pass their ``api`` (``native``, ``ext_authz`` ...): the decision is
        counted and timed under it, logged on ``policy.decisions`` and, with decision
        logging on, sent through the report rules.

        :param quota_specs: charge the quotas the snapshot's QuotaSpec bindings give the
            request too (Mixer's QuotaSpec / QuotaSpecBinding), with this deduplication id
            (Envoy's ``request.id``); None charges only ``quotas``.
        """
        started = perf_counter()
        bag = attributes if isinstance(attributes, AttributeBag) else AttributeBag(attributes)
        dispatcher = self.dispatcher
        if quota_specs is not None:
            bindings = dispatcher.snapshot.quota_bindings
            if bindings:
                bound = binding_quotas(bindings, bag, quota_specs)
                quotas = {**bound, **quotas} if quotas else bound
        if quotas:
            decision = await dispatcher.check(bag, quotas)
            self._answered(api, started, decision, bag, dispatcher)
            return decision
        answer = self._soon(api, started, bag, dispatcher)
        return answer if isinstance(answer, Decision) else await answer

    def check_soon(self, bag: AttributeBag, api: str) -> Decision | Awaitable[Decision]:
        """:meth:`check` for a request that charges no quota, answering a cache hit at once.

        Returns the cached decision (counted and logged as :meth:`check` does), or, on a
        miss, an awaitable of the dispatched one: a transport answers a hit without a
        coroutine. A request whose snapshot binds QuotaSpecs must go through :meth:`check`,
        which charges them.
        """
        return self._soon(api, perf_counter(), bag, self.dispatcher)

    def _soon(self, api: str, started: float, bag: AttributeBag, dispatcher: Dispatcher
              ) -> Decision | Awaitable[Decision]:
        decision = dispatcher.from_cache(bag)
        if decision is None:
            return self._decided(api, started, bag, dispatcher)
        self._answered(api, started, decision, bag, dispatcher)
        return decision

    async def _decided(self, api: str, started: float, bag: AttributeBag, dispatcher: Dispatcher) -> Decision:
        decision = await dispatcher.decide(bag)
        self._answered(api, started, decision, bag, dispatcher)
        return decision

    def _answered(self, api: str, started: float, decision: Decision, bag: AttributeBag,
                  dispatcher: Dispatcher) -> None:
        self.telemetry.observe_check(api, perf_counter() - started, decision)
        if self.decision_log is not None and dispatcher.reports_anything:  # else its record would go nowhere
            self.decision_log.send(decision, bag, dispatcher)

    async def rate_limit(self, domain: str, descriptors: Sequence[RateLimitDescriptor],
                         hits_addend: int = 0) -> RateLimitDecision:
        """Decide one rate-limit request with the snapshot's rate-limit config and its counting handler.

        Raises :class:`RateLimitUnavailable` when no rate-limit service is configured or its
        handler cannot count, :class:`~policy.runtime.ratelimit.RequestError` for a request
        that cannot be answered as asked, and :class:`~policy.AdapterError` (its message
        naming the handler) when the handler's backend cannot answer; each is counted.
        """
        snapshot = self.snapshot
        backend = self._rate_limiter
        if backend[0] is not snapshot:  # once per snapshot: a Protocol isinstance costs microseconds
            config = snapshot.rate_limit
            if config is None:
                raise RateLimitUnavailable("no rate-limit service is configured (settings.rateLimit)")
            entry = snapshot.handlers.get(config.settings.handler)
            handler = entry.handler if entry is not None else None
            if not isinstance(handler, RateLimitHandler):
                raise RateLimitUnavailable(f"handler {config.settings.handler!r} cannot back the rate-limit service")
            backend = self._rate_limiter = (snapshot, config, handler)
        _, config, handler = backend
        name = config.settings.handler
        started = perf_counter()
        try:
            decision = await decide(config, handler, domain, descriptors, hits_addend)
        except RequestError:
            config.count("invalid_requests")
            raise
        except AdapterError as exc:
            config.count("backend_errors")
            self.telemetry.handler_failed(name, "ratelimit", exc.code == Code.DEADLINE_EXCEEDED)
            raise AdapterError(exc.code, f"{name}: {exc.message}") from exc
        except Exception:
            config.count("service_errors")
            raise
        self.telemetry.observe_rate_limit(name, perf_counter() - started, decision.over_limit)
        return decision

    def report(self, batch: Sequence[AttributeBag | Mapping[str, Any]]) -> int:
        """Queue report instances for a batch of attribute sets; returns how many were queued."""
        bags = [b if isinstance(b, AttributeBag) else AttributeBag(b) for b in batch]
        return self.dispatcher.report(bags)
