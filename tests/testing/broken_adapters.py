"""Adapters that each break one rule of the adapter contract (for the conformance tests)."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy import Adapter, BuildContext, CheckResult, FieldError, Handler, QuotaArgs, QuotaResult, param


@dataclass(frozen=True)
class GoodParams:
    """Params of the good adapter."""

    users: list[str] = param(default_factory=list, doc="Users allowed through.")
    valid_duration: dt.timedelta = param(dt.timedelta(seconds=10), doc="How long an answer may be cached.")


class GoodHandler(Handler):
    """Allows the listed users."""

    def __init__(self, params: GoodParams) -> None:
        self.users = set(params.users)
        self.ttl = params.valid_duration.total_seconds()

    def check(self, instance: Any) -> CheckResult:
        """Allow listed users, deny the rest (cacheable)."""
        if instance.subject.user in self.users:
            return CheckResult.allow(self.ttl)
        return CheckResult.deny(f"{instance.subject.user!r} is not allowed", valid_duration=self.ttl)


class Good(Adapter):
    """Follows every rule of the contract."""

    name = "good"
    description = "Allows listed users."
    templates = ("authorization",)
    Params = GoodParams

    @classmethod
    def validate(cls, params: GoodParams) -> Iterator[FieldError]:
        for i, user in enumerate(params.users):
            if not user:
                yield FieldError(f"users[{i}]", "must not be empty")

    @classmethod
    def build(cls, params: GoodParams, context: BuildContext) -> Handler:
        return GoodHandler(params)


@dataclass(frozen=True)
class UndocumentedParams:
    """Params whose fields carry no doc."""

    users: list[str] = param(default_factory=list, doc="")
    limit: int = 3


class Undocumented(Good):
    """Declares undocumented params."""

    name = "undocumented"
    Params = UndocumentedParams  # type: ignore[assignment]

    @classmethod
    def validate(cls, params: Any) -> Iterator[FieldError]:
        return iter(())


class Unscoped(Good):
    """validate() errors name no field."""

    name = "unscoped"

    @classmethod
    def validate(cls, params: GoodParams) -> Iterator[FieldError]:
        if not params.users:
            yield FieldError("", "something is wrong")


class Silent(Good):
    """Answers without declaring cacheability."""

    name = "silent"

    @classmethod
    def build(cls, params: GoodParams, context: BuildContext) -> Handler:
        class SilentHandler(Handler):
            def check(self, instance: Any) -> CheckResult:
                return CheckResult.allow()

        return SilentHandler()


class LeakyHandler(Handler):
    """Starts a task, a thread and opens a file, and releases none of them in close()."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stop = threading.Event()

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="leaky-refresh")
        self.thread = threading.Thread(target=self.stop.wait, name="leaky-thread", daemon=True)
        self.thread.start()
        self.file = self.path.open("a")

    def check(self, instance: Any) -> CheckResult:
        return CheckResult.allow(1.0)

    def release(self) -> None:
        """Free what the test leaked on purpose."""
        self.task.cancel()
        self.stop.set()
        self.file.close()


LEAKED: list[LeakyHandler] = []


class Leaky(Good):
    """Builds handlers that leak what they start."""

    name = "leaky"

    @classmethod
    def build(cls, params: GoodParams, context: BuildContext) -> Handler:
        handler = LeakyHandler(context.config_dir / "leaky.log")
        LEAKED.append(handler)
        return handler


class Crashy(Good):
    """Crashes on instances without a user, and closes only once."""

    name = "crashy"

    @classmethod
    def build(cls, params: GoodParams, context: BuildContext) -> Handler:
        class CrashyHandler(GoodHandler):
            closed = False

            def check(self, instance: Any) -> CheckResult:
                return CheckResult.allow(1.0) if instance.subject.user.startswith("a") else CheckResult.deny("no")

            async def close(self) -> None:
                if self.closed:
                    raise RuntimeError("already closed")
                self.closed = True

        return CrashyHandler(params)


class Blocking(Good):
    """A plain check that takes 0.15 s on the clock it is built with: it would stall the event loop.

    The conformance check times calls on the clock it builds handlers with; the test
    hands it a FakeClock, so "taking 0.15 s" is the handler advancing that clock.
    """

    name = "blocking"
    #: How many of its calls take the time (None: every one).
    slow_calls: int | None = None

    @classmethod
    def build(cls, params: GoodParams, context: BuildContext) -> Handler:
        advance = _advancer(context.clock)
        slow_calls = cls.slow_calls

        class BlockingHandler(GoodHandler):
            calls = 0

            def check(self, instance: Any) -> CheckResult:
                self.calls += 1
                if slow_calls is None or self.calls <= slow_calls:
                    advance(0.15)
                return CheckResult.allow(1.0)

        return BlockingHandler(params)


class Hiccup(Blocking):
    """A plain check slow only on its first call, as a busy machine makes any call: not blocking."""

    name = "hiccup"
    slow_calls = 1


#: The FakeClocks tests hand the conformance check, by the id of the Clock they give out.
FAKE_CLOCKS: dict[int, Any] = {}


def fake_clock() -> Any:
    """A FakeClock whose ``.clock`` the Blocking adapters can advance."""
    from policy.testing import FakeClock

    fake = FakeClock()
    clock = fake.clock
    FAKE_CLOCKS[id(clock)] = (fake, clock)
    return clock


def _advancer(clock: Any) -> Any:
    """Advance the FakeClock behind ``clock``; a real clock (the dispatch step's) is left alone."""
    known = FAKE_CLOCKS.get(id(clock))
    return known[0].advance if known is not None else (lambda seconds: None)


@dataclass(frozen=True)
class LimitParams:
    """Params of the greedy adapter."""

    limit: int = param(2, doc="Most units granted per call.")


class Greedy(Adapter):
    """A quota adapter granting more than asked."""

    name = "greedy"
    description = "Grants too much."
    templates = ("quota",)
    Params = LimitParams

    @classmethod
    def build(cls, params: LimitParams, context: BuildContext) -> Handler:
        class GreedyHandler(Handler):
            def quota(self, instance: Any, args: QuotaArgs) -> QuotaResult:
                return QuotaResult(args.amount + params.limit, 1.0)

        return GreedyHandler()


class Nameless(Good):
    """Breaks the declaration rules."""

    name = "Bad Name"
    description = "two\nlines"
    templates = ("authorization", "nosuchtemplate")
