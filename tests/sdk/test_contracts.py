"""The declared parts of the plugin contract: typed context fields, protocols, one error tree."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest

from policy import (
    AdapterRegistrar,
    BuildContext,
    ConfigError,
    Handler,
    ParamsError,
    PluginError,
    PolicyError,
    RateLimitHandler,
    TemplateRegistrar,
)
from policy.attributes import VocabularyError
from policy.expr import ExpressionError
from policy.runtime.plugins import build_plugin_host
from policy.runtime.registry import AdapterRegistry, TemplateRegistry
from policy.servers.envoy_attributes import TranslationError
from policy.servers.native_codec import CodecError


@pytest.mark.parametrize("error", [ParamsError, VocabularyError, ExpressionError, TranslationError, CodecError])
def test_every_error_joins_the_policy_error_tree_and_stays_a_value_error(error: type[Exception]) -> None:
    assert issubclass(error, PolicyError)
    assert issubclass(error, ValueError), "code catching ValueError keeps working"


def test_plugin_error_carries_the_plugin_and_its_distribution() -> None:
    error = PluginError("boom", plugin="acme", distribution="acme-policy")
    assert (error.plugin, error.distribution, str(error)) == ("acme", "acme-policy", "boom")
    assert PluginError("plain").plugin is None
    assert issubclass(ConfigError, PolicyError)


def test_build_context_declares_documents_and_metrics_registry_and_keeps_the_extras_keys() -> None:
    registry = object()
    documents = [{"kind": "AuthorizationPolicy", "_source": "a.yaml"}]
    typed = BuildContext(handler="h", documents=documents, metrics_registry=registry)  # type: ignore[arg-type]
    assert typed.extras["documents"] is documents and typed.extras["metrics_registry"] is registry
    legacy = BuildContext(handler="h", extras={"documents": documents, "metrics_registry": registry})
    assert legacy.documents is documents and legacy.metrics_registry is registry
    assert BuildContext(handler="h").documents == () and BuildContext(handler="h").metrics_registry is None


def test_the_host_fills_the_typed_fields(tmp_path: Any) -> None:
    seen: list[BuildContext] = []

    from policy import Adapter, CheckResult, hookimpl

    class Probe(Adapter[Any]):
        name = "probe"
        templates = ("checknothing",)
        document_kinds = ("ProbeDocument",)

        @classmethod
        def build(cls, params: Any, context: BuildContext) -> Handler:
            seen.append(context)
            handler = Handler()
            handler.check = lambda instance: CheckResult.allow()  # type: ignore[method-assign]
            return handler

    class Plugin:
        __name__ = "probe-plugin"

        @hookimpl
        def policy_register_adapters(self, registry: AdapterRegistrar) -> None:
            registry.add(Probe)

    (tmp_path / "policy.yaml").write_text(
        "handlers: [{name: p, adapter: probe}]\n"
        "instances: [{name: i, template: checknothing}]\n"
        "rules: [{name: r, actions: [{handler: p, instances: [i]}]}]\n"
        "---\napiVersion: example.com/v1\nkind: ProbeDocument\nmetadata: {name: d}\nspec: {x: 1}\n")
    from policy.config import load_config

    host = build_plugin_host(autoload=False, extra_plugins=[Plugin()])
    load_config(tmp_path, host)
    (context,) = seen
    assert [d["kind"] for d in context.documents] == ["ProbeDocument"]
    assert context.extras["documents"] == list(context.documents)


def test_base_handler_lifecycle_methods_work_awaited_or_not() -> None:
    handler = Handler()
    asyncio.run(_await_both(handler))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        handler.start()  # not awaited: no "coroutine was never awaited" warning
        handler.close()


async def _await_both(handler: Handler) -> None:
    await handler.start()  # type: ignore[misc]
    await handler.close()  # type: ignore[misc]


def test_registries_and_rate_limit_handlers_meet_the_published_protocols() -> None:
    adapters: AdapterRegistrar = AdapterRegistry()
    templates: TemplateRegistrar = TemplateRegistry()
    assert adapters is not None and templates is not None  # mypy checks the assignments
    from adapters.memquota import MemQuotaAdapter as MemQuota

    from policy.sdk import parse_params
    from policy.testing import FakeClock

    params = parse_params(MemQuota.Params, {"quotas": [{"name": "q", "maxAmount": 1, "validDuration": "1s"}]})
    handler = MemQuota.build(params, BuildContext(handler="m", clock=FakeClock().clock))
    assert isinstance(handler, RateLimitHandler)
    assert not isinstance(Handler(), RateLimitHandler)
