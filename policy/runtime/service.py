"""The policy service: the current snapshot, hot reload, and the lifecycle around them.

Transports hold one :class:`PolicyService` and call ``check`` / ``report``. A reload
compiles a new snapshot beside the running one and swaps it in with one
assignment; a config that fails to load is logged with every error and the last
good snapshot keeps serving. The retired snapshot's reports are drained and its
handlers closed after a grace period, so requests in flight finish on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy.attributes import AttributeBag
from policy.runtime.decision import Decision
from policy.runtime.dispatch import Dispatcher
from policy.runtime.plugins import PluginHost, build_plugin_host
from policy.runtime.reports import ReportQueue
from policy.runtime.snapshot import Snapshot
from policy.sdk import ConfigError, QuotaArgs

log = logging.getLogger("policy.service")


@dataclass
class ReloadStatus:
    """The outcome of the last (re)load."""

    generation: int = 0
    ok: bool = True
    at: float = 0.0
    errors: tuple[str, ...] = ()
    reloads: int = 0
    failures: int = 0


class PolicyService:
    """A config path served through a swappable snapshot, with a report queue.

    :param config_path: a YAML file or a directory of them.
    :param host: the plugin host (built with defaults when None).
    :param watch_interval: seconds between config checks; 0 disables watching.
    :param retire_grace: seconds a retired snapshot stays open for in-flight requests.
    """

    def __init__(
        self,
        config_path: str | Path,
        host: PluginHost | None = None,
        *,
        watch_interval: float = 1.0,
        retire_grace: float = 2.0,
        reports: ReportQueue | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self.host = host or build_plugin_host()
        self.watch_interval = watch_interval
        self.retire_grace = retire_grace
        self.reports = reports or ReportQueue()
        self.reload_status = ReloadStatus()
        self._dispatcher: Dispatcher | None = None
        self._fingerprint: Any = None
        self._watcher: asyncio.Task | None = None
        self._retiring: set[asyncio.Task] = set()
        self._started = False

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
        from policy.config import config_fingerprint, load_config

        fingerprint = config_fingerprint(self.config_path)
        snapshot = load_config(self.config_path, self.host, generation=1)
        self._fingerprint = fingerprint
        self._dispatcher = Dispatcher(snapshot, self.reports)
        self.reload_status = ReloadStatus(generation=1, ok=True, at=time.time())
        return snapshot

    async def reload(self, *, force: bool = False) -> bool:
        """Reload when the config changed (or ``force``); True when a new snapshot is in force."""
        from policy.config import config_fingerprint, load_config

        try:
            fingerprint = config_fingerprint(self.config_path)
        except OSError as exc:
            self._record_failure([f"{self.config_path}: {exc}"])
            return False
        if not force and fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        generation = self.reload_status.generation + 1
        try:
            snapshot = load_config(self.config_path, self.host, generation=generation)
            try:
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
        self._dispatcher = Dispatcher(snapshot, self.reports)
        status = self.reload_status
        self.reload_status = ReloadStatus(generation, True, time.time(), (), status.reloads + 1, status.failures)
        log.info("config generation %d in force (%d rules, %d handlers)",
                 generation, len(snapshot.rules), len(snapshot.handlers))
        for warning in snapshot.warnings:
            log.warning("config: %s", warning)
        if old is not None:
            task = asyncio.get_running_loop().create_task(self._retire(old.snapshot))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        await self.host.config_loaded(self, snapshot)
        return True

    def _record_failure(self, errors: list[str]) -> None:
        status = self.reload_status
        self.reload_status = ReloadStatus(status.generation, False, time.time(), tuple(errors),
                                          status.reloads, status.failures + 1)
        log.error("config reload rejected; generation %d keeps serving:\n  %s",
                  status.generation, "\n  ".join(errors))

    async def _retire(self, snapshot: Snapshot, grace: float | None = None) -> None:
        await asyncio.sleep(self.retire_grace if grace is None else grace)
        await self.reports.retire(snapshot.handlers.values())
        await snapshot.close()

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
        if self._dispatcher is not None:
            await self._dispatcher.snapshot.close()
        if self._started:
            self._started = False
            await self.host.shutdown(self)

    async def __aenter__(self) -> "PolicyService":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # --- requests -----------------------------------------------------------

    async def check(
        self, attributes: AttributeBag | Mapping[str, Any], quotas: Mapping[str, QuotaArgs] | None = None
    ) -> Decision:
        """Decide one request on the snapshot now in force."""
        bag = attributes if isinstance(attributes, AttributeBag) else AttributeBag(attributes)
        return await self.dispatcher.check(bag, quotas)

    def report(self, batch: Sequence[AttributeBag | Mapping[str, Any]]) -> int:
        """Queue report instances for a batch of attribute sets; returns how many were queued."""
        bags = [b if isinstance(b, AttributeBag) else AttributeBag(b) for b in batch]
        return self.dispatcher.report(bags)
