"""The adapter contract: what a plugin implements, and what the host gives it.

An **adapter** describes one kind of backend: its ``name``, a ``description``, the
``templates`` it supports, its ``Params`` dataclass, extra ``validate`` checks, and
``build``, which turns validated params into a **handler**. A handler answers
``check``, ``quota`` and/or ``report`` for the templates of its adapter and releases
what it holds in ``close``. Handler methods may be plain functions (for in-memory
work; they run on the event loop and must not block) or coroutines (for I/O).

An adapter is generic over its params dataclass, so a type checker sees the params
``validate`` and ``build`` receive::

    from policy import Adapter, AdapterRegistrar, hookimpl

    @dataclass(frozen=True)
    class MyParams: ...

    class MyAdapter(Adapter[MyParams]):
        Params = MyParams
        ...

    @hookimpl
    def policy_register_adapters(registry: AdapterRegistrar) -> None:
        registry.add(MyAdapter)

(Name the dataclass something other than ``Params``: ``Params = Params`` in the class
body makes ``Params`` a variable there, and a type checker then refuses it as a type.)
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from policy.sdk.build_types import Documents, MetricsRegistry
from policy.sdk.params import FieldError, NoParams
from policy.sdk.results import CheckResult, QuotaArgs, QuotaResult

#: The params dataclass of an adapter (``Adapter[MyParams]``).
P = TypeVar("P")


class FailMode(enum.Enum):
    """What a handler's calls answer when the handler errs (raises, times out).

    CLOSED denies with the error's status (the default for checks); OPEN allows
    (and the allowance is never cached).
    """

    CLOSED = "CLOSED"
    OPEN = "OPEN"


@dataclass(frozen=True)
class Clock:
    """An injectable clock: wall time (``now``) and monotonic time (``monotonic``), in seconds.

    :param now: seconds since the epoch (``time.time``).
    :param monotonic: seconds on a clock that never goes back (``time.monotonic``), for intervals.
    """

    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class BuildContext:
    """What the host gives an adapter when it builds a handler.

    :param handler: the handler's name in config (use it in messages and metrics).
    :param config_dir: the directory of the config file, for relative paths in params.
    :param logger: a logger named after the handler.
    :param clock: the clock to read time from (tests inject their own).
    :param documents: the config's documents no rule claims (each with ``_source``), for
        adapters that read their own document kinds (see :attr:`Adapter.document_kinds`).
    :param metrics_registry: the serving service's ``prometheus_client.CollectorRegistry``:
        register collectors there and they are exported on ``--metrics-listen``; None when
        no service owns the build, as in ``policy validate``.
    :param extras: anything else the host offers, by key. The two well-known keys
        ``"documents"`` and ``"metrics_registry"`` are kept there too (older plugins read
        them from here); new code reads the typed fields. ``"invalidate_decisions"`` is a
        callable dropping the serving service's cached decisions, for a handler whose
        answers change without a config reload, e.g. a reloaded policy file (absent
        without a service).
    :param handlers: the handlers this one delegates to (named by :meth:`Adapter.handler_references`),
        by the name the params give; filled once every handler of the config is built, so look
        names up when a request comes, not in ``build``.
    """

    handler: str
    config_dir: Path = field(default_factory=Path.cwd)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("policy.adapter"))
    clock: Clock = field(default_factory=Clock)
    extras: dict[str, Any] = field(default_factory=dict)
    documents: Documents = ()
    metrics_registry: MetricsRegistry | None = None
    #: The handlers this one delegates to (named by :meth:`Adapter.handler_references`), by the
    #: name the params give; filled once every handler of the config is built, so look names up
    #: when a request comes, not in ``build``.
    handlers: Mapping[str, "Handler"] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One source of truth for both spellings: typed field given -> mirrored into extras;
        # only the extras key given (older hosts and tests) -> mirrored into the field.
        for key in ("documents", "metrics_registry"):
            if getattr(self, key) not in (None, ()):
                self.extras.setdefault(key, getattr(self, key))
            elif key in self.extras:
                object.__setattr__(self, key, self.extras[key])


class _Done:
    """An awaitable that is already done: ``await handler.close()`` works on the base methods,
    and a caller that does not await leaves no "never awaited" warning behind."""

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()


_DONE = _Done()


class Handler:
    """Base of handlers. Override the methods your adapter's templates need.

    ``check(instance) -> CheckResult`` for check templates,
    ``quota(instance, args) -> QuotaResult`` for quota templates,
    ``report(instances) -> None`` for report templates (a batch of instances).
    Each may be ``async def`` (the declared return types say "a result or an awaitable
    of one", so a type checker accepts both). ``start()`` is awaited once before the handler's
    snapshot serves its first request (fetch lists, open connections, start
    background tasks there); ``close()`` when the snapshot is retired or the
    service stops.

    Raising :class:`~policy.AdapterError` from a method answers its status; raising
    anything else answers INTERNAL naming the handler. Either way the handler's
    fail mode applies (CLOSED denies, OPEN allows without caching).
    """

    def start(self) -> None | Awaitable[None]:
        """Prepare to serve (plain or ``async def``); errors here fail the config load."""
        return _DONE

    def check(self, instance: Any) -> CheckResult | Awaitable[CheckResult]:
        """Answer a check for one instance."""
        raise NotImplementedError(f"{type(self).__name__} does not implement check")

    def quota(self, instance: Any, args: QuotaArgs) -> QuotaResult | Awaitable[QuotaResult]:
        """Allocate quota for one instance."""
        raise NotImplementedError(f"{type(self).__name__} does not implement quota")

    def report(self, instances: Sequence[Any]) -> None | Awaitable[None]:
        """Take a batch of report instances."""
        raise NotImplementedError(f"{type(self).__name__} does not implement report")

    def close(self) -> None | Awaitable[None]:
        """Release files, sockets and tasks the handler holds (plain or ``async def``)."""
        return _DONE


class Adapter(Generic[P]):
    """Base of adapters: describe the adapter and build handlers from params.

    Subclass it as ``Adapter[YourParams]``. Class attributes to set: ``name`` (unique;
    the ``compiledAdapter`` / ``adapter`` in config), ``description`` (one line),
    ``templates`` (names of supported templates), ``Params`` (the params dataclass, see
    :mod:`policy.sdk.params`) and, optionally, ``document_kinds``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    templates: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[Any]] = NoParams
    #: Kinds of Kubernetes-style config documents (e.g. ``"AuthorizationPolicy"``) this
    #: adapter reads itself from :attr:`BuildContext.documents`; the config loader leaves
    #: them to it instead of reporting them as unknown.
    document_kinds: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def validate(cls, params: P) -> Iterable[FieldError]:
        """Check what the params schema cannot (cross-field rules); yield FieldErrors."""
        return ()

    @classmethod
    def handler_references(cls, params: P) -> Iterable[str]:
        """Names of other handlers of the config that a handler built from ``params`` calls.

        The host resolves them like a rule's handler reference, builds them even when no
        rule uses them, reports unknown names as config errors, and hands them to the
        handler in :attr:`BuildContext.handlers`. Default: none.
        """
        return ()

    @classmethod
    def validate_instances(cls, params: Any, instances: Mapping[str, str]) -> Iterable[FieldError]:
        """Check the instances rules route to a handler built from ``params``; yield FieldErrors.

        ``instances`` maps each routed instance's name to its template's name (Mixer's
        ``Set<Template>Types``: a quota adapter rejects a quota it has no limit for). The
        errors are reported at the handler's params, as :meth:`validate`'s. Default: none.
        """
        return ()

    @classmethod
    def build(cls, params: P, context: BuildContext) -> Handler:
        """Build a handler from validated params."""
        raise NotImplementedError(f"adapter {cls.name!r} does not implement build")


# Re-exported for adapter authors who only import this module.
__all__ = [
    "Adapter",
    "BuildContext",
    "CheckResult",
    "Clock",
    "FailMode",
    "Handler",
    "QuotaArgs",
    "QuotaResult",
]
