"""The ``rbac`` adapter: Istio AuthorizationPolicy and Mixer ServiceRole/Binding checks.

What it does
    For ``requestcontext`` instances (see :mod:`adapters.requestcontext`) it enforces
    Istio ``security.istio.io`` ``AuthorizationPolicy`` documents with Istio's
    semantics: actions ALLOW, DENY, AUDIT and CUSTOM evaluated in Istio's order
    (CUSTOM, then DENY, then "no ALLOW policy → allow", then ALLOW, else deny);
    ``from`` / ``to`` / ``when`` with every field and its ``not`` twin; workload
    ``selector`` against ``destination.labels``; namespace scoping with a mesh-wide
    root namespace; the ``istio.io/dry-run`` annotation. See :mod:`adapters.rbac._policy`
    and :mod:`adapters.rbac._engine` for the rules, with the Istio sources they follow.

    For ``authorization`` instances it enforces Mixer's ``ServiceRole`` /
    ``ServiceRoleBinding`` (``rbac.istio.io/v1alpha1``) as Mixer's rbac adapter did
    (:mod:`adapters.rbac._mixer`).

    Every answer carries its reason in the status message (OK answers too, so
    ``policy check`` prints it): the deciding rule (``ns[foo]-policy[bar]-rule[0]``),
    or ``no ALLOW policy matched``, plus dry-run and audit notes.

Params
    ``rootNamespace``     namespace whose policies apply mesh-wide (default ``istio-system``).
    ``configDocuments``   read policies from the config's own documents (default true).
    ``policyFiles``       more YAML files or directories of policies (relative to the config
                          file); checked every ``reloadInterval`` (default ``1s``) while checks come
                          in and recompiled when they change (a change that does not compile is
                          logged, kept in ``last_error``, and the last good policies stay in force).
    ``providers``         CUSTOM provider name → ``{handler, failOpen, timeout}`` (or just the
                          handler name): the check handler of this config a matching CUSTOM
                          policy sends the request (the same instance) to.
    ``validDuration``     how long a decision may be cached (default ``60s``, Mixer's
                          ``cacheDuration``, which is accepted as a synonym); ``validUseCount``
                          (default 10000).
    ``configStoreUrl``    Mixer's param: empty or ``k8s://`` (documents of this config) or
                          ``fs://<dir>`` (a policy directory, like ``policyFiles``).

Fail mode
    Evaluation does no I/O and cannot fail. A CUSTOM provider that errs or exceeds its
    ``timeout`` denies with its status (UNAVAILABLE / DEADLINE_EXCEEDED), or allows
    when the provider's ``failOpen`` is set (Istio's ext_authz ``failOpen``); neither
    outcome is cached.

Cacheability
    Decisions carry ``validDuration`` / ``validUseCount``; a provider's answer caps
    them with its own. The decision depends only on the instance, whose reads key the
    host's cache.

Limits
    A bad policy (unknown field or ``when`` key, bad CIDR or port) rejects the whole
    config, keeping the last good one, where Istio's webhook would have rejected the
    document. A CUSTOM policy naming a provider that is not configured is kept and
    denies the requests its rules match (with a warning), as Istio does. Policies with
    ``targetRef(s)`` attach to gateways and are ignored with a warning. The
    ``experimental.envoy.filters.*`` keys and trust-domain aliases are not supported. ``namespaces`` and
    ``source.namespace`` fall back to the ``source.namespace`` attribute when the
    request has no peer principal (Istio would never match then). Policy files named
    in params are polled only while checks come in; a decision cached before a reload
    stays valid until it expires (``validDuration``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from policy import (
    Adapter,
    AdapterError,
    BuildContext,
    CheckResult,
    Code,
    ConfigError,
    ConfigIssue,
    FieldError,
    Handler,
    Status,
    hookimpl,
    param,
)

from adapters.rbac._engine import Engine
from adapters.rbac._mixer import MixerRbac, is_mixer_rbac
from adapters.rbac._policy import PolicyIssues, is_authorization_policy, parse_policy
from adapters.rbac._request import RequestView
from adapters.requestcontext import TEMPLATE_NAME, RequestContext


@dataclass(frozen=True)
class ProviderParams:
    """A CUSTOM provider: the check handler a matching CUSTOM policy delegates to."""

    handler: str = param(doc="Name of the check handler (of this config) that answers for the provider.")
    fail_open: bool = param(False, doc="Allow when the provider errs or times out (Istio's failOpen).")
    timeout: dt.timedelta = param(dt.timedelta(milliseconds=500), doc="Longest wait for the provider.")


@dataclass(frozen=True)
class RbacParams:
    """Params of the ``rbac`` adapter."""

    root_namespace: str = param("istio-system", doc="Policies in this namespace apply to every workload.")
    config_documents: bool = param(True, doc="Read policies from the config's own documents.")
    policy_files: list[str] = param(default_factory=list, doc="More policy files or directories.")
    providers: dict[str, ProviderParams | str] = param(
        default_factory=dict, doc="CUSTOM provider name → handler (or {handler, failOpen, timeout}).")
    valid_duration: dt.timedelta = param(dt.timedelta(seconds=60), doc="How long a decision may be cached.")
    valid_use_count: int = param(10000, doc="How many requests may reuse a cached decision.")
    cache_duration: dt.timedelta | None = param(None, doc="Mixer's name for validDuration.")
    config_store_url: str = param("", doc="Mixer's param: '', k8s:// (this config) or fs://<dir>.")
    reload_interval: dt.timedelta = param(
        dt.timedelta(seconds=1), doc="How often policyFiles are checked for changes (0s: never).")


def _providers(params: RbacParams) -> dict[str, ProviderParams]:
    return {name: ProviderParams(p) if isinstance(p, str) else p for name, p in params.providers.items()}


def _policy_paths(params: RbacParams, base: Path) -> list[Path]:
    """The files and directories named by ``policyFiles`` and an ``fs://`` configStoreUrl."""
    texts = list(params.policy_files)
    if params.config_store_url.startswith("fs://"):
        texts.append(params.config_store_url[len("fs://"):])
    return [Path(t) if Path(t).is_absolute() else base / t for t in texts]


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json")))
        else:
            out.append(path)
    return out


def _fingerprint(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for file in _files(paths):
        try:
            stat = file.stat()
            out.append((str(file), stat.st_mtime_ns, stat.st_size))
        except OSError:
            out.append((str(file), -1, -1))
    return tuple(out)


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_files(paths: list[Path], issues: list[ConfigIssue]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for file in _files(paths):
        try:
            for doc in yaml.load_all(file.read_text(encoding="utf-8"), Loader=_YAML_LOADER):
                if isinstance(doc, dict):
                    docs.append({**doc, "_source": str(file)})
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            issues.append(ConfigIssue("", "", "policyFiles", f"{file}: cannot read policies: {exc}"))
    return docs


def load_policies(params: RbacParams, context: BuildContext) -> tuple[Engine, MixerRbac]:
    """Read and compile every policy the params name; raise ConfigError naming every bad document."""
    problems: list[ConfigIssue] = []
    documents: list[dict[str, Any]] = []
    if params.config_documents:
        documents.extend(d for d in context.documents if isinstance(d, dict))
    documents.extend(_read_files(_policy_paths(params, context.config_dir), problems))
    issues = PolicyIssues()
    policies = []
    ordinal = 0
    for doc in documents:
        if is_authorization_policy(doc):
            policy = parse_policy(doc, ordinal, issues, context.logger)
            if policy is not None:
                policies.append(policy)
                ordinal += max(len(policy.rules), 1)
    mixer = MixerRbac([d for d in documents if is_mixer_rbac(d)], issues)
    providers = _providers(params)
    for policy in policies:
        if policy.action == "CUSTOM" and policy.provider not in providers:
            # Istio keeps serving and denies the requests the policy matches (getBadCustomDenyRules).
            context.logger.warning(
                "%s: AuthorizationPolicy/%s.%s: spec.provider.name: provider %r is not configured in handler"
                " %s's providers (configured: %s); the requests its rules match are denied", policy.source,
                policy.name, policy.namespace, policy.provider, context.handler, ", ".join(sorted(providers)) or "none")
    for file, document, at, message in issues.warnings:
        context.logger.warning("%s: %s: %s: %s", file, document, at, message)
    # The host reports issues at the handler's document; name the policy's own file and field.
    problems.extend(ConfigIssue("", "", "", f"{file}: {document}: {at}: {message}")
                    for file, document, at, message in issues.errors)
    if problems:
        raise ConfigError(problems)
    return Engine(policies, params.root_namespace), mixer


class RbacHandler(Handler):
    """Answers checks from compiled policies; sync because evaluation is in memory."""

    def __init__(self, engine: Engine, mixer: MixerRbac, params: RbacParams, context: BuildContext) -> None:
        self.engine = engine
        self.mixer = mixer
        self.context = context
        self.params = params
        self._paths = _policy_paths(params, context.config_dir)
        self.fingerprint = _fingerprint(self._paths)
        self.reload_interval = params.reload_interval.total_seconds()
        self._watch = bool(self._paths) and self.reload_interval > 0
        self._next_poll = context.clock.monotonic() + self.reload_interval
        self.last_error: str | None = None
        self.reloads = 0
        duration = params.cache_duration if params.cache_duration is not None else params.valid_duration
        self.valid_duration = duration.total_seconds()
        self.valid_use_count = params.valid_use_count
        self.providers = _providers(params)
        self._results: dict[tuple[bool, str], CheckResult] = {}

    def reload_if_changed(self) -> bool:
        """Recompile when a policy file changed; True when new policies are in force.

        Policies that fail to compile leave the last good ones in force; the reason is
        logged and kept in ``last_error``.
        """
        fingerprint = _fingerprint(self._paths)
        if fingerprint == self.fingerprint:
            return False
        self.fingerprint = fingerprint
        try:
            engine, mixer = load_policies(self.params, self.context)
        except ConfigError as exc:
            self.last_error = "; ".join(issue.message for issue in exc.issues)
            self.context.logger.error("handler %s: policy change rejected, the last good policies stay in"
                                      " force: %s", self.context.handler, self.last_error)
            return False
        engine.stats.update(self.engine.stats)
        self.engine, self.mixer = engine, mixer
        self._results.clear()
        self.last_error = None
        self.reloads += 1
        self.context.logger.info("handler %s: policies reloaded (%d AuthorizationPolicies, %d ServiceRoles)",
                                 self.context.handler, len(engine.policies), mixer.count)
        return True

    def _poll(self) -> None:
        now = self.context.clock.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + self.reload_interval
            self.reload_if_changed()

    @property
    def stats(self) -> Mapping[str, int]:
        """Decision counters (allowed, denied, audited, dry-run shadow results, CUSTOM outcomes)."""
        return self.engine.stats

    def _result(self, allowed: bool, reason: str, metadata: Mapping[str, Any] | None = None) -> CheckResult:
        if not metadata:
            # Results are immutable: one per (outcome, reason) serves every request that gets it.
            cached = self._results.get((allowed, reason))
            if cached is not None:
                return cached
        status = Status(Code.OK, reason) if allowed else Status(Code.PERMISSION_DENIED, reason)
        result = CheckResult(status, self.valid_duration, self.valid_use_count, metadata=metadata or {})
        if not metadata and len(self._results) < 65536:
            self._results[(allowed, reason)] = result
        return result

    def check(self, instance: Any) -> CheckResult:
        """Decide one request (an AuthorizationPolicy or a ServiceRole check, by instance type)."""
        if self._watch:
            self._poll()
        if type(instance) is not RequestContext:
            allowed, reason = self.mixer.decide(instance)
            return self._result(allowed, reason)
        request = RequestView(instance)
        engine = self.engine
        groups = engine.groups_for(request)
        if engine.has_custom:
            # Without providers every matching CUSTOM rule names a provider that is not configured.
            for rule in engine.custom(groups, request):
                return self._unconfigured(rule)
        verdict = engine.decide(groups, request)
        return self._result(verdict.allowed, verdict.reason, verdict.metadata)

    def _unconfigured(self, rule: Any) -> CheckResult:
        self.engine.stats["custom_denied"] += 1
        return self._result(False, f"RBAC: access denied by {rule.name}: CUSTOM provider"
                                   f" {rule.policy.provider!r} is not configured")


class CustomRbacHandler(RbacHandler):
    """An RbacHandler with CUSTOM policies: asynchronous, since a provider may do I/O."""

    async def check(self, instance: Any) -> CheckResult:  # type: ignore[override]
        """Ask the CUSTOM provider first when a CUSTOM policy matches, then decide as usual."""
        if type(instance) is not RequestContext:
            return RbacHandler.check(self, instance)
        if self._watch:
            self._poll()
        request = RequestView(instance)
        engine = self.engine
        groups = engine.groups_for(request)
        result: CheckResult | None = None
        answers: list[CheckResult] = []
        for rule in engine.custom(groups, request) if engine.has_custom else ():
            provider = rule.policy.provider or ""
            if provider not in self.providers:
                return self._unconfigured(rule)
            provided = await self._ask(provider, rule.name, instance)
            if not provided.status.ok:
                engine.stats["custom_denied"] += 1
                return provided
            engine.stats["custom_allowed"] += 1
            answers.append(provided)
        verdict = engine.decide(groups, request)
        result = self._result(verdict.allowed, verdict.reason, verdict.metadata)
        for provided in answers:
            result = _merge(result, provided)
        return result

    async def _ask(self, provider: str, rule: str, instance: Any) -> CheckResult:
        spec = self.providers[provider]
        delegate = _delegate(self.context, spec.handler)
        try:
            if delegate is None:
                raise AdapterError(Code.UNAVAILABLE, f"handler {spec.handler!r} is not available")
            answer = delegate.check(instance)
            if inspect.isawaitable(answer):
                answer = await asyncio.wait_for(answer, spec.timeout.total_seconds())
            if not isinstance(answer, CheckResult):
                raise AdapterError(Code.INTERNAL, f"handler {spec.handler!r} answered {type(answer).__name__}")
        except Exception as exc:  # the provider failed: its failOpen decides, never cached
            code = exc.code if isinstance(exc, AdapterError) else (
                Code.DEADLINE_EXCEEDED if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) else Code.UNAVAILABLE)
            detail = exc.message if isinstance(exc, AdapterError) else (str(exc) or type(exc).__name__)
            if spec.fail_open:
                return CheckResult(Status(Code.OK, f"CUSTOM provider {provider!r} for {rule} failed ({detail});"
                                                   " allowed by failOpen"), valid_duration=0.0)
            return CheckResult(Status(code, f"RBAC: access denied: CUSTOM provider {provider!r} for {rule}"
                                            f" failed: {detail}"), valid_duration=0.0)
        if answer.status.ok:
            return CheckResult(Status(Code.OK, f"CUSTOM provider {provider!r} allowed {rule}"),
                               answer.valid_duration, answer.valid_use_count, answer.request_headers,
                               answer.response_headers, metadata=answer.metadata)
        message = answer.status.message or answer.status.code.name
        return CheckResult(Status(answer.status.code, f"RBAC: access denied by CUSTOM provider {provider!r}"
                                                      f" for {rule}: {message}"),
                           answer.valid_duration, answer.valid_use_count, answer.request_headers,
                           answer.response_headers, answer.http_status, answer.body, answer.metadata)


def _delegate(context: BuildContext, name: str) -> Handler | None:
    # The host fills context.handlers with the handlers named by handler_references().
    return context.handlers.get(name)


def _merge(result: CheckResult, provided: CheckResult) -> CheckResult:
    """The final answer after a CUSTOM provider allowed: its headers apply, its cacheability caps ours."""
    durations = (result.valid_duration, provided.valid_duration)
    duration = None if None in durations else min(d for d in durations if d is not None)
    uses = [u for u in (result.valid_use_count, provided.valid_use_count) if u is not None]
    status = result.status
    if status.ok:
        status = Status(Code.OK, f"{status.message} ({provided.status.message})")
    if not status.ok:
        return result
    return CheckResult(status, duration, min(uses) if uses else None,
                       (*result.request_headers, *provided.request_headers),
                       (*result.response_headers, *provided.response_headers), None, None,
                       {**provided.metadata, **result.metadata})


class RbacAdapter(Adapter[RbacParams]):
    """Istio AuthorizationPolicy (requestcontext) and Mixer ServiceRole/Binding (authorization) checks."""

    name = "rbac"
    description = "Istio AuthorizationPolicy and Mixer ServiceRole/ServiceRoleBinding authorization."
    templates = (TEMPLATE_NAME, "authorization")
    Params = RbacParams
    document_kinds = ("AuthorizationPolicy", "ServiceRole", "ServiceRoleBinding")

    @classmethod
    def validate(cls, params: RbacParams) -> Iterator[FieldError]:
        """Cross-field checks: names present, a usable config store URL, sane durations."""
        if not params.root_namespace:
            yield FieldError("rootNamespace", "must not be empty")
        for name, provider in _providers(params).items():
            if not name:
                yield FieldError("providers", "a provider needs a name")
            if not provider.handler:
                yield FieldError(f"providers[{name!r}].handler", "must name a check handler")
            if provider.timeout.total_seconds() <= 0:
                yield FieldError(f"providers[{name!r}].timeout", "must be positive")
        url = params.config_store_url
        if url and not (url == "k8s://" or url.startswith("fs://")):
            yield FieldError("configStoreUrl", f"expected '', 'k8s://' or 'fs://<dir>', got {url!r}")
        if params.valid_use_count < 0:
            yield FieldError("validUseCount", "must not be negative")

    @classmethod
    def handler_references(cls, params: RbacParams) -> list[str]:
        """The handlers CUSTOM providers delegate to (the host builds them even if no rule uses them)."""
        return sorted({p.handler for p in _providers(params).values() if p.handler})

    @classmethod
    def build(cls, params: RbacParams, context: BuildContext) -> Handler:
        """Read and compile the policies; raise ConfigError naming every bad document."""
        engine, mixer = load_policies(params, context)
        # With CUSTOM providers the handler awaits them; without, it answers synchronously.
        handler_class = CustomRbacHandler if params.providers else RbacHandler
        context.logger.info("handler %s: %d AuthorizationPolicies, %d ServiceRoles", context.handler,
                            len(engine.policies), mixer.count)
        return handler_class(engine, mixer, params, context)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the ``rbac`` adapter."""
    registry.add(RbacAdapter)


__all__ = ["CustomRbacHandler", "RbacAdapter", "RbacHandler", "RbacParams"]
