"""Registries that plugins fill: adapters and templates, each remembering who added what."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from policy.sdk import Adapter, PluginError, Template
from policy.sdk.templates import BUILTIN_TEMPLATES


@dataclass(frozen=True)
class Origin:
    """Where a registration came from: the plugin's name and its distribution."""

    plugin: str
    distribution: str = ""
    version: str = ""
    #: Registered by the host itself (adapters.BUILTIN_PLUGINS), not by a third party.
    builtin: bool = False

    def __str__(self) -> str:
        if self.distribution:
            return f"plugin {self.plugin!r} (distribution {self.distribution} {self.version})".rstrip()
        return f"plugin {self.plugin!r}"


@dataclass(frozen=True)
class RegisteredAdapter:
    """An adapter class with the plugin that registered it."""

    adapter: type[Adapter]
    origin: Origin

    @property
    def name(self) -> str:
        """The adapter's name."""
        return self.adapter.name


def _error(origin: Origin, message: str) -> PluginError:
    return PluginError(f"{origin}: {message}", plugin=origin.plugin, distribution=origin.distribution)


class AdapterRegistry:
    """The adapters known to a plugin host, by name; duplicates are rejected."""

    def __init__(self) -> None:
        self._adapters: dict[str, RegisteredAdapter] = {}
        self._current: Callable[[], Origin] = lambda: Origin("<direct>")

    @property
    def _origin(self) -> Origin:
        return self._current()

    def bound(self, origin: Origin) -> "AdapterRegistry":
        """A view of this registry whose ``add`` records ``origin``."""
        return self.attributed(lambda: origin)

    def attributed(self, current: Callable[[], Origin]) -> "AdapterRegistry":
        """A view whose ``add`` records ``current()``: the plugin registering (used by the host)."""
        view = object.__new__(AdapterRegistry)
        view._adapters = self._adapters
        view._current = current
        return view

    def add(self, adapter: type[Adapter[Any]]) -> None:
        """Register an adapter class; a name registered before raises PluginError naming both.

        The error blames the third-party plugin when the other registration is built in,
        whichever ran first; otherwise the later one.
        """
        origin = self._origin
        if not (isinstance(adapter, type) and issubclass(adapter, Adapter)):
            raise _error(origin, f"registry.add() takes an Adapter subclass, got {adapter!r}")
        name = adapter.name
        if not name or not isinstance(name, str):
            raise _error(origin, f"adapter {adapter.__qualname__} has no name")
        if not adapter.templates:
            raise _error(origin, f"adapter {name!r} supports no templates")
        known = self._adapters.get(name)
        if known is not None:
            culprit = known.origin if origin.builtin and not known.origin.builtin else origin
            other = origin if culprit is known.origin else known.origin
            raise PluginError(
                f"adapter name {name!r} is registered twice: by {other} and by {culprit}",
                plugin=culprit.plugin, distribution=culprit.distribution,
            )
        self._adapters[name] = RegisteredAdapter(adapter, origin)

    def get(self, name: str) -> RegisteredAdapter | None:
        """The registered adapter called ``name``, or None."""
        return self._adapters.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._adapters

    def __iter__(self) -> Iterator[RegisteredAdapter]:
        return iter(sorted(self._adapters.values(), key=lambda r: r.name))

    def __len__(self) -> int:
        return len(self._adapters)


class TemplateRegistry:
    """The templates known to a plugin host, by name, starting with the built-ins."""

    def __init__(self) -> None:
        self._templates: dict[str, Template] = {t.name: t for t in BUILTIN_TEMPLATES}
        self._current: Callable[[], Origin] = lambda: Origin("<builtin>")

    def bound(self, origin: Origin) -> "TemplateRegistry":
        """A view of this registry whose ``add`` records ``origin``."""
        return self.attributed(lambda: origin)

    def attributed(self, current: Callable[[], Origin]) -> "TemplateRegistry":
        """A view whose ``add`` names ``current()`` (the plugin registering) in its errors."""
        view = object.__new__(TemplateRegistry)
        view._templates = self._templates
        view._current = current
        return view

    def add(self, template: Template) -> None:
        """Register a template; a duplicate name raises PluginError."""
        if template.name in self._templates:
            raise _error(self._current(), f"template {template.name!r} is already registered")
        self._templates[template.name] = template

    def get(self, name: str) -> Template | None:
        """The template called ``name``, or None."""
        return self._templates.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def __iter__(self) -> Iterator[Template]:
        return iter(sorted(self._templates.values(), key=lambda t: t.name))
