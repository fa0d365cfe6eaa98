"""The ``opa`` adapter: Rego policies decide checks, embedded (regopy) or on a remote OPA server.

What it does
    Builds the policy's ``input`` from the instance (:mod:`adapters.opa._input`):
    OPA-Envoy's document for ``requestcontext`` instances, so policies written for
    ``opa-envoy-plugin`` run unchanged, and Mixer's ``{subject, action}`` for
    ``authorization`` instances. It evaluates the decision at ``decision`` (default
    ``envoy/authz/allow``), which may be a boolean or OPA-Envoy's object (``allowed``,
    ``headers``, ``request_headers_to_remove``, ``response_headers_to_add``,
    ``http_status``, ``body``, ``dynamic_metadata``), honoured through the check
    result (:mod:`adapters.opa._decision`). ext_authz answers ``dynamic_metadata``
    as the policy returns it, plus ``decision_id`` (a unique id in the form of a
    version 4 UUID, as OPA-Envoy's).

The input over ext_authz
    ``input.attributes`` is the CheckRequest's ``AttributeContext`` as OPA-Envoy
    builds it (protobuf's JSON mapping: ``metadataContext``, ``source.service``,
    ``request.time``, ``request.http.protocol`` as sent, unset fields absent, no
    ``request.http`` on TCP checks), for every path the policy can reach. When the
    policy compiles, its references to ``input`` are scanned
    (:mod:`adapters.opa._reach`): each is followed while its steps are constant
    (``.name``, ``["key"]``; ``import input.x.y as z`` aliases too), and the value at
    that path is handed over whole. ``input`` itself (``walk(input, …)``,
    ``json.marshal(input)``, ``input[k]``), ``with input… as``, ``import input`` and
    template strings hand over the whole document. Only those paths are read from
    the ``AttributeContext``, so cached decisions key on them (and on the instance's
    scalar fields, read when the host builds it): a policy reading
    ``input.attributes.request.http.headers["x-user"]`` shares its decisions across
    request ids and other headers. The path (``parsed_path``, ``parsed_query``) and, unless
    ``skipRequestBodyParse``, the headers and body ``parsed_body`` depends on are
    always read, since OPA-Envoy answers 400 when they do not parse. A remote OPA
    gets the whole document. Off ext_authz (the native API, ``policy check``) the
    input is built from the instance's fields, without what they do not carry.

    Embedded (the default): Rego is compiled and evaluated in-process with ``regopy``.
    Rego v1 syntax is required, as OPA 1.x requires it (``regoVersion: v0`` accepts
    v0). A background task polls the policy and data files every ``reloadInterval``;
    a change is compiled in a worker thread, off the request path, while the running
    policy keeps answering, then swapped in, and the decisions the host cached from
    the old policy are dropped. A policy that fails to compile leaves the last good
    one in force, with the reason logged and kept in the handler's ``last_error``.

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
    ``dryRun``          OPA-Envoy's ``dry-run``: denials are answered as allows (default false).
    ``skipRequestBodyParse``  OPA-Envoy's ``skip-request-body-parse``: no ``parsed_body`` /
                        ``truncated_body`` in the input (default false).

Fail mode
    An evaluation error, an undefined decision or a malformed decision object (an
    illegal type, a bad ``headers`` or ``request_headers_to_remove`` shape, a status
    Envoy does not know): CLOSED answers INTERNAL, which
    the ext_authz server answers as a gRPC error — as OPA-Envoy does — so Envoy's
    ``failure_mode_allow`` / ``status_on_error`` decide. (Remote) a server that is
    down, errs or is slower than ``timeout``: UNAVAILABLE / DEADLINE_EXCEEDED denials.
    OPEN allows instead; no such answer is cached. A policy denial is
    PERMISSION_DENIED, with the decision's ``http_status`` (403) and ``body`` (empty).
    A request whose path, query or body does not parse is denied with HTTP 400 and
    the reason as body, as OPA-Envoy answers it.

OPA-Envoy's options
    ``dryRun``: a denial is answered as an allow (with the decision's metadata,
    without its headers); errors stay errors. ``skipRequestBodyParse``: the input has
    no ``parsed_body`` / ``truncated_body``.

Cacheability
    Opt-in via ``validDuration``: the decision depends only on the input, built from
    the instance (over ext_authz: the request's paths the policy reaches), so the
    host's cache (keyed by the instance's reads) stays correct;
    a policy reading ``time.now_ns()`` or external data should not be cached longer
    than it may be stale. A reloaded policy file drops the cached decisions.

Never fails open
    A policy calling a function that is neither a built-in of the embedded engine
    (rego-cpp lacks ``net.cidr_*``, ``http.send``, ``json.match_schema`` ...) nor
    defined by the policy is refused when it loads (``policy validate`` too),
    naming the function and ``file:line:column``: rego-cpp would evaluate the call as
    undefined, so ``allow if not deny`` would allow. Use a remote OPA (``url``) for
    such policies. A built-in's error (``1 / 0``, ``to_number("x")``) is an evaluation
    error answered with the fail mode, never "undefined". Input strings are handed to
    the engine in the same spelling as the policy's literals and data, so strings
    with quotes, backslashes, control or non-ASCII characters compare as in OPA.

Known differences from OPA (rego-cpp)
    rego-cpp reports some errors OPA reports at compile time (conflicting rules,
    type errors) only when evaluated; they answer as evaluation errors (fail mode).
    Built-in errors are always strict (OPA's default makes them "undefined", which
    ``allow if not deny`` would turn into an allow). rego-cpp's ``count``,
    ``substring`` and other position-based string built-ins count a ``"``, ``\\`` or
    control character by its escaped spelling (``count("a\\"b")`` is 4, OPA: 3);
    comparisons are exact. ``with`` does not replace built-ins that take no argument
    (``opa.runtime``). ``print`` writes to the process's standard output.

Engine choice
    Measured on the same suite (``python -m tools.opa_conformance run --engine``),
    speed on the benchmark's OPA-Envoy policy, and maintenance:

    | engine | OPA suite | decision | maintenance |
    |---|---|---|---|
    | regopy 1.5.2 (rego-cpp), kept | 87.9% pass, 2 wrong, 12% refused at load | ~0.27 ms | Microsoft's rego-cpp project publishes it on PyPI, wheels for CPython 3.9+ |
    | regorus (Rust), PyPI fork gordon-to-regorus 0.13.0 | 66.7% pass (crypto/JWT built-ins missing), the strings family crashes the process | ~0.08 ms | no official PyPI package; several forks (gordon-to-, celine-, hobofan-, lakera-regorus) |
    | OPA's Go engine, opa-golib-python-bindings 0.4.4 | not runnable here | — | requires Python >= 3.14 (the project supports 3.11) |
    | OPA compiled to Wasm (opa-wasm, opa-py-wasm, opa-wasmtime on wasmtime) | not runnable here | — | policies must be compiled by the ``opa`` binary, which neither PyPI nor Debian provides |

    regopy passes the most of OPA's suite and never answers wrongly where it
    could refuse; regorus is faster but fails closed less often and crashed. A
    policy needing full OPA runs on a remote OPA server (``url``).

Limits Evaluation runs on the event loop: a policy taking milliseconds delays
    other requests for that long. ``parsed_body`` covers JSON, form and multipart
    bodies, not gRPC ones (they need the service's descriptors). The remote client's
    decision logs and bundle management are OPA's.
"""

from __future__ import annotations

import asyncio
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

from adapters.opa._builtins import unknown_calls
from adapters.opa._decision import DecisionError, to_result
from adapters.opa._engine import CompileError, EvalError, PolicySource, to_native
from adapters.opa._input import InputError, build_input
from adapters.opa._remote import RemoteError, RemoteOpa, url_error
from adapters.opa._syntax import DEPRECATED_BUILTINS
from adapters.opa._conformance import section as _conformance_section
from adapters.requestcontext import TEMPLATE_NAME

__doc__ = f"{__doc__}\n{_conformance_section()}\n"

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
    dry_run: bool = param(False, doc="Allow every request the policy denies (OPA-Envoy's dry-run); errors stay errors.")
    skip_request_body_parse: bool = param(False, doc="Leave parsed_body and truncated_body out of the input"
                                                     " (OPA-Envoy's skip-request-body-parse).")
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
        self.dry_run = params.dry_run
        self.skip_body = params.skip_request_body_parse
        self._last_failure = ""

    def _failed(self, code: Code, message: str) -> CheckResult:
        if message != self._last_failure:  # log each new failure once, not every request
            self._last_failure = message
            self.context.logger.warning("handler %s: %s", self.context.handler, message)
        if self.fail_mode is FailMode.OPEN:
            return CheckResult(Status(Code.OK, f"OPA: {message}; allowed (failMode OPEN)"), valid_duration=0.0)
        return CheckResult(Status(code, f"OPA: {message}"), valid_duration=0.0)

    #: The input paths the policy can reach (None: all of it; a remote policy is not seen).
    input_reach: frozenset[tuple[str, ...]] | None = None

    def _input(self, instance: Any) -> dict[str, Any] | CheckResult:
        """The input document, or (as OPA-Envoy answers a request it cannot parse) a 400 denial."""
        try:
            return build_input(instance, self.skip_body, self.input_reach)
        except InputError as exc:
            return self._unparsable(exc)

    @staticmethod
    def _unparsable(exc: InputError) -> CheckResult:
        message = f"OPA: the request cannot be parsed: {exc}"
        return CheckResult(Status(Code.PERMISSION_DENIED, message), valid_duration=0.0, http_status=400,
                           body=message)

    def _answer(self, defined: bool, value: Any) -> CheckResult:
        if not defined:
            return self._failed(Code.INTERNAL, f"decision {self.path} is undefined")
        try:
            result = to_result(value, self.path, self.valid_duration, self.valid_use_count)
        except DecisionError as exc:
            return self._failed(Code.INTERNAL, f"decision {self.path}: {exc}")
        if self.dry_run and not result.status.ok:  # OPA-Envoy's dry-run: a denial allows, nothing else changes
            return CheckResult(Status(Code.OK, f"OPA: dry-run, {result.status.message}"), result.valid_duration,
                               result.valid_use_count, metadata=result.metadata)
        return result


class EmbeddedOpaHandler(_OpaHandler):
    """Evaluates Rego in-process; a background task recompiles its files when they change."""

    def __init__(self, params: OpaParams, context: BuildContext, source: PolicySource) -> None:
        super().__init__(params, context)
        self.source = source
        self.compiled = source.compile(self.path)
        self.fingerprint = source.fingerprint()
        self.reload_interval = params.reload_interval.total_seconds()
        self._watch = self.reload_interval > 0 and bool(self.fingerprint)
        self._watcher: asyncio.Task[None] | None = None
        self._reloading = asyncio.Lock()
        self.last_error: str | None = None
        self.reloads = 0
        #: Set each time a file change has been handled (a new policy in force, or rejected).
        self.changed = asyncio.Event()

    async def start(self) -> None:
        """Start polling the policy and data files (every ``reloadInterval``) off the request path."""
        if self._watch and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(
                self._poll(), name=f"opa-reload-{self.context.handler}")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            try:
                await self.reload_if_changed()
            except Exception:  # never let the watcher die: the next round tries again
                self.context.logger.exception("handler %s: checking the policy files failed", self.context.handler)

    async def reload_if_changed(self) -> bool:
        """Recompile in a worker thread when a file changed; True when a new policy is in force.

        Checks keep being answered by the policy in force while the new one compiles; once
        it is swapped in, decisions the host cached from the old one are dropped.
        """
        async with self._reloading:
            fingerprint = await asyncio.to_thread(self.source.fingerprint)
            if fingerprint == self.fingerprint:
                return False
            self.fingerprint = fingerprint
            log = self.context.logger
            try:
                compiled = await asyncio.to_thread(self.source.compile, self.path)
            except CompileError as exc:
                self.last_error = str(exc)
                log.error("handler %s: policy change rejected, the last good policy stays in force: %s",
                          self.context.handler, exc)
                self.changed.set()
                return False
            self.compiled = compiled
            invalidate = self.context.extras.get("invalidate_decisions")
            if invalidate is not None:
                invalidate()
            self.last_error = None
            self.reloads += 1
            log.info("handler %s: policy reloaded (%d modules)", self.context.handler, len(compiled.modules))
            self.changed.set()
            return True

    def check(self, instance: Any) -> CheckResult:
        """Evaluate the decision for the instance's input (never compiles: see :meth:`reload_if_changed`)."""
        compiled = self.compiled  # one policy for the whole check, even if a reload swaps it meanwhile
        try:
            document = build_input(instance, self.skip_body, compiled.input_reach)
        except InputError as exc:
            return self._unparsable(exc)
        try:
            defined, value = compiled.evaluate(to_native(document))
        except EvalError as exc:
            return self._failed(Code.INTERNAL, f"decision {self.path}: {exc}")
        return self._answer(defined, value)

    async def close(self) -> None:
        """Stop the file watcher."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


class RemoteOpaHandler(_OpaHandler):
    """Asks a remote OPA server."""

    def __init__(self, params: OpaParams, context: BuildContext) -> None:
        super().__init__(params, context)
        self.remote = RemoteOpa(params.url, self.path, params.timeout.total_seconds(), params.token)

    async def check(self, instance: Any) -> CheckResult:
        """Ask the server for the decision on the instance's input."""
        document = self._input(instance)
        if isinstance(document, CheckResult):
            return document
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
        inline = [*params.policies, *params.policy]
        if inline:  # files are checked when the handler is built (their paths are relative to the config)
            from regopy import Interpreter

            field = "policies" if params.policies else "policy"
            modules = [(f"inline-{i}.rego", text) for i, text in enumerate(inline)]
            for call in unknown_calls(modules, Interpreter().is_builtin):
                if params.rego_version is RegoVersion.v1 and call.name in DEPRECATED_BUILTINS:
                    continue  # the v1 syntax check names them better when the handler is built
                yield FieldError(field, f"{call} (use a remote OPA server, url, for this policy)")

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
