"""The ``opa`` adapter: Rego policies decide checks, embedded (regopy) or on a remote OPA server.

What it does
    Builds the policy's ``input`` from the instance (:mod:`adapters.opa._input`):
    OPA-Envoy's document for ``requestcontext`` instances, so policies written for
    ``opa-envoy-plugin`` run unchanged, and Mixer's ``{subject, action}`` for
    ``authorization`` instances. It evaluates the decision at ``decision`` (default
    ``envoy/authz/allow``), which may be a boolean or OPA-Envoy's object (``allowed``,
    ``headers``, ``request_headers_to_remove``, ``response_headers_to_add``,
    ``http_status``, ``body``, ``dynamic_metadata``), honoured through the check
    result (:mod:`adapters.opa._decision`).

    Embedded (the default): Rego is compiled and evaluated in-process with ``regopy``.
    Rego v1 syntax is required, as OPA 1.x requires it (``regoVersion: v0`` accepts
    v0). Policy and data files are polled every ``reloadInterval`` while checks come
    in; a change is compiled beside the running policy and swapped in, and a policy
    that fails to compile leaves the last good one in force, with the reason logged
    and kept in the handler's ``last_error``.

    Remote (``url`` set): each check asks a running OPA server's Data API through
    ``opa-python-client``'s async client, within ``timeout``.

Params
    ``policies``        inline Rego modules (Mixer's ``policy`` is accepted too).
    ``policyFiles``     ``.rego`` files or directories (relative to the config file).
    ``dataFiles``       JSON/YAML data documents merged at the root of ``data``.
    ``bundleDir``       an OPA bundle directory (``.rego`` files and ``data.json`` /
                        ``data.yaml`` files placed at their directory's path).
    ``decision``        the decision path (``envoy/authz/allow``; ``data.x.y`` and ``x.y`` are
                        read as ``x/y``; Mixer's ``checkMethod`` is accepted too).
    ``regoVersion``     ``v1`` (default) or ``v0``.
    ``failMode``        ``CLOSED`` (default) or ``OPEN`` (Mixer's ``failClose`` is accepted too).
    ``validDuration``   how long a decision may be cached: ``0s`` by default (opt in, e.g. ``30s``);
                        ``validUseCount`` (default 10000).
    ``reloadInterval``  how often files are checked for changes (default ``1s``; ``0s``: never).
    ``url``, ``timeout``, ``token``   the remote server, the longest wait (default ``500ms``;
                        keep it below the handler's ``timeout``), a bearer token.

Fail mode
    An evaluation error, an undefined decision, a malformed decision object, a body
    that does not parse, or (remote) a server that is down, errs or is slower than
    ``timeout``: CLOSED denies (INTERNAL, or UNAVAILABLE / DEADLINE_EXCEEDED for the
    server), OPEN allows; neither answer is cached. A policy denial is
    PERMISSION_DENIED.

Cacheability
    Opt-in via ``validDuration``: the decision depends only on the input, built from
    the instance, so the host's cache (keyed by the instance's reads) stays correct;
    a policy reading ``time.now_ns()`` or external data should not be cached longer
    than it may be stale. A reload takes effect for cached decisions when they expire.

Limits
    rego-cpp reports some errors OPA reports at compile time (unknown functions,
    conflicting rules) only when evaluated; they answer as evaluation errors (fail
    mode). Evaluation runs on the event loop: a policy taking milliseconds delays
    other requests for that long. ``parsed_body`` covers JSON and form bodies, not
    multipart. The remote client's decision logs and bundle management are OPA's.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy import (
    Adapter,
    BuildContext,
    CheckResult,
    Code,
    ConfigError,
    ConfigIssue,
    FailMode,
    FieldError,
    Handler,
    Status,
    hookimpl,
    param,
)

from adapters.opa._decision import DecisionError, to_result
from adapters.opa._engine import CompileError, EvalError, PolicySource, to_native
from adapters.opa._input import InputError, build_input
from adapters.opa._remote import RemoteError, RemoteOpa, url_error
from adapters.requestcontext import TEMPLATE_NAME

DEFAULT_DECISION = "envoy/authz/allow"
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(/[A-Za-z_][A-Za-z0-9_\-]*)*\Z")


class RegoVersion(enum.Enum):
    """Which Rego syntax policies are written in."""

    v1 = "v1"
    v0 = "v0"


@dataclass(frozen=True)
class OpaParams:
    """Params of the ``opa`` adapter."""

    policies: list[str] = param(default_factory=list, doc="Inline Rego modules.")
    policy_files: list[str] = param(default_factory=list, doc=".rego files or directories.")
    data_files: list[str] = param(default_factory=list, doc="JSON/YAML data documents (merged at data's root).")
    bundle_dir: str = param("", doc="An OPA bundle directory (policies and data.json files).")
    decision: str = param("", doc="Decision path (default envoy/authz/allow).")
    rego_version: RegoVersion = param(RegoVersion.v1, doc="v1 (as OPA 1.x) or v0.")
    fail_mode: FailMode = param(FailMode.CLOSED, doc="CLOSED denies on errors, OPEN allows.")
    valid_duration: dt.timedelta = param(dt.timedelta(0), doc="How long a decision may be cached (0s: never).")
    valid_use_count: int = param(10000, doc="How many requests may reuse a cached decision.")
    reload_interval: dt.timedelta = param(dt.timedelta(seconds=1), doc="How often files are checked (0s: never).")
    url: str = param("", doc="A remote OPA server (http://host:port); empty for the embedded engine.")
    timeout: dt.timedelta = param(dt.timedelta(milliseconds=500), doc="Longest wait for the remote server.")
    token: str = param("", doc="Bearer token for the remote server.")
    policy: list[str] = param(default_factory=list, doc="Mixer's name for policies.")
    check_method: str = param("", doc="Mixer's name for the decision (data.x.allow).")
    fail_close: bool | None = param(None, doc="Mixer's fail mode (true: CLOSED).")


def decision_path(text: str) -> str:
    """Normalise ``data.envoy.authz.allow`` / ``envoy.authz.allow`` / ``/envoy/authz/allow`` to ``envoy/authz/allow``."""
    path = text.strip()
    if path.startswith("data.") or path == "data":
        path = path[len("data"):].lstrip(".")
    if "/" not in path:
        path = path.replace(".", "/")
    return path.strip("/")


def _decision(params: OpaParams) -> str:
    return decision_path(params.decision or params.check_method or DEFAULT_DECISION)


def _fail_mode(params: OpaParams) -> FailMode:
    if params.fail_close is not None:
        return FailMode.CLOSED if params.fail_close else FailMode.OPEN
    return params.fail_mode


class _OpaHandler(Handler):
    """What both kinds of handler share: turning outcomes into check results."""

    def __init__(self, params: OpaParams, context: BuildContext) -> None:
        self.context = context
        self.path = _decision(params)
        self.fail_mode = _fail_mode(params)
        self.valid_duration = params.valid_duration.total_seconds()
        self.valid_use_count = params.valid_use_count
        self._last_failure = ""

    def _failed(self, code: Code, message: str) -> CheckResult:
        if message != self._last_failure:  # log each new failure once, not every request
            self._last_failure = message
            self.context.logger.warning("handler %s: %s", self.context.handler, message)
        if self.fail_mode is FailMode.OPEN:
            return CheckResult(Status(Code.OK, f"OPA: {message}; allowed (failMode OPEN)"), valid_duration=0.0)
        return CheckResult(Status(code, f"OPA: {message}"), valid_duration=0.0)

    def _answer(self, defined: bool, value: Any) -> CheckResult:
        if not defined:
            return self._failed(Code.INTERNAL, f"decision {self.path} is undefined")
        try:
            return to_result(value, self.path, self.valid_duration, self.valid_use_count)
        except DecisionError as exc:
            return self._failed(Code.INTERNAL, f"decision {self.path}: {exc}")


class EmbeddedOpaHandler(_OpaHandler):
    """Evaluates Rego in-process; reloads its files when they change."""

    def __init__(self, params: OpaParams, context: BuildContext, source: PolicySource) -> None:
        super().__init__(params, context)
        self.source = source
        self.compiled = source.compile(self.path)
        self.fingerprint = source.fingerprint()
        self.reload_interval = params.reload_interval.total_seconds()
        self._watch = self.reload_interval > 0 and bool(self.fingerprint)
        self._next_poll = context.clock.monotonic() + self.reload_interval
        self.last_error: str | None = None
        self.reloads = 0

    def reload_if_changed(self) -> bool:
        """Recompile when a file changed; True when a new policy is in force."""
        fingerprint = self.source.fingerprint()
        if fingerprint == self.fingerprint:
            return False
        self.fingerprint = fingerprint
        log = self.context.logger
        try:
            compiled = self.source.compile(self.path)
        except CompileError as exc:
            self.last_error = str(exc)
            log.error("handler %s: policy change rejected, the last good policy stays in force: %s",
                      self.context.handler, exc)
            return False
        self.compiled = compiled
        self.last_error = None
        self.reloads += 1
        log.info("handler %s: policy reloaded (%d modules)", self.context.handler, len(compiled.modules))
        return True

    def check(self, instance: Any) -> CheckResult:
        """Evaluate the decision for the instance's input."""
        if self._watch:
            now = self.context.clock.monotonic()
            if now >= self._next_poll:
                self._next_poll = now + self.reload_interval
                self.reload_if_changed()
        try:
            defined, value = self.compiled.evaluate(to_native(build_input(instance)))
        except InputError as exc:
            return self._failed(Code.INVALID_ARGUMENT, str(exc))
        except EvalError as exc:
            return self._failed(Code.INTERNAL, f"decision {self.path}: {exc}")
        return self._answer(defined, value)


class RemoteOpaHandler(_OpaHandler):
    """Asks a remote OPA server."""

    def __init__(self, params: OpaParams, context: BuildContext) -> None:
        super().__init__(params, context)
        self.remote = RemoteOpa(params.url, self.path, params.timeout.total_seconds(), params.token)

    async def check(self, instance: Any) -> CheckResult:
        """Ask the server for the decision on the instance's input."""
        try:
            document = build_input(instance)
        except InputError as exc:
            return self._failed(Code.INVALID_ARGUMENT, str(exc))
        try:
            defined, value = await self.remote.decide(document)
        except RemoteError as exc:
            return self._failed(Code.DEADLINE_EXCEEDED if exc.timeout else Code.UNAVAILABLE, str(exc))
        return self._answer(defined, value)

    async def close(self) -> None:
        """Close the connection to the server."""
        await self.remote.close()


def _paths(texts: list[str], base: Path) -> list[Path]:
    return [Path(t) if Path(t).is_absolute() else base / t for t in texts]


class OpaAdapter(Adapter[OpaParams]):
    """Rego policies (embedded regopy or a remote OPA server) deciding checks."""

    name = "opa"
    description = "Open Policy Agent: Rego decisions, embedded (regopy) or from an OPA server."
    templates = (TEMPLATE_NAME, "authorization")
    Params = OpaParams

    @classmethod
    def validate(cls, params: OpaParams) -> Iterator[FieldError]:
        """Cross-field checks: one mode, a well-formed decision path, sane durations."""
        embedded = params.policies or params.policy or params.policy_files or params.bundle_dir
        if params.url:
            problem = url_error(params.url)
            if problem:
                yield FieldError("url", problem)
            if embedded:
                yield FieldError("url", "give a remote url or embedded policies (policies, policyFiles,"
                                        " bundleDir), not both")
            if params.timeout.total_seconds() <= 0:
                yield FieldError("timeout", "must be positive")
        elif not embedded:
            yield FieldError("policies", "no policy: give policies, policyFiles or bundleDir (embedded),"
                                         " or url (a remote OPA server)")
        if params.decision and params.check_method:
            yield FieldError("checkMethod", "give decision or checkMethod, not both")
        if not _PATH.match(_decision(params)):
            yield FieldError("decision", f"not a decision path such as envoy/authz/allow: {params.decision!r}")
        if params.valid_use_count < 0:
            yield FieldError("validUseCount", "must not be negative")

    @classmethod
    def build(cls, params: OpaParams, context: BuildContext) -> Handler:
        """Compile the policy (embedded) or prepare the client (remote)."""
        if params.url:
            return RemoteOpaHandler(params, context)
        base = context.config_dir
        source = PolicySource(
            inline=[*params.policies, *params.policy],
            files=_paths(params.policy_files, base),
            data_files=_paths(params.data_files, base),
            bundle_dir=_paths([params.bundle_dir], base)[0] if params.bundle_dir else None,
            rego_v1=params.rego_version is RegoVersion.v1,
        )
        try:
            return EmbeddedOpaHandler(params, context, source)
        except CompileError as exc:
            raise ConfigError([ConfigIssue("", "", "", f"policy does not compile: {exc}")]) from None


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the ``opa`` adapter."""
    registry.add(OpaAdapter)


__all__ = ["EmbeddedOpaHandler", "OpaAdapter", "OpaParams", "RemoteOpaHandler", "decision_path"]
