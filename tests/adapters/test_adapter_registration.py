"""Each built-in adapter module is an ordinary plugin registering its adapter."""

from __future__ import annotations

import importlib

import pytest

from policy import PluginError
from policy.runtime.plugins import build_plugin_host
from policy.runtime.registry import AdapterRegistry, TemplateRegistry

BUILTINS = {
    "adapters.denier": ("denier", {"checknothing", "listentry", "authorization", "quota"}),
    "adapters.listchecker": ("listchecker", {"listentry"}),
    "adapters.stdio": ("stdio", {"logentry", "metric"}),
}


@pytest.mark.parametrize("module_name", sorted(BUILTINS))
def test_module_registers_its_adapter(module_name):
    name, templates = BUILTINS[module_name]
    module = importlib.import_module(module_name)
    registry = AdapterRegistry()
    module.policy_register_adapters(registry)
    assert len(registry) == 1
    registered = registry.get(name)
    assert registered is not None
    assert set(registered.adapter.templates) == templates
    assert registered.adapter.description
    known = TemplateRegistry()
    assert all(t in known for t in templates)


@pytest.mark.parametrize("module_name", sorted(BUILTINS))
def test_registering_twice_is_rejected(module_name):
    module = importlib.import_module(module_name)
    registry = AdapterRegistry()
    module.policy_register_adapters(registry)
    with pytest.raises(PluginError, match="registered twice"):
        module.policy_register_adapters(registry)


def test_plugin_host_registers_all_builtins():
    host = build_plugin_host(autoload=False)
    for module_name, (name, _) in BUILTINS.items():
        assert name in host.adapters
        assert host.origin_of(name).plugin == module_name.rsplit(".", 1)[-1]
