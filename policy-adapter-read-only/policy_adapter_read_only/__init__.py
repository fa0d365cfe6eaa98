"""The ``read-only`` adapter: allow only the listed users (a check adapter).

What it does
    Checks ``authorization`` instances: a request whose ``subject.user`` is in
    ``allowedUsers`` is allowed; any other user is denied with PERMISSION_DENIED
    ``user 'mallory' is not allowed``; a request without a user is denied with
    UNAUTHENTICATED ``no user``.

Params
    ``allowedUsers``   the users allowed through; default none (everyone is denied).
    ``validDuration``  how long an answer may be cached; default ``60s`` (``0s``: never).

Fail mode
    None needed: the handler does no I/O and cannot fail at request time.

Cacheability
    Every answer (allow or deny) carries ``validDuration``.

Limits
    Users are compared exactly (case-sensitive). The list is fixed when the config
    loads; change the config to change it (it is hot-reloaded).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from policy import Adapter, Authorization, BuildContext, CheckResult, Code, FieldError, Handler, hookimpl, param


@dataclass(frozen=True)
class Params:
    """Params of the ``read-only`` adapter."""

    allowed_users: list[str] = param(default_factory=list, doc="Users (subject.user) allowed through.")
    valid_duration: dt.timedelta = param(dt.timedelta(seconds=60),
                                         doc="How long an answer may be cached (0s: never).")


class ReadOnlyAdapterHandler(Handler):
    """Answers checks from a set of users."""

    def __init__(self, params: Params) -> None:
        self.allowed = frozenset(params.allowed_users)
        self.ttl = params.valid_duration.total_seconds()

    def check(self, instance: Authorization) -> CheckResult:
        """Allow listed users, deny the others (UNAUTHENTICATED when there is no user)."""
        user = instance.subject.user
        if not user:
            return CheckResult.deny("no user", Code.UNAUTHENTICATED, valid_duration=self.ttl)
        if user in self.allowed:
            return CheckResult.allow(valid_duration=self.ttl)
        return CheckResult.deny(f"user {user!r} is not allowed", valid_duration=self.ttl)


class ReadOnlyAdapter(Adapter):
    """Allows only the listed users."""

    name = "read-only"
    description = "Allows only the listed users"
    templates = ("authorization",)
    Params = Params

    @classmethod
    def validate(cls, params: Params) -> Iterator[FieldError]:
        """Users must not be empty strings."""
        for index, user in enumerate(params.allowed_users):
            if not user.strip():
                yield FieldError(f"allowedUsers[{index}]", "must not be empty")

    @classmethod
    def build(cls, params: Params, context: BuildContext) -> ReadOnlyAdapterHandler:
        """Build a handler for validated params."""
        return ReadOnlyAdapterHandler(params)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the ``read-only`` adapter with the host."""
    registry.add(ReadOnlyAdapter)
