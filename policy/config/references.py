"""Names and references: Mixer's ``name.kind.namespace`` keys and how a rule's references resolve.

Every handler, instance and rule has a key ``name.kind.namespace`` (Mixer's
``store.Key.String()``): kind is ``handler`` / ``instance`` / ``rule``, or the
adapter / template name for the legacy per-adapter and per-template kinds.

A rule's reference is resolved relative to the rule's namespace, following Mixer's
``canonicalize`` (``mixer/pkg/runtime/config/util.go``, istio 1.1-1.7), tried in order:

=====================  ============================================================
reference              keys tried
=====================  ============================================================
``a``                  ``a.<kind>.<rule ns>``
``a.b``                ``a.b.<rule ns>`` (b is a kind, e.g. ``whitelist.listchecker``),
                       then ``a.<kind>.b`` (b is a namespace, e.g. ``whitelist.istio-system``)
``a.b.c``              ``a.b.c`` exactly (name, kind, namespace)
more parts             the text itself, exactly (names may contain dots)
=====================  ============================================================

where ``<kind>`` is ``handler`` for an action's handler and ``instance`` for its
instances. Compact-form rules add one fallback: a one-part reference not found in
the rule's namespace is looked up in the root namespace too, so rules of every
namespace can share handlers and instances declared once without a namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from policy.config.model import COMPACT

HANDLER_KIND = "handler"
INSTANCE_KIND = "instance"
RULE_KIND = "rule"

T = TypeVar("T")


def key_of(name: str, kind: str, namespace: str) -> str:
    """The key ``name.kind.namespace`` of an entity."""
    return f"{name}.{kind}.{namespace}"


def candidates(reference: str, kind: str, namespace: str, fallback_namespace: str | None = None) -> list[str]:
    """The keys a reference may mean, in the order they are tried (see the module docstring)."""
    parts = reference.split(".")
    if len(parts) == 1:
        keys = [key_of(reference, kind, namespace)]
        if fallback_namespace is not None and fallback_namespace != namespace:
            keys.append(key_of(reference, kind, fallback_namespace))
        return keys
    if len(parts) == 2:
        return [key_of(parts[0], parts[1], namespace), key_of(parts[0], kind, parts[1])]
    return [reference]


def display_name(name: str, kind: str, namespace: str, form: str, root: str) -> str:
    """The name an entity is known by in the snapshot, in messages and to adapters.

    Mixer documents keep Mixer's names: ``name.namespace`` for ``kind: handler``
    (Mixer's static handler name) and the full key otherwise (instances such as
    ``requestcount.quota.istio-system`` are what memquota's overrides name).
    Compact-form entities are ``name`` in the root namespace, ``name.namespace`` elsewhere.
    """
    if form == COMPACT:
        return name if namespace == root else f"{name}.{namespace}"
    if kind == HANDLER_KIND:
        return f"{name}.{namespace}"
    return key_of(name, kind, namespace)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One indexed entity with its key parts."""

    name: str
    kind: str
    namespace: str
    item: T


class Index(Generic[T]):
    """Entities of one sort (handlers or instances) by key."""

    def __init__(self, generic_kind: str) -> None:
        self.generic_kind = generic_kind
        self._by_key: dict[str, Entry[T]] = {}

    def add(self, name: str, kind: str, namespace: str, item: T) -> T | None:
        """Index an entity; when the key is taken, keep the first and return its item."""
        key = key_of(name, kind, namespace)
        known = self._by_key.get(key)
        if known is not None:
            return known.item
        self._by_key[key] = Entry(name, kind, namespace, item)
        return None

    def resolve(self, reference: str, namespace: str, fallback_namespace: str | None = None) -> T | None:
        """The entity a reference from a rule in ``namespace`` means, or None."""
        for key in candidates(reference, self.generic_kind, namespace, fallback_namespace):
            entry = self._by_key.get(key)
            if entry is not None:
                return entry.item
        return None

    def names_in(self, namespaces: Iterable[str]) -> list[str]:
        """How a rule would refer to each entity of ``namespaces``: ``name`` or ``name.kind``."""
        wanted = list(dict.fromkeys(namespaces))
        out = []
        for entry in self._by_key.values():
            if entry.namespace not in wanted:
                continue
            text = entry.name if entry.kind == self.generic_kind else f"{entry.name}.{entry.kind}"
            if len(wanted) > 1:
                text = f"{text} ({entry.namespace})"
            out.append(text)
        return sorted(out)


def reference_namespaces(reference: str, namespace: str, fallback_namespace: str | None) -> list[str]:
    """The namespaces a reference is looked up in (for 'not found' messages)."""
    parts = reference.split(".")
    if len(parts) == 1:
        return [namespace] + ([fallback_namespace] if fallback_namespace else [])
    if len(parts) == 2:
        return [namespace, parts[1]]
    return [parts[2]] if len(parts) == 3 else [namespace]


def fallback_for(form: str, root: str) -> str | None:
    """The fallback namespace of rules of a form: the root namespace for compact rules only."""
    return root if form == COMPACT else None


__all__ = [
    "HANDLER_KIND", "INSTANCE_KIND", "RULE_KIND", "Index", "candidates", "display_name",
    "fallback_for", "key_of", "reference_namespaces",
]
