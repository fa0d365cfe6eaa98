"""What config needs to know about the installed plugins: a small catalog protocol.

Config validates documents against the adapters, templates and attribute vocabulary
the plugins provide, and builds handlers with what the host offers them. It sees
them only through these protocols, so it does not depend on the runtime's plugin
host (:class:`policy.runtime.plugins.PluginHost` satisfies :class:`Catalog`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from policy.attributes import Vocabulary
from policy.sdk import Adapter, Template


class RegisteredAdapterView(Protocol):
    """An installed adapter class under its name."""

    @property
    def adapter(self) -> type[Adapter[Any]]:
        """The adapter class."""
        ...

    @property
    def name(self) -> str:
        """The adapter's name."""
        ...


class AdapterCatalog(Protocol):
    """The installed adapters, by name."""

    def get(self, name: str) -> RegisteredAdapterView | None:
        """The adapter registered under ``name``, or None."""
        ...

    def __contains__(self, name: object) -> bool: ...

    def __iter__(self) -> Iterator[RegisteredAdapterView]: ...


class TemplateCatalog(Protocol):
    """The installed templates, by name."""

    def get(self, name: str) -> Template | None:
        """The template registered under ``name``, or None."""
        ...

    def __contains__(self, name: object) -> bool: ...

    def __iter__(self) -> Iterator[Template]: ...


class Catalog(Protocol):
    """Adapters, templates and vocabulary config is validated against, and what handlers are built with."""

    @property
    def adapters(self) -> AdapterCatalog:
        """The installed adapters."""
        ...

    @property
    def templates(self) -> TemplateCatalog:
        """The installed templates."""
        ...

    @property
    def vocabulary(self) -> Vocabulary:
        """The attribute vocabulary expressions are checked against."""
        ...

    @property
    def build_extras(self) -> dict[str, Any]:
        """What the host offers every handler it builds (``metrics_registry``, a test clock, ...)."""
        ...
