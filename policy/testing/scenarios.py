"""Scenario tables: attributes → expected code, checked in one go with a readable failure.

::

    await assert_scenarios(server, [
        ({"source.ip": ip("10.0.0.1")}, "OK"),
        ({"source.ip": ip("192.168.0.1")}, "PERMISSION_DENIED"),
        Scenario({"request.headers": {"x-user": "mallory"}}, "PERMISSION_DENIED",
                 message="blocked", name="mallory is blocked"),
    ])

The target is a :class:`~policy.runtime.service.PolicyService` (checked in-process)
or a :class:`~policy.testing.RunningServer` (checked over the native gRPC API, on
its TCP address or, with ``via="unix"``, its Unix socket). Every scenario runs,
then one AssertionError lists each mismatch with the attributes, the expected and
the actual code and message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from policy.sdk import Code, QuotaArgs, parse_code


@dataclass(frozen=True)
class Scenario:
    """One row of a scenario table.

    :param attributes: the request's attributes (typed Python values).
    :param code: the expected overall code (a name such as ``"PERMISSION_DENIED"``, a
        :class:`~policy.Code` or its number).
    :param message: when given, a text the answer's message must contain.
    :param quotas: quotas to charge, quota name → amount.
    :param name: a label shown in failure messages (default: the row's index).
    """

    attributes: Mapping[str, Any]
    code: str | int | Code = Code.OK
    message: str | None = None
    quotas: Mapping[str, int] = field(default_factory=dict)
    name: str = ""

    @property
    def expected(self) -> Code:
        """The expected code as a :class:`~policy.Code`."""
        return parse_code(self.code) if not isinstance(self.code, Code) else self.code


@dataclass(frozen=True)
class Outcome:
    """What a target answered for one scenario: the overall code and message."""

    code: Code
    message: str


@dataclass(frozen=True)
class Mismatch:
    """A scenario whose answer differed from what the table expected."""

    index: int
    scenario: Scenario
    outcome: Outcome

    def __str__(self) -> str:
        label = self.scenario.name or f"#{self.index}"
        want = self.scenario.expected.name
        if self.scenario.message is not None:
            want += f" with message containing {self.scenario.message!r}"
        got = self.outcome.code.name + (f" {self.outcome.message!r}" if self.outcome.message else "")
        return f"  {label}: attributes {dict(self.scenario.attributes)!r}\n    expected {want}\n    got      {got}"


Row = Scenario | tuple[Mapping[str, Any], Any] | tuple[Mapping[str, Any], Any, str]


def as_scenario(row: Row) -> Scenario:
    """Normalise a table row: a :class:`Scenario`, ``(attrs, code)`` or ``(attrs, code, message)``."""
    if isinstance(row, Scenario):
        return row
    if isinstance(row, tuple) and len(row) in (2, 3) and isinstance(row[0], Mapping):
        return Scenario(row[0], row[1], row[2] if len(row) == 3 else None)
    raise TypeError(f"a scenario is a Scenario, (attributes, code) or (attributes, code, message); got {row!r}")


async def _service_outcome(service: Any, scenario: Scenario) -> Outcome:
    quotas = {name: QuotaArgs(name, amount) for name, amount in scenario.quotas.items()} or None
    decision = await service.check(dict(scenario.attributes), quotas)
    return Outcome(decision.code, decision.message)


async def _native_outcome(stub: Any, scenario: Scenario) -> Outcome:
    from policy.testing.harness import native_check

    response = await native_check(stub, scenario.attributes, dict(scenario.quotas) or None)
    status = response.precondition.status
    if status.code != Code.OK:
        return Outcome(Code(status.code), status.message)
    for name in scenario.quotas:
        quota = response.quotas[name].status
        if quota.code != Code.OK:
            return Outcome(Code(quota.code), quota.message)
    return Outcome(Code.OK, "")


async def run_scenarios(target: Any, table: Sequence[Row], *,
                        via: Literal["tcp", "unix"] = "tcp") -> list[tuple[Scenario, Outcome]]:
    """Run every scenario against ``target``; returns (scenario, outcome) pairs in table order."""
    from policy.testing.harness import RunningServer

    scenarios = [as_scenario(row) for row in table]
    results: list[tuple[Scenario, Outcome]] = []
    if isinstance(target, RunningServer):
        address = target.unix if via == "unix" else target.tcp
        if address is None:
            raise ValueError("this RunningServer has no Unix socket (start it with unix=True)")
        stub = target.native(address)
        for scenario in scenarios:
            results.append((scenario, await _native_outcome(stub, scenario)))
    elif hasattr(target, "check") and hasattr(target, "dispatcher"):
        for scenario in scenarios:
            results.append((scenario, await _service_outcome(target, scenario)))
    else:
        raise TypeError(f"assert_scenarios takes a PolicyService or a RunningServer, got {type(target).__name__}")
    return results


def mismatches(results: Sequence[tuple[Scenario, Outcome]]) -> list[Mismatch]:
    """The results whose code (or message) differs from their scenario's expectation."""
    found = []
    for index, (scenario, outcome) in enumerate(results):
        wrong_code = outcome.code != scenario.expected
        wrong_message = scenario.message is not None and scenario.message not in outcome.message
        if wrong_code or wrong_message:
            found.append(Mismatch(index, scenario, outcome))
    return found


async def assert_scenarios(target: Any, table: Sequence[Row], *,
                           via: Literal["tcp", "unix"] = "tcp") -> list[tuple[Scenario, Outcome]]:
    """Run a scenario table against a service or server; raise one AssertionError listing every mismatch.

    :param target: a PolicyService (in-process) or a RunningServer (native gRPC).
    :param table: rows of :class:`Scenario`, ``(attributes, code)`` or ``(attributes, code, message)``.
    :param via: for a RunningServer, ``"tcp"`` or ``"unix"``.
    :return: every (scenario, outcome) pair, when all matched.
    """
    results = await run_scenarios(target, table, via=via)
    wrong = mismatches(results)
    if wrong:
        lines = "\n".join(str(m) for m in wrong)
        raise AssertionError(f"{len(wrong)} of {len(results)} scenario(s) answered otherwise:\n{lines}")
    return results


__all__ = ["Mismatch", "Outcome", "Scenario", "as_scenario", "assert_scenarios", "mismatches", "run_scenarios"]
