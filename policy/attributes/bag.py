"""The attribute bag: one request's typed attributes, and the recording of what was read.

A bag never holds ``None``: an attribute is either present with a value of its
vocabulary type, or absent, and ``get`` answers ``None`` for absent. A
:class:`RecordingBag` wraps a bag during evaluation and remembers every attribute
(and every map key) that was read, present or absent. That record is what the
decision cache keys on and what the native API returns as referenced attributes.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

#: A read of one attribute: ``(name, None)``, or ``(name, key)`` for one key of a string map.
Read = tuple[str, "str | None"]


class Presence(enum.Enum):
    """Whether a referenced attribute (or map key) was present when it was read."""

    ABSENT = "ABSENT"
    EXACT = "EXACT"


@dataclass(frozen=True, slots=True)
class Reference:
    """One referenced attribute, as the native API reports it."""

    name: str
    map_key: str | None
    presence: Presence


class AttributeBag(Mapping[str, Any]):
    """A request's attributes by name; absent attributes are simply not there."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = (
            {k: v for k, v in values.items() if v is not None} if values else {}
        )

    @classmethod
    def trusted(cls, values: dict[str, Any]) -> "AttributeBag":
        """Wrap a dict already validated at the edge (no None values); the dict is not copied."""
        bag = object.__new__(cls)
        bag._values = values
        return bag

    # Mapping protocol (for adapters, logging and tests).
    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"AttributeBag({self._values!r})"

    @property
    def raw(self) -> dict[str, Any]:
        """The underlying dict; read-only by convention (the runtime's fast paths use it)."""
        return self._values

    def get(self, name: str, default: Any = None) -> Any:
        """Return the attribute's value, or ``default`` (None) when absent."""
        return self._values.get(name, default)

    def get_key(self, name: str, key: str) -> str | None:
        """Return one key of a string-map attribute, or None when the map or key is absent."""
        mapping = self._values.get(name)
        if mapping is None:
            return None
        return mapping.get(key)

    def lookup(self, name: str, key: str) -> str | None:
        """Mixer's map index ``name[key]``: "" for a key absent from a present map, None for an absent map."""
        mapping = self._values.get(name)
        if mapping is None:
            return None
        return mapping.get(key, "")

    def with_values(self, extra: Mapping[str, Any]) -> "AttributeBag":
        """Return a new bag with ``extra`` added (None values are dropped)."""
        merged = dict(self._values)
        merged.update((k, v) for k, v in extra.items() if v is not None)
        return AttributeBag(merged)


class RecordedMap(Mapping[str, Any]):
    """A string map handed out by a :class:`RecordingBag`: it records how it is read.

    Looking up a key (``m[k]``, ``m.get(k)``, ``k in m``) records that key alone, as
    ``get_key`` does; anything that sees the whole map (iteration, ``len``, truth,
    ``items()``, equality) records the whole map. So an adapter that takes a whole map
    in an instance field (``request.headers``) but reads one header keys the decision
    cache on that header only, and requests differing in other headers (a request id)
    share the cached decision. An absent map reads as a map without the key. Telling a
    present map from an absent one by identity alone (``is None``) is not recorded.
    """

    __slots__ = ("_name", "_map", "_reads")

    def __init__(self, name: str, mapping: Mapping[str, Any], reads: list[Read]) -> None:
        self._name = name
        self._map = mapping
        self._reads = reads

    def __getitem__(self, key: str) -> Any:
        self._reads.append((self._name, key))
        return self._map[key]

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """One key's value (``default`` when absent), recording the read of that key."""
        self._reads.append((self._name, key))
        return self._map.get(key, default)

    def __contains__(self, key: object) -> bool:
        self._reads.append((self._name, key))  # type: ignore[arg-type]
        return key in self._map

    def __iter__(self) -> Iterator[str]:
        self._reads.append((self._name, None))
        return iter(self._map)

    def __len__(self) -> int:
        self._reads.append((self._name, None))
        return len(self._map)

    def __repr__(self) -> str:
        return f"RecordedMap({self._name!r}, {dict(self._map)!r})"


#: Value types that are never maps: skips the ``Mapping`` check (an ABC ``isinstance``) for most reads.
_SCALAR_TYPES = frozenset({str, int, float, bool, bytes, type(None), ipaddress.IPv4Address, ipaddress.IPv6Address,
                           datetime.datetime, datetime.timedelta})


class RecordingBag:
    """Wraps a bag for one evaluation and records every read, present or absent.

    A string map read whole comes back as a :class:`RecordedMap`, which records the
    keys later looked up in it rather than the whole map.
    """

    __slots__ = ("_values", "reads")

    def __init__(self, bag: AttributeBag) -> None:
        self._values = bag.raw
        self.reads: list[Read] = []

    def get(self, name: str, default: Any = None) -> Any:
        """Return the attribute's value (None when absent) and record the read."""
        value = self._values.get(name, default)
        if type(value) not in _SCALAR_TYPES and value is not default and isinstance(value, Mapping):
            return RecordedMap(name, value, self.reads)
        self.reads.append((name, None))
        return value

    def get_key(self, name: str, key: str) -> str | None:
        """Return one key of a string map (None when absent) and record the read of that key."""
        self.reads.append((name, key))
        mapping = self._values.get(name)
        if mapping is None:
            return None
        return mapping.get(key)

    def lookup(self, name: str, key: str) -> str | None:
        """Mixer's map index: "" for an absent key, None for an absent map; records the read.

        A present map records ``(name, key)``; an absent one records ``(name, None)``, the
        read of the whole (absent) attribute, as Mixer does.
        """
        mapping = self._values.get(name)
        if mapping is None:
            self.reads.append((name, None))
            return None
        self.reads.append((name, key))
        return mapping.get(key, "")

    def shape(self) -> frozenset[Read]:
        """The distinct reads made so far."""
        return frozenset(self.reads)


def references(bag: AttributeBag | Mapping[str, Any], reads: Iterable[Read]) -> list[Reference]:
    """Turn reads into :class:`Reference` records, sorted, each marked present or absent.

    A key read in a map the request does not carry is reported as the map itself absent,
    as Mixer's bag reported it: ``map[key]`` ABSENT would say the map is there without the
    key, which reads as ``""`` and can decide differently (a client caching on these
    references must not take one for the other).
    """
    values = bag.raw if isinstance(bag, AttributeBag) else bag
    distinct = set()
    for name, key in reads:
        if key is not None and values.get(name) is None:
            key = None
        distinct.add((name, key))
    out = []
    for name, key in sorted(distinct, key=lambda r: (r[0], r[1] or "")):
        if key is None:
            value = values.get(name)
        else:
            value = values[name].get(key)
        out.append(Reference(name, key, Presence.ABSENT if value is None else Presence.EXACT))
    return out


class LazyReferences(Sequence[Reference]):
    """The :func:`references` of one evaluation, worked out when first read.

    Most transports never read them (ext_authz answers without), so a decision carries
    the reads and the request's attribute dict until then; :meth:`resolve` works them
    out and lets go of the request (the decision cache resolves what it keeps, so no
    cached decision holds a request's attributes).
    """

    __slots__ = ("_values", "_reads", "_resolved")

    def __init__(self, values: Mapping[str, Any], reads: Iterable[Read]) -> None:
        self._values: Mapping[str, Any] | None = values
        self._reads: Iterable[Read] | None = reads
        self._resolved: list[Reference] | None = None

    def resolve(self) -> list[Reference]:
        """The references, worked out once."""
        resolved = self._resolved
        if resolved is None:
            resolved = self._resolved = references(self._values or {}, self._reads or ())
            self._values = self._reads = None
        return resolved

    @overload
    def __getitem__(self, index: int) -> Reference: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Reference]: ...

    def __getitem__(self, index: int | slice) -> Reference | Sequence[Reference]:
        return self.resolve()[index]

    def __len__(self) -> int:
        return len(self.resolve())

    def __iter__(self) -> Iterator[Reference]:
        return iter(self.resolve())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyReferences):
            other = other.resolve()
        return self.resolve() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self.resolve())
