"""The host's side of the plugin contract, as Protocols a plugin author can type-check against.

Hooks receive these views, never the host's classes: ``policy_register_adapters``
gets an :class:`AdapterRegistrar`, ``policy_register_templates`` a
:class:`TemplateRegistrar`, and the lifecycle hooks a read-only :class:`ServiceView`
(and a :class:`SnapshotView`). A handler that can back Envoy's rate-limit service
implements :class:`RateLimitHandler`; the host checks for it with ``isinstance``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from policy.sdk.build_types import Documents, MetricsRegistry

from policy.sdk.adapter import Adapter
from policy.sdk.templates import Template

#: A rate-limit service counter: (id, hits, limit, window seconds).
RateLimitCounter = tuple[str, int, int, float]
#: What a rate-limit handler answers per counter: (its count after the call, seconds until reset).
RateLimitAnswer = tuple[int, float]


class AdapterRegistrar(Protocol):
    """What ``policy_register_adapters`` receives: call ``add`` once per adapter class."""

    def add(self, adapter: type[Adapter[Any]]) -> None:
        """Register an adapter class; a name registered before raises PluginError naming both."""
        ...


class TemplateRegistrar(Protocol):
    """What ``policy_register_templates`` receives: call ``add`` once per template."""

    def add(self, template: Template) -> None:
        """Register a template; a duplicate name raises PluginError."""
        ...


class SnapshotView(Protocol):
    """A compiled config as lifecycle hooks see it (read-only)."""

    @property
    def generation(self) -> int:
        """1 for the first config, then one more per successful reload."""
        ...


class ServiceView(Protocol):
    """A running service as lifecycle hooks see it (read-only)."""

    @property
    def config_path(self) -> Path:
        """The config file or directory the service serves."""
        ...

    @property
    def snapshot(self) -> SnapshotView:
        """The config in force."""
        ...


@runtime_checkable
class RateLimitHandler(Protocol):
    """A handler that can back Envoy's rate-limit service (``settings.rateLimit.handler``).

    ``rate_limit_count`` counts as envoyproxy/ratelimit does: every counter is charged its
    hits on every call, also past its limit, and answered with one :data:`RateLimitAnswer`
    per counter, in order; with ``stop_when_over`` (the reference's
    ``STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT``) counters are not charged when one of them
    would go over its limit, except those that do. It may be a coroutine function; a
    backend that cannot answer raises AdapterError (UNAVAILABLE) or answers by its fail mode.
    """

    def rate_limit_count(self, counters: Sequence[RateLimitCounter],
                         stop_when_over: bool = False) -> list[RateLimitAnswer] | Awaitable[list[RateLimitAnswer]]:
        """Charge ``counters`` and answer for each."""
        ...


#: What ``BuildContext.documents`` holds: the config's documents no rule claims, each with ``_source``.
__all__ = [
    "AdapterRegistrar", "Documents", "MetricsRegistry", "RateLimitAnswer", "RateLimitCounter",
    "RateLimitHandler", "ServiceView", "SnapshotView", "TemplateRegistrar",
]
