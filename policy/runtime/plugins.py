"""The plugin host: builds the pluggy manager and is the only caller of hooks.

Built-in adapters are ordinary plugins listed in :data:`adapters.BUILTIN_PLUGINS`
and always registered; third-party plugins come from the ``policy.adapters``
entry-point group unless ``POLICY_DISABLE_PLUGIN_AUTOLOAD`` is set. Core code uses
the typed methods of :class:`PluginHost`, never ``pm.hook`` with loose keywords.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import inspect
import os
from collections.abc import Iterable, Mapping
from typing import Any

import pluggy

from policy import hookspecs
from policy.attributes import Vocabulary, VocabularyError, standard_vocabulary
from policy.runtime.registry import AdapterRegistry, Origin, TemplateRegistry
from policy.sdk import PROJECT, PluginError
from policy.sdk.extras import install_hint, missing_extra

ENTRY_POINT_GROUP = "policy.adapters"
DISABLE_AUTOLOAD_ENV = "POLICY_DISABLE_PLUGIN_AUTOLOAD"


def _unavailable_plugin(module_name: str, exc: ModuleNotFoundError) -> Any:
    """A stand-in plugin registering an adapter that says which extra it needs, or None if unknown."""
    from adapters import OPTIONAL_PLUGINS

    from policy.sdk import Adapter, hookimpl

    declared = OPTIONAL_PLUGINS.get(module_name)
    extra = missing_extra(exc)
    if declared is None or extra is None or extra != declared[0]:
        return None
    _, adapter_name, templates = declared
    reason = f"needs the {extra!r} extra ({exc.name} is not installed): {install_hint(extra)}"

    class UnavailableAdapter(Adapter):
        """An adapter whose optional dependency is not installed; every use is a config error."""

        name = adapter_name
        description = f"unavailable: {reason}"
        unavailable = reason

    UnavailableAdapter.templates = templates

    class Plugin:
        """Registers the stand-in adapter."""

        @hookimpl
        def policy_register_adapters(self, registry: Any) -> None:
            """Register the stand-in for the adapter that could not be imported."""
            registry.add(UnavailableAdapter)

    return Plugin()


def _own_distribution() -> tuple[str, str]:
    try:
        return "sidecar-policy", md.version("sidecar-policy")
    except md.PackageNotFoundError:
        return "sidecar-policy", "0+unknown"


def autoload_disabled() -> bool:
    """True when ``POLICY_DISABLE_PLUGIN_AUTOLOAD`` is set to a true-ish value."""
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


class PluginHost:
    """A built plugin manager with its registries, and one typed method per hook."""

    def __init__(self, pm: pluggy.PluginManager, origins: Mapping[str, Origin]) -> None:
        self.pm = pm
        self._origins = dict(origins)
        self.adapters = AdapterRegistry()
        self.templates = TemplateRegistry()
        self._register_templates()
        self._register_adapters()
        self.vocabulary = self._build_vocabulary()
        #: Put into every handler's ``BuildContext.extras`` (the owning service adds ``metrics_registry``).
        self.build_extras: dict[str, Any] = {}

    # --- registration -------------------------------------------------------

    def _impls(self, hook: Any) -> Iterable[tuple[Any, Origin]]:
        for impl in reversed(hook.get_hookimpls()):  # registration order
            name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
            yield impl, self._origins.get(name, Origin(name))

    def _call(self, impl: Any, origin: Origin, **kwargs: Any) -> Any:
        try:
            return impl.function(**{k: kwargs[k] for k in impl.argnames})
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"{origin}: hook {impl.function.__name__} raised {type(exc).__name__}: {exc}"
            ) from exc

    def _register_templates(self) -> None:
        for impl, origin in self._impls(self.pm.hook.policy_register_templates):
            self._call(impl, origin, registry=self.templates.bound(origin))

    def _register_adapters(self) -> None:
        for impl, origin in self._impls(self.pm.hook.policy_register_adapters):
            self._call(impl, origin, registry=self.adapters.bound(origin))
        for registered in self.adapters:
            for template in registered.adapter.templates:
                if template not in self.templates:
                    raise PluginError(
                        f"{registered.origin}: adapter {registered.name!r} supports unknown"
                        f" template {template!r}"
                    )

    def _build_vocabulary(self) -> Vocabulary:
        vocabulary = standard_vocabulary()
        for impl, origin in self._impls(self.pm.hook.policy_attributes):
            declared = self._call(impl, origin)
            if declared is None:
                continue
            if not isinstance(declared, Mapping):
                raise PluginError(f"{origin}: policy_attributes must return a mapping, got {declared!r}")
            try:
                vocabulary = vocabulary.merged(declared, source=str(origin))
            except VocabularyError as exc:
                raise PluginError(str(exc)) from None
        return vocabulary

    # --- lifecycle ----------------------------------------------------------

    async def _call_all(self, hook: Any, **kwargs: Any) -> None:
        for impl, origin in self._impls(hook):
            result = self._call(impl, origin, **kwargs)
            if inspect.isawaitable(result):
                await result

    async def startup(self, service: Any) -> None:
        """Run every ``policy_startup`` hook (awaiting coroutine ones)."""
        await self._call_all(self.pm.hook.policy_startup, service=service)

    async def config_loaded(self, service: Any, snapshot: Any) -> None:
        """Run every ``policy_config_loaded`` hook."""
        await self._call_all(self.pm.hook.policy_config_loaded, service=service, snapshot=snapshot)

    async def shutdown(self, service: Any) -> None:
        """Run every ``policy_shutdown`` hook."""
        await self._call_all(self.pm.hook.policy_shutdown, service=service)

    # --- introspection ------------------------------------------------------

    def origin_of(self, adapter_name: str) -> Origin | None:
        """The plugin (and distribution) that registered an adapter."""
        registered = self.adapters.get(adapter_name)
        return registered.origin if registered else None


def build_plugin_host(
    *,
    autoload: bool | None = None,
    extra_plugins: Iterable[Any] = (),
) -> PluginHost:
    """Build a plugin host: built-ins, then entry points (unless disabled), then ``extra_plugins``.

    :param autoload: load third-party entry points; None reads ``POLICY_DISABLE_PLUGIN_AUTOLOAD``.
    :param extra_plugins: plugin objects or modules to register as well (tests, embedding).
    """
    from adapters import BUILTIN_PLUGINS

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    dist, version = _own_distribution()
    origins: dict[str, Origin] = {}
    for module_name in BUILTIN_PLUGINS:
        name = module_name.rsplit(".", 1)[-1]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # an optional dependency is missing: register a stand-in
            module = _unavailable_plugin(module_name, exc)
            if module is None:
                raise
        pm.register(module, name=name)
        origins[name] = Origin(name, dist, version)
    if autoload is None:
        autoload = not autoload_disabled()
    if autoload:
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            ep_dist = ep.dist.name if ep.dist else ""
            ep_version = ep.dist.version if ep.dist else ""
            origin = Origin(ep.name, ep_dist, ep_version)
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(f"{origin}: failed to load {ep.value}: {type(exc).__name__}: {exc}") from exc
            pm.register(plugin, name=ep.name)
            origins[ep.name] = origin
    for index, plugin in enumerate(extra_plugins):
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{index}"
        pm.register(plugin, name=name)
        origins[name] = Origin(name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from None
    return PluginHost(pm, origins)
