"""The plugin host calls hooks through pluggy: wrappers run, pluggy's order holds, errors name the plugin."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from policy import Adapter, PluginError, hookimpl
from policy.runtime.plugins import build_plugin_host
from policy.runtime.registry import AdapterRegistry, Origin


class Named:
    """A plugin object with a name, as extra_plugins takes it."""

    def __init__(self, name: str) -> None:
        self.__name__ = name


class Dupe(Adapter[Any]):
    name = "denier"
    description = "a second denier"
    templates = ("checknothing",)


def test_a_wrapper_implementation_wraps_the_others():
    calls: list[str] = []

    class Wrapper(Named):
        @hookimpl(wrapper=True)
        def policy_register_adapters(self, registry: Any) -> Generator[None, Any, Any]:
            calls.append("before")
            result = yield
            calls.append(f"after {'denier' in registry._adapters}")
            return result

    build_plugin_host(autoload=False, extra_plugins=[Wrapper("wrap")])
    assert calls == ["before", "after True"]


def test_implementations_run_in_pluggy_order_last_registered_first():
    order: list[str] = []

    def plugin(name: str, **opts: Any) -> Named:
        class P(Named):
            @hookimpl(**opts)
            def policy_startup(self) -> None:
                order.append(name)
        return P(name)

    host = build_plugin_host(autoload=False, extra_plugins=[
        plugin("first"), plugin("second"), plugin("early", tryfirst=True), plugin("late", trylast=True)])
    import asyncio
    asyncio.run(host.startup(service=None))  # type: ignore[arg-type]
    assert order == ["early", "second", "first", "late"]


def test_a_duplicate_adapter_name_blames_the_third_party_plugin_not_the_builtin():
    class DupePlugin(Named):
        @hookimpl
        def policy_register_adapters(self, registry: Any) -> None:
            registry.add(Dupe)

    with pytest.raises(PluginError) as err:
        build_plugin_host(autoload=False, extra_plugins=[DupePlugin("dupe-plugin")])
    assert err.value.plugin == "dupe-plugin"
    assert "is registered twice" in str(err.value)
    assert str(err.value).endswith("by plugin 'dupe-plugin'")


def test_registry_blame_does_not_depend_on_who_ran_first():
    registry = AdapterRegistry()
    registry.bound(Origin("acme", "acme-dist", "1")).add(Dupe)
    with pytest.raises(PluginError) as err:
        registry.bound(Origin("denier", "sidecar-policy", "0.1", builtin=True)).add(Dupe)
    assert (err.value.plugin, err.value.distribution) == ("acme", "acme-dist")


def test_a_raising_hook_is_a_plugin_error_carrying_the_plugin():
    class Broken(Named):
        @hookimpl
        def policy_register_templates(self, registry: Any) -> None:
            raise KeyError("oops")

    with pytest.raises(PluginError, match="broken.*policy_register_templates raised KeyError") as err:
        build_plugin_host(autoload=False, extra_plugins=[Broken("broken")])
    assert err.value.plugin == "broken"


async def test_a_raising_coroutine_hook_names_its_plugin():
    class Late(Named):
        @hookimpl
        async def policy_shutdown(self, service: Any) -> None:
            raise RuntimeError("cannot stop")

    host = build_plugin_host(autoload=False, extra_plugins=[Late("late-plugin")])
    with pytest.raises(PluginError, match="late-plugin.*RuntimeError: cannot stop") as err:
        await host.shutdown(service=None)  # type: ignore[arg-type]
    assert err.value.plugin == "late-plugin"


def test_builtin_origins_carry_the_distribution():
    host = build_plugin_host(autoload=False)
    origin = host.origin_of("denier")
    assert origin is not None and origin.builtin and origin.distribution == "sidecar-policy"


def test_one_function_registered_by_two_plugins_is_attributed_to_the_right_one():
    def shared(registry: Any) -> None:
        registry.add(Dupe)

    first, second = Named("first-plugin"), Named("second-plugin")
    for plugin in (first, second):
        plugin.policy_register_adapters = hookimpl(shared)  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as err:
        build_plugin_host(autoload=False, extra_plugins=[first, second])
    # pluggy calls the last registered first: second-plugin takes the name, first-plugin repeats it
    # (the built-ins, registered before both, run last).
    assert err.value.plugin == "first-plugin"
    assert str(err.value).endswith("registered twice: by plugin 'second-plugin' and by plugin 'first-plugin'")
