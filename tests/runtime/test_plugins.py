"""The plugin host: built-ins, entry points, duplicates, autoload switch, hook errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from policy import Adapter, PluginError, hookimpl
from policy.attributes import ValueType
from policy.runtime.plugins import build_plugin_host


class Dupe(Adapter):
    name = "denier"
    description = "a second denier"
    templates = ("checknothing",)


class DupePlugin:
    __name__ = "dupe-plugin"

    @hookimpl
    def policy_register_adapters(self, registry):
        registry.add(Dupe)


def test_builtins_are_registered_with_our_distribution():
    host = build_plugin_host(autoload=False)
    names = {r.name for r in host.adapters}
    assert {"denier", "listchecker", "stdio"} <= names
    origin = host.origin_of("denier")
    assert origin.distribution == "sidecar-policy"
    assert origin.version


def test_duplicate_adapter_names_are_rejected_naming_both():
    with pytest.raises(PluginError) as err:
        build_plugin_host(autoload=False, extra_plugins=[DupePlugin()])
    message = str(err.value)
    assert "'denier' is registered twice" in message
    assert "sidecar-policy" in message and "dupe-plugin" in message


def test_a_raising_hook_names_its_plugin():
    class Broken:
        __name__ = "broken-plugin"

        @hookimpl
        def policy_register_adapters(self, registry):
            raise KeyError("oops")

    with pytest.raises(PluginError, match="broken-plugin.*KeyError"):
        build_plugin_host(autoload=False, extra_plugins=[Broken()])


def test_plugins_extend_the_vocabulary_and_conflicts_are_errors():
    class Attrs:
        __name__ = "attrs"

        @hookimpl
        def policy_attributes(self):
            return {"my.tenant": "STRING", "my.score": ValueType.DOUBLE}

    host = build_plugin_host(autoload=False, extra_plugins=[Attrs()])
    assert host.vocabulary["my.tenant"] is ValueType.STRING
    assert host.vocabulary["my.score"] is ValueType.DOUBLE

    class Conflict:
        __name__ = "conflict"

        @hookimpl
        def policy_attributes(self):
            return {"source.ip": "STRING"}

    with pytest.raises(PluginError, match="source.ip.*IP_ADDRESS"):
        build_plugin_host(autoload=False, extra_plugins=[Conflict()])


def test_an_adapter_with_an_unknown_template_is_rejected():
    class Weird(Adapter):
        name = "weird"
        templates = ("nosuchtemplate",)

    class P:
        __name__ = "weird-plugin"

        @hookimpl
        def policy_register_adapters(self, registry):
            registry.add(Weird)

    with pytest.raises(PluginError, match="unknown template 'nosuchtemplate'"):
        build_plugin_host(autoload=False, extra_plugins=[P()])


@pytest.fixture
def installed_third_party(tmp_path, monkeypatch):
    """A real distribution on sys.path (dist-info with an entry point), as pip would leave it."""
    site = tmp_path / "site"
    pkg = site / "acme_policy"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from policy import Adapter, CheckResult, Handler, hookimpl

        class AcmeHandler(Handler):
            def check(self, instance):
                return CheckResult.allow(valid_duration=1)

        class Acme(Adapter):
            name = "acme"
            description = "Acme's adapter."
            templates = ("checknothing",)

            @classmethod
            def build(cls, params, context):
                return AcmeHandler()

        @hookimpl
        def policy_register_adapters(registry):
            registry.add(Acme)
    '''))
    info = site / "acme_policy-2.3.4.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-policy\nVersion: 2.3.4\n")
    (info / "entry_points.txt").write_text("[policy.adapters]\nacme = acme_policy\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("acme_policy", None)


def test_entry_point_plugins_load_with_their_distribution(installed_third_party, monkeypatch):
    monkeypatch.delenv("POLICY_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    host = build_plugin_host()
    origin = host.origin_of("acme")
    assert origin is not None
    assert (origin.distribution, origin.version) == ("acme-policy", "2.3.4")


def test_autoload_can_be_disabled_by_environment(installed_third_party, monkeypatch):
    monkeypatch.setenv("POLICY_DISABLE_PLUGIN_AUTOLOAD", "1")
    host = build_plugin_host()
    assert host.origin_of("acme") is None
    assert host.origin_of("denier") is not None


def test_a_plugin_that_fails_to_import_is_named(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "bad_policy-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bad-policy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[policy.adapters]\nbad = bad_policy_missing_module\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("POLICY_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    with pytest.raises(PluginError, match="bad-policy.*ModuleNotFoundError"):
        build_plugin_host()


def test_lifecycle_hooks_are_called_in_order(tmp_path):
    import asyncio

    from policy.runtime.service import PolicyService

    calls = []

    class Life:
        __name__ = "life"

        @hookimpl
        async def policy_startup(self, service):
            calls.append(("startup", service.snapshot.generation))

        @hookimpl
        def policy_config_loaded(self, snapshot):
            calls.append(("loaded", snapshot.generation))

        @hookimpl
        def policy_shutdown(self, service):
            calls.append(("shutdown",))

    config = tmp_path / "c.yaml"
    config.write_text("rules: []\n")

    async def run():
        service = PolicyService(Path(config), build_plugin_host(autoload=False, extra_plugins=[Life()]),
                                watch_interval=0)
        await service.start()
        await service.stop()

    asyncio.run(run())
    assert calls == [("startup", 1), ("loaded", 1), ("shutdown",)]
