"""What a check decides: the combined status, its cacheability, and why.

Combination follows Mixer: the first non-OK status in rule order wins (deny beats
allow) and its message names the handler; the valid duration and use count are the
minimum over the contributing results; a contributing result that did not declare
cacheability makes the whole decision uncacheable.
"""

from __future__ import annotations

import itertools
import os
from random import getrandbits as _getrandbits
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, NamedTuple

from policy.attributes import Reference
from policy.sdk import OK, CheckResult, Code, HeaderOperation, QuotaResult, Status


_ID_MASK = (1 << 48) - 1


def _new_id_source() -> tuple[str, Any]:
    """A process's decision-id prefix (a random v4 UUID's first 20 hex digits) and its counter."""
    text = "%020x" % (_getrandbits(80) & ~(0xF << 28 | 0x3 << 14) | (0x4 << 28 | 0x2 << 14))
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-", itertools.count(_getrandbits(47))


_id_prefix, _id_counter = _new_id_source()


def _new_process_ids() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = _new_id_source()


os.register_at_fork(after_in_child=_new_process_ids)  # a forked worker must not repeat its parent's ids


def new_decision_id() -> str:
    """A unique id in the form of a version 4 UUID, as OPA-Envoy's ``decision_id``, for joining logs.

    Every response, cached ones too, gets its own, so it is made in a quarter of
    ``uuid.uuid4()``'s time: 74 random bits drawn once per process (again in a forked
    child) in the version and variant layout of a random UUID, then a 48-bit counter
    (the last 12 hex digits) from a random start. Unique, not secret: Envoy and the
    decision log only join on it.
    """
    return _id_prefix + "%012x" % (next(_id_counter) & _ID_MASK)


class HandlerCall(NamedTuple):
    """One handler call made for a decision, for explanations (``policy check``).

    A named tuple: made for every handler call of every uncached check, where a frozen
    dataclass's constructor cost twice as much.
    """

    rule: str
    handler: str
    instance: str
    result: CheckResult


@dataclass(frozen=True)
class Decision:
    """The answer to one check.

    :param status: the combined precondition status (OK allows).
    :param valid_duration: seconds the decision may be cached; None = not cacheable.
    :param valid_use_count: how many requests may reuse it; None = no limit.
    :param quotas: per-quota results, by quota name.
    :param referenced: the attributes the decision read, present or absent.
    :param rules: names of the rules that matched.
    :param calls: the handler calls made (empty when answered from cache).
    """

    status: Status = OK
    valid_duration: float | None = None
    valid_use_count: int | None = None
    quotas: Mapping[str, QuotaResult] = field(default_factory=dict)
    referenced: Sequence[Reference] = ()
    rules: tuple[str, ...] = ()
    calls: tuple[HandlerCall, ...] = ()
    request_headers: tuple[HeaderOperation, ...] = ()
    response_headers: tuple[HeaderOperation, ...] = ()
    http_status: int | None = None
    body: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: The allowed request's query rewrites (ext_authz ``query_parameters_to_set`` / ``_to_remove``).
    query_parameters_to_set: tuple[tuple[str, str], ...] = ()
    query_parameters_to_remove: tuple[str, ...] = ()
    cache_hit: bool = False
    decision_id: str = ""
    generation: int = 0
    #: Transports' encodings of the request-independent part, shared by every reuse from cache.
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def allowed(self) -> bool:
        """True when the precondition and every quota are OK."""
        return self.code == Code.OK

    @property
    def code(self) -> Code:
        """The overall code: the precondition's, else the first failed quota's."""
        if not self.status.ok:
            return self.status.code
        for result in self.quotas.values():
            if not result.ok:
                return result.status.code
        return Code.OK

    @property
    def message(self) -> str:
        """The overall message, matching :attr:`code`."""
        if not self.status.ok:
            return self.status.message
        for result in self.quotas.values():
            if not result.ok:
                return result.status.message
        return ""

    @classmethod
    def fast(cls, **values: Any) -> "Decision":
        """``Decision(**values)`` without the frozen dataclass's ``__init__`` (the dispatcher's hot path).

        A frozen dataclass sets each field through ``object.__setattr__``: for this class
        that is about 1.7 µs, as much as the rest of an uncached list check's dispatch.
        This puts ``values`` in the instance dict directly, with fresh mutable defaults as
        ``__init__`` makes them; a field not given reads its default from the class, as
        every plain default of a dataclass stays a class attribute. ``values`` must name
        fields only.
        """
        decision = object.__new__(cls)
        state = decision.__dict__
        state["quotas"] = {}
        state["metadata"] = {}
        state["memo"] = {}
        state.update(values)
        return decision

    def with_quotas(self, quotas: Mapping[str, QuotaResult], decision_id: str) -> "Decision":
        """A copy carrying quota results and a fresh decision id."""
        return replace(self, quotas=quotas, decision_id=decision_id)

    def reused(self, decision_id: str, quotas: Mapping[str, QuotaResult]) -> "Decision":
        """A copy for a cache hit: a new id, the request's quota results, no handler calls.

        Built by copying the instance dict: ``dataclasses.replace`` re-runs ``__init__``
        and costs more than the rest of a cached check.
        """
        copy = object.__new__(Decision)
        state = copy.__dict__
        state.update(self.__dict__)
        state["decision_id"] = decision_id
        state["quotas"] = quotas
        state["cache_hit"] = True
        state["calls"] = ()
        return copy


# Decision.fast relies on these: plain defaults stay class attributes, three fields have factories.
assert all(getattr(Decision, f.name) == f.default for f in fields(Decision) if f.default is not MISSING)
assert {f.name for f in fields(Decision) if f.default_factory is not MISSING} == {"quotas", "metadata", "memo"}


_INF = float("inf")


def combine(
    results: Sequence[tuple[str, CheckResult]],
    default_valid_duration: float,
    default_valid_use_count: int,
) -> tuple[Status, float | None, int | None, CheckResult | None]:
    """Combine ``(handler, result)`` pairs into one status and cacheability.

    :return: (status, valid_duration, valid_use_count, deciding result). With no
        results, the decision depends only on config and attributes, so it takes the
        snapshot's defaults. The deciding result is the first non-OK one (None when
        all allowed); its code is the status's code, and the message joins every
        failure's ``handler: message`` with ", ", as Mixer's dispatcher did.
    """
    if not results:
        return OK, default_valid_duration, default_valid_use_count, None
    if len(results) == 1:  # the common case, without the loop's bookkeeping
        result = results[0][1]
        if result.status.ok and result.valid_duration != _INF:
            return OK, result.valid_duration, result.valid_use_count, None
    status = OK
    deciding: CheckResult | None = None
    duration: float | None = float("inf")
    uses: int | None = None
    failures: list[str] = []
    for handler, result in results:
        if not result.status.ok:
            if deciding is None:
                deciding = result
            message = result.status.message
            failures.append(f"{handler}: {message}" if message else handler)
        if result.valid_duration is None or duration is None:
            duration = None
        else:
            duration = min(duration, result.valid_duration)
        if result.valid_use_count is not None:
            uses = result.valid_use_count if uses is None else min(uses, result.valid_use_count)
    if duration == float("inf"):
        duration = None
    if deciding is not None:
        status = Status(deciding.status.code, ", ".join(failures))
    return status, duration, uses, deciding
