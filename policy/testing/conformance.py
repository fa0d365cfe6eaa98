"""An adapter conformance check any adapter can run against itself.

::

    async def test_conformance(tmp_path):
        await check_adapter_conformance(
            MyAdapter,
            valid_params=[{"allowedUsers": ["alice"]}],
            invalid_params=[{"allowedUsers": "alice"}, {"validDuration": "soon"}],
            plugins=[my_plugin_module],
        )

What it checks, each as a named step (:data:`STEPS`):

``declaration``  ``name``, one-line ``description``, known ``templates``, a dataclass ``Params``.
``docs``         ``describe_params`` gives every field (nested ones too) a non-empty doc.
``params``       each valid example parses and validates cleanly; each invalid one fails
                 with :class:`~policy.ParamsError` / FieldErrors whose ``field`` names a
                 declared param (field-scoped errors).
``calls``        a built, started handler answers one instance of each template: checks a
                 CheckResult that declares cacheability (``valid_duration`` not None), quotas a
                 QuotaResult granting 0..amount, reports None; plain (non-async) methods
                 return within 100 ms, since they run on the event loop (measured on the
                 ``clock`` given, the monotonic clock by default; a call over budget is timed
                 twice more and only one over budget every time is a problem, so a busy
                 machine's scheduling delays are not blamed on the adapter).
``close``        after ``close()`` no asyncio task, thread, file or socket the handler made is
                 left, and a second ``close()`` does not raise.
``dispatch``     served by a real :class:`~policy.runtime.service.PolicyService` from a config,
                 the handler does not crash on an instance whose fields are absent, and a
                 handler that raises becomes an INTERNAL status naming the handler (checks and
                 quotas; reports count the failure and never fail a check).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.sdk import (
    Adapter,
    AdapterError,
    BuildContext,
    CheckResult,
    Clock,
    FieldError,
    ParamsError,
    PluginError,
    QuotaArgs,
    QuotaResult,
    Template,
    ValueMap,
    Variety,
    describe_params,
    hookimpl,
    parse_params,
)
from policy.testing._dispatch import HANDLER, run_dispatch
from policy.testing._resources import ResourceSnapshot, leaks_after

STEPS = ("declaration", "docs", "params", "calls", "close", "dispatch")
#: A plain (non-async) handler method taking longer than this blocks the event loop.
SYNC_BUDGET = 0.1
#: How often a plain method is timed before it is called blocking (every time over budget).
SYNC_TRIES = 3


@dataclass
class ConformanceReport:
    """What :func:`check_adapter_conformance` found: problems by step."""

    adapter: type[Adapter]
    problems: list[tuple[str, str]] = field(default_factory=list)
    steps_run: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no step found a problem."""
        return not self.problems

    def of(self, step: str) -> list[str]:
        """The problems one step found."""
        return [message for s, message in self.problems if s == step]

    def __str__(self) -> str:
        if self.ok:
            return f"adapter {self.adapter.name!r} conforms ({', '.join(self.steps_run)})"
        lines = "\n".join(f"  [{step}] {message}" for step, message in self.problems)
        return f"adapter {self.adapter.name!r} ({self.adapter.__qualname__}) does not conform:\n{lines}"

    def raise_if_failed(self) -> None:
        """Raise AssertionError listing every problem, if there is one."""
        if not self.ok:
            raise AssertionError(str(self))


class _Plugin:
    """Registers the adapter under test when the caller gave no plugin of its own."""

    def __init__(self, adapter: type[Adapter]) -> None:
        self.adapter = adapter

    @hookimpl
    def policy_register_adapters(self, registry: Any) -> None:
        """Register the adapter under test."""
        registry.add(self.adapter)


def _param_roots(adapter: type[Adapter]) -> set[str]:
    return {re.split(r"[.\[]", row["name"], maxsplit=1)[0] for row in describe_params(adapter.Params)}


def _default_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {key: {} if isinstance(kind, (ValueMap, Mapping)) else None for key, kind in spec.items()}


def sample_instance(template: Template, name: str = "conformance") -> Any:
    """An instance of ``template`` whose fields are all absent (None, empty maps)."""
    return template.factory(name=name, **_default_fields(template.fields))


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class _Checker:
    def __init__(self, adapter: type[Adapter[Any]], report: ConformanceReport, plugins: Sequence[Any],
                 instances: Mapping[str, Any], config_dir: Path, clock: Clock) -> None:
        self.adapter, self.report, self.instances, self.config_dir = adapter, report, instances, config_dir
        self.clock = clock
        from adapters import BUILTIN_PLUGINS
        from policy.runtime.plugins import build_plugin_host

        # Built-in plugins are always registered; registering them again is an error.
        extras = [p for p in plugins if getattr(p, "__name__", None) not in BUILTIN_PLUGINS]
        if not plugins:
            builtin = build_plugin_host(autoload=False).adapters.get(adapter.name)
            extras = [] if builtin is not None and builtin.adapter is adapter else [_Plugin(adapter)]
        try:
            self.host = build_plugin_host(autoload=False, extra_plugins=extras)
        except PluginError as exc:
            self.problem("declaration", f"a plugin host rejects it: {exc}")
            self.host = build_plugin_host(autoload=False)

    def problem(self, step: str, message: str) -> None:
        self.report.problems.append((step, message))

    # --- static steps ---------------------------------------------------------

    def declaration(self) -> None:
        a = self.adapter
        if not isinstance(a.name, str) or not re.fullmatch(r"[a-z][a-z0-9_.-]*", a.name or ""):
            self.problem("declaration", f"name {a.name!r} should be a lowercase identifier such as 'my-adapter'")
        if not a.description or "\n" in a.description:
            self.problem("declaration", "description should be one non-empty line")
        if not a.templates:
            self.problem("declaration", "templates is empty")
        for name in a.templates:
            if self.host.templates.get(name) is None:
                self.problem("declaration", f"template {name!r} is not registered (pass the plugin that "
                                            "registers it as plugins=[...])")
        registered = self.host.adapters.get(a.name)
        if registered is None or registered.adapter is not a:
            self.problem("declaration", "the plugins given do not register this adapter class")
        if not dataclasses.is_dataclass(a.Params):
            self.problem("declaration", f"Params {a.Params!r} is not a dataclass")

    def docs(self) -> None:
        try:
            rows = describe_params(self.adapter.Params)
        except Exception as exc:
            self.problem("docs", f"describe_params failed: {type(exc).__name__}: {exc}")
            return
        for row in rows:
            if not row["doc"].strip():
                self.problem("docs", f"param {row['name']!r} has no doc (declare it with param(..., doc=...))")

    def parse(self, raw: Mapping[str, Any]) -> tuple[Any, list[FieldError]]:
        try:
            params = parse_params(self.adapter.Params, raw)
        except ParamsError as exc:
            return None, list(exc.errors)
        errors = list(self.adapter.validate(params))
        return params, errors

    def params(self, valid: Sequence[Mapping[str, Any]], invalid: Sequence[Mapping[str, Any]]) -> list[Any]:
        parsed = []
        for raw in valid:
            params, errors = self.parse(raw)
            if errors:
                self.problem("params", f"valid params {dict(raw)!r} were rejected: {'; '.join(map(str, errors))}")
            else:
                parsed.append(params)
        roots = _param_roots(self.adapter)
        if not invalid and roots:
            self.problem("params", "give at least one invalid_params example to show field-scoped errors")
        for raw in invalid:
            _, errors = self.parse(raw)
            if not errors:
                self.problem("params", f"invalid params {dict(raw)!r} were accepted")
            for error in errors:
                if not isinstance(error, FieldError):
                    self.problem("params", f"validate() yielded {error!r}, not a FieldError")
                elif not error.field or re.split(r"[.\[]", error.field, maxsplit=1)[0] not in roots | set(map(str, raw)):
                    self.problem("params", f"error {str(error)!r} for {dict(raw)!r} names no declared param "
                                           f"(field {error.field!r}; params: {', '.join(sorted(roots))})")
                elif not error.message:
                    self.problem("params", f"error for field {error.field!r} has no message")
        return parsed

    # --- the handler itself ------------------------------------------------------

    async def call(self, handler: Any, template: Template) -> None:
        instance = self.instances.get(template.name) or sample_instance(template)
        method = {Variety.CHECK: "check", Variety.QUOTA: "quota", Variety.REPORT: "report"}[template.variety]
        args: tuple[Any, ...] = {Variety.CHECK: (instance,), Variety.QUOTA: (instance, QuotaArgs("conformance", 1)),
                                 Variety.REPORT: ([instance],)}[template.variety]
        what = f"{method}({template.name} instance)"
        fn = getattr(handler, method)
        plain = not inspect.iscoroutinefunction(fn)
        took = float("inf")
        for _ in range(SYNC_TRIES if plain else 1):
            started = self.clock.monotonic()
            try:
                result = fn(*args)
                took = min(took, self.clock.monotonic() - started)
                result = await _maybe_await(result)
            except AdapterError:
                return  # a deliberate status: fine
            except Exception as exc:
                self.problem("calls", f"{what} raised {type(exc).__name__}: {exc}"
                                      " (raise AdapterError to answer a status)")
                return
            if took <= SYNC_BUDGET:
                break
        if plain and took > SYNC_BUDGET:
            self.problem("calls", f"{what} is a plain method and took {took:.3f}s (each of {SYNC_TRIES} times):"
                                  " it blocks the event loop; make it async def")
        if template.variety is Variety.CHECK:
            if not isinstance(result, CheckResult):
                self.problem("calls", f"{what} returned {type(result).__name__}, not CheckResult")
            elif result.valid_duration is None:
                self.problem("calls", f"{what} returned a result with valid_duration=None: declare cacheability "
                                      "(0 for 'do not cache')")
        elif template.variety is Variety.QUOTA:
            if not isinstance(result, QuotaResult):
                self.problem("calls", f"{what} returned {type(result).__name__}, not QuotaResult")
            elif not 0 <= result.granted_amount <= 1:
                self.problem("calls", f"{what} granted {result.granted_amount} of 1")
        elif result is not None:
            self.problem("calls", f"{what} returned {result!r}; report returns None")

    async def lifecycle(self, params: Any) -> None:
        before = ResourceSnapshot.take()
        context = BuildContext(handler=HANDLER, config_dir=self.config_dir, clock=self.clock)
        try:
            handler = self.adapter.build(params, context)
            await _maybe_await(handler.start())
        except Exception as exc:
            self.problem("calls", f"build/start with {params!r} raised {type(exc).__name__}: {exc}")
            return
        try:
            for name in self.adapter.templates:
                template = self.host.templates.get(name)
                if template is not None:
                    await self.call(handler, template)
        finally:
            try:
                await _maybe_await(handler.close())
            except Exception as exc:
                self.problem("close", f"close() raised {type(exc).__name__}: {exc}")
        for leak in await leaks_after(before):
            self.problem("close", f"after close(): {leak}")
        try:
            await _maybe_await(handler.close())
        except Exception as exc:
            self.problem("close", f"a second close() raised {type(exc).__name__}: {exc}")

    # --- a real dispatch ----------------------------------------------------------

    async def dispatch(self, raw: Mapping[str, Any]) -> None:
        for step, message in await run_dispatch(self.host, self.adapter, raw, self.config_dir):
            self.problem(step, message)


async def check_adapter_conformance(
    adapter: type[Adapter],
    valid_params: Mapping[str, Any] | Iterable[Mapping[str, Any]] = ({},),
    invalid_params: Iterable[Mapping[str, Any]] = (),
    *,
    plugins: Sequence[Any] = (),
    instances: Mapping[str, Any] | None = None,
    config_dir: str | Path | None = None,
    raise_on_failure: bool = True,
    clock: Clock | None = None,
) -> ConformanceReport:
    """Check that ``adapter`` honours the adapter contract; raise AssertionError listing every problem.

    :param adapter: the Adapter subclass.
    :param valid_params: raw params (as in YAML) that must be accepted, one mapping or several;
        the first is also served through a real config.
    :param invalid_params: raw params that must be rejected with field-scoped errors.
    :param plugins: the plugin module(s) registering the adapter (and any template it adds);
        default: a plugin registering just ``adapter``.
    :param instances: template name → the instance to call the handler with (default: one
        whose fields are all absent).
    :param config_dir: the directory relative paths in params are resolved against (a
        temporary one by default; the dispatch step writes, then removes, a config file there).
    :param raise_on_failure: False to get the report back instead of an AssertionError.
    :param clock: the clock handlers are built with and plain calls are timed on (a
        :class:`~policy.testing.FakeClock`'s ``.clock`` in tests of the check itself);
        default: the real one.
    """
    if isinstance(valid_params, Mapping):
        valid_params = [valid_params]
    valid, invalid = [dict(v) for v in valid_params], [dict(v) for v in invalid_params]
    report = ConformanceReport(adapter)
    made = config_dir is None
    directory = Path(tempfile.mkdtemp(prefix="policy-conformance-")) if made else Path(config_dir)
    try:
        checker = _Checker(adapter, report, plugins, instances or {}, directory, clock or Clock())
        checker.declaration()
        checker.docs()
        report.steps_run += ["declaration", "docs"]
        parsed = checker.params(valid, invalid)
        report.steps_run.append("params")
        for params in parsed:
            await checker.lifecycle(params)
        report.steps_run += ["calls", "close"]
        if parsed and not report.of("declaration"):
            await checker.dispatch(valid[0])
            report.steps_run.append("dispatch")
    finally:
        if made:
            shutil.rmtree(directory, ignore_errors=True)
    if raise_on_failure:
        report.raise_if_failed()
    return report


__all__ = ["STEPS", "ConformanceReport", "check_adapter_conformance", "sample_instance"]

