"""The ``listchecker`` adapter: whitelist or blacklist checks of one value (Mixer's ``list``).

What it does
    A ``listentry`` instance's ``value`` is looked up in a list. As a whitelist
    (default) a listed value is allowed and any other is denied with
    PERMISSION_DENIED ``"<value> is not whitelisted"``; as a blacklist
    (``blacklist: true``) a listed value is denied with ``"<value> is blacklisted"``.
    An empty string is an ordinary value, as in Mixer (a whitelist denies it unless
    it is listed: ``" is not whitelisted"``; a blacklist allows it). A value that is
    absent or of the wrong kind (a non-IP for an IP list) answers INVALID_ARGUMENT.

Params (defaults are Mixer's, from ``mixer/adapter/metadata``'s listchecker entry)
    ``providerUrl``      where to fetch the list: ``http(s)://...`` or ``file://`` (a
                         relative path is relative to the config file); empty (default)
                         for a list made of ``overrides`` only.
    ``refreshInterval``  how often the provider is polled; default ``60s``, at least ``1s``.
    ``ttl``              how long a fetched list stays usable without a successful
                         refresh; default ``300s``, at least ``refreshInterval``.
    ``cachingInterval``  how long an answer may be cached; default ``300s``.
    ``cachingUseCount``  how many requests may reuse a cached answer; default ``10000``.
    ``overrides``        entries always in the list, whatever the provider says (an
                         empty string entry is skipped, as in Mixer; an empty REGEX
                         entry is refused: it would match everything).
    ``entryType``        ``STRINGS`` (default), ``CASE_INSENSITIVE_STRINGS``,
                         ``IP_ADDRESSES`` (IPv4/IPv6 addresses and CIDRs) or ``REGEX``.
    ``blacklist``        false (default): a whitelist; true: a blacklist.

Provider content
    One entry per line, surrounding whitespace and blank lines ignored. For
    ``IP_ADDRESSES`` Mixer's YAML form ``whitelist: [...]`` is accepted as well. The
    list in force is the provider's entries plus ``overrides``. Content that fails to
    parse is rejected as a whole and the previous list stays in force.

Fail mode
    Without a provider the handler cannot fail. With one, the list is fetched on the
    first check (that check waits for it), then every ``refreshInterval`` by a
    background task. When no list was ever fetched, or the last successful fetch is
    older than ``ttl``, checks raise ``AdapterError(UNAVAILABLE)`` naming the handler
    and the URL, so the handler's fail mode decides: CLOSED (default) denies with
    UNAVAILABLE, OPEN allows; neither is cached. A stale list never decides.

Cacheability
    Every decision (allow, deny, INVALID_ARGUMENT) carries ``cachingInterval`` and
    ``cachingUseCount``.

Limits
    REGEX entries are RE2 patterns, as Mixer's (Go's ``regexp``), matched in linear
    time; one RE2 cannot compile (a backreference, lookaround) is a config error. They
    match anywhere in the value (use ``^...$`` to anchor). Entries of a failed
    fetch are not partially applied. The refresh task runs on the event loop of the
    first check; ``ttl`` is measured with the injected clock, the refresh interval
    with the loop's clock. Mixer's bug of reading a bare IPv6 address as a /32 is not
    reproduced: a bare address matches only itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from policy import (
    Adapter,
    AdapterError,
    BuildContext,
    CheckResult,
    Code,
    FieldError,
    Handler,
    hookimpl,
    param,
)

from adapters.listchecker._matchers import (
    EntryType,
    ListFormatError,
    Matcher,
    build_matcher,
    entry_error,
    parse_content,
)
from adapters.listchecker._provider import FETCH_TIMEOUT, FetchError, Provider, url_error

_ADDRESS_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)

@dataclass(frozen=True)
class ListCheckerParams:
    """Params of the ``listchecker`` adapter (Mixer's ``adapter.list.config.Params``)."""

    provider_url: str = param("", doc="http(s):// or file:// URL of the list; empty for overrides only.")
    refresh_interval: dt.timedelta = param(dt.timedelta(seconds=60), doc="How often the provider is polled.")
    ttl: dt.timedelta = param(
        dt.timedelta(seconds=300), doc="How long a list stays usable without a successful refresh.")
    caching_interval: dt.timedelta = param(
        dt.timedelta(seconds=300), doc="How long an answer may be cached.")
    caching_use_count: int = param(10000, doc="How many requests may reuse a cached answer.")
    overrides: list[str] = param(default_factory=list, doc="Entries always in the list.")
    entry_type: EntryType = param(EntryType.STRINGS, doc="How entries and the checked value are compared.")
    blacklist: bool = param(False, doc="Deny listed values (true) instead of allowing only them (false).")


class ListCheckerHandler(Handler):
    """Answers checks from an in-memory list (overrides only: it never changes)."""

    def __init__(self, params: ListCheckerParams, context: BuildContext, matcher: Matcher | None) -> None:
        self.params = params
        self.context = context
        self._matcher = matcher
        self._valid_duration = params.caching_interval.total_seconds()
        self._ip = params.entry_type is EntryType.IP_ADDRESSES
        self._allow = CheckResult.allow(self._valid_duration, params.caching_use_count)

    def check(self, instance: Any) -> CheckResult:
        """Look the instance's value up in the list."""
        assert self._matcher is not None
        return self._decide(self._matcher, instance)

    def _result(self, code: Code, message: str) -> CheckResult:
        if code is Code.OK:
            return self._allow
        return CheckResult.deny(message, code, self._valid_duration, self.params.caching_use_count)

    def _decide(self, matcher: Matcher, instance: Any) -> CheckResult:
        value = getattr(instance, "value", None)
        if self._ip and type(value) in _ADDRESS_TYPES:  # the usual case: an IP attribute, as is
            return self._listed(value in matcher, value)
        if isinstance(value, bytes) and len(value) in (4, 16):
            value = ipaddress.ip_address(value)  # Mixer passed IP_ADDRESS values as raw bytes
        if value is None:
            return self._result(Code.INVALID_ARGUMENT, f"listentry instance {instance.name!r} has no value")
        if self._ip:
            if isinstance(value, str):
                try:
                    value = ipaddress.ip_address(value)
                except ValueError:
                    return self._result(Code.INVALID_ARGUMENT, f"{value} is not a valid IP address")
            elif not isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                return self._result(Code.INVALID_ARGUMENT, f"{value!r} is not a valid IP address")
        elif isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            value = str(value)
        elif not isinstance(value, str):
            return self._result(Code.INVALID_ARGUMENT, f"{value!r} is not a valid string or IP address")
        return self._listed(value in matcher, value)

    def _listed(self, listed: bool, value: Any) -> CheckResult:
        if self.params.blacklist:
            return self._result(Code.PERMISSION_DENIED, f"{value} is blacklisted") if listed \
                else self._allow
        return self._allow if listed else self._result(Code.PERMISSION_DENIED, f"{value} is not whitelisted")


class RemoteListCheckerHandler(ListCheckerHandler):
    """A list fetched from a provider, refreshed in the background, unusable after ``ttl``."""

    def __init__(self, params: ListCheckerParams, context: BuildContext) -> None:
        super().__init__(params, context, None)
        self.url = params.provider_url
        timeout = min(FETCH_TIMEOUT, params.refresh_interval.total_seconds())
        self._provider = Provider(self.url, context.config_dir, timeout)
        self._ttl = params.ttl.total_seconds()
        self._loaded_at: float | None = None  # clock.monotonic() of the last successful fetch
        self._digest = b""
        self._last_error = ""
        self._attempted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._stale_logged = False

    async def check(self, instance: Any) -> CheckResult:  # type: ignore[override]
        """Look the value up in the current list; raise AdapterError(UNAVAILABLE) if there is none."""
        if not self._attempted.is_set():
            if self._closed:
                raise AdapterError(Code.UNAVAILABLE, self._unavailable("handler closed before any list"))
            self._ensure_task()
            await self._attempted.wait()
        matcher, loaded_at = self._matcher, self._loaded_at
        if matcher is None or loaded_at is None:
            raise AdapterError(Code.UNAVAILABLE, self._unavailable("no list could be fetched"))
        age = self.context.clock.monotonic() - loaded_at
        if age > self._ttl:
            if not self._stale_logged:
                self._stale_logged = True
                self.context.logger.warning("%s", self._unavailable(f"list not refreshed for {age:.0f}s"))
            raise AdapterError(Code.UNAVAILABLE, self._unavailable(
                f"list not refreshed within ttl {self._ttl:g}s (last refresh {age:.0f}s ago)"))
        self._ensure_task()  # after an explicit refresh() no task runs yet
        return self._decide(matcher, instance)

    def _unavailable(self, what: str) -> str:
        error = self._last_error or "none"
        return (f"listchecker handler {self.context.handler!r}: {what}"
                f" (provider {self.url}; last error: {error})")

    def _ensure_task(self) -> None:
        if self._closed or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(
            self._refresh_forever(), name=f"listchecker-refresh-{self.context.handler}")

    async def _refresh_forever(self) -> None:
        interval = self.params.refresh_interval.total_seconds()
        try:
            while True:
                try:
                    await self.refresh()
                except Exception as exc:  # a bug must not end the refreshing: log it, retry next tick
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    self.context.logger.exception("listchecker handler %r: refresh from %s crashed",
                                                  self.context.handler, self.url)
                await asyncio.sleep(interval)
        finally:
            self._attempted.set()  # never leave a check waiting on a dead task

    async def start(self) -> None:
        """Start the background refresh now (instead of on the first check) and wait for its first attempt."""
        self._ensure_task()
        await self._attempted.wait()

    async def refresh(self) -> bool:
        """Fetch and install the list now; on failure keep the previous one and return False."""
        try:
            data = await self._provider.fetch()
            digest = hashlib.sha256(data).digest()
            matcher = self._matcher
            if matcher is None or digest != self._digest:
                entries = parse_content(self.params.entry_type, data)
                matcher = build_matcher(self.params.entry_type, [*entries, *self.params.overrides])
                self.context.logger.info("listchecker handler %r: installed %d entries from %s",
                                         self.context.handler, len(matcher), self.url)
        except (FetchError, ListFormatError) as exc:
            self._last_error = str(exc)
            self.context.logger.warning("listchecker handler %r: refresh from %s failed: %s",
                                        self.context.handler, self.url, exc)
            ok = False
        else:
            self._matcher, self._digest = matcher, digest
            self._loaded_at = self.context.clock.monotonic()
            self._last_error = ""
            self._stale_logged = False
            ok = True
        self._attempted.set()
        return ok

    async def close(self) -> None:
        """Stop the background refresh (the last list stays readable until ttl)."""
        self._closed = True
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        if task.get_loop() is asyncio.get_running_loop():
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # close() itself was cancelled, not just the refresh task


class ListChecker(Adapter[ListCheckerParams]):
    """Checks whether a value is in a list (whitelist or blacklist)."""

    name = "listchecker"
    description = "Checks whether a value is present in a list (whitelist or blacklist)"
    templates = ("listentry",)
    Params = ListCheckerParams

    @classmethod
    def validate(cls, params: ListCheckerParams) -> Iterator[FieldError]:
        """Field-scoped checks: URL, intervals, cache bounds and every override."""
        if params.provider_url:
            problem = url_error(params.provider_url)
            if problem:
                yield FieldError("providerUrl", problem)
            if params.refresh_interval < dt.timedelta(seconds=1):
                yield FieldError("refreshInterval",
                                 f"must be at least 1s, got {_seconds(params.refresh_interval)}")
            if params.ttl < params.refresh_interval:
                yield FieldError("ttl", f"must be at least refreshInterval"
                                        f" ({_seconds(params.refresh_interval)}), got {_seconds(params.ttl)}")
        if params.caching_interval < dt.timedelta(0):
            yield FieldError("cachingInterval", f"must be >= 0, got {_seconds(params.caching_interval)}")
        if params.caching_use_count < 0:
            yield FieldError("cachingUseCount", f"must be >= 0, got {params.caching_use_count}")
        for index, entry in enumerate(params.overrides):
            problem = entry_error(params.entry_type, entry)
            if problem:
                yield FieldError(f"overrides[{index}]", problem)

    @classmethod
    def build(cls, params: ListCheckerParams, context: BuildContext) -> ListCheckerHandler:
        """A fixed list from the overrides, or a provider-backed list refreshed in the background."""
        if params.provider_url:
            return RemoteListCheckerHandler(params, context)
        return ListCheckerHandler(params, context, build_matcher(params.entry_type, params.overrides))


def _seconds(value: dt.timedelta) -> str:
    return f"{value.total_seconds():g}s"


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the ``listchecker`` adapter."""
    registry.add(ListChecker)


__all__ = [
    "EntryType",
    "ListChecker",
    "ListCheckerHandler",
    "ListCheckerParams",
    "RemoteListCheckerHandler",
    "policy_register_adapters",
]
