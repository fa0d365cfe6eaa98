"""Types of what the host hands an adapter's ``build`` in :class:`~policy.sdk.BuildContext`.

Kept apart from :mod:`policy.sdk.contracts` (which types against the adapter class) so
the adapter module can use them without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

#: The config's documents no rule claims, each a mapping with ``_source`` naming its file.
Documents = Sequence[Mapping[str, Any]]


class MetricsRegistry(Protocol):
    """A ``prometheus_client.CollectorRegistry`` (typed loosely: prometheus-client is optional)."""

    def register(self, collector: Any) -> None:
        """Add a collector; it is exported on ``--metrics-listen``."""
        ...

    def unregister(self, collector: Any) -> None:
        """Remove a collector registered before."""
        ...


__all__ = ["Documents", "MetricsRegistry"]
