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
import sys
from collections.abc import Callable, Iterable, Mapping
from types import CodeType, FrameType
from typing import Any

import pluggy

from policy import hookspecs
from policy.attributes import Vocabulary, VocabularyError, standard_vocabulary
from policy.runtime.registry import AdapterRegistry, Origin, TemplateRegistry
from policy.sdk import PROJECT, PluginError, ServiceView, SnapshotView
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
    """A built plugin manager with its registries, and one typed method per hook.

    Every hook is called through pluggy's own hook caller (``pm.hook.<name>(...)``), so
    pluggy's rules hold: implementations run last-registered first (``extra_plugins``,
    then entry points, then built-ins), ``tryfirst``/``trylast`` reorder them and
    ``wrapper=True`` implementations wrap the others. What this class adds is types and
    context: an exception from an implementation becomes a :class:`PluginError` naming
    the plugin and its distribution, and registrations remember which plugin made them.
    """

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

    # --- calling hooks ------------------------------------------------------

    def _impl_origins(self, hook: pluggy.HookCaller) -> dict[CodeType, list[Origin]]:
        """The code object of each implementation of ``hook``, with the plugin(s) it belongs to.

        One function may be registered by several plugins (a module re-exporting another's
        hook): its code then maps to each of them, and the frame that calls it decides.
        """
        found: dict[CodeType, list[Origin]] = {}
        for impl in hook.get_hookimpls():
            origin = self._origin_of_plugin(impl.plugin)
            for function in (impl.function, inspect.unwrap(impl.function)):
                code = getattr(function, "__code__", None)
                if code is not None and origin not in found.setdefault(code, []):
                    found[code].append(origin)
        return found

    def _origin_of_plugin(self, plugin: object) -> Origin:
        name = self.pm.get_name(plugin) or repr(plugin)
        return self._origins.get(name, Origin(name))

    def _origin_in_frame(self, codes: Mapping[CodeType, list[Origin]], frame: FrameType) -> Origin | None:
        """The plugin whose implementation ``frame`` runs, or None when it runs none."""
        candidates = codes.get(frame.f_code)
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        caller = frame.f_back  # pluggy's caller holds the HookImpl it is calling (a tie-breaker only)
        impl = caller.f_locals.get("hook_impl") if caller is not None else None
        origin = self._origin_of_plugin(impl.plugin) if impl is not None else None
        return origin if origin in candidates else candidates[0]

    def _origin_on_stack(self, codes: Mapping[CodeType, list[Origin]], frame: FrameType | None) -> Origin | None:
        """The plugin whose implementation is running (innermost first), walking out from ``frame``."""
        while frame is not None:
            origin = self._origin_in_frame(codes, frame)
            if origin is not None:
                return origin
            frame = frame.f_back
        return None

    def _blame(self, codes: Mapping[CodeType, list[Origin]], exc: BaseException) -> Origin | None:
        """The plugin whose implementation raised ``exc`` (the innermost one in its traceback)."""
        found = None
        tb = exc.__traceback__
        while tb is not None:
            found = self._origin_in_frame(codes, tb.tb_frame) or found
            tb = tb.tb_next
        return found

    def _call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a hook through pluggy; an implementation's exception becomes a PluginError naming it."""
        hook: pluggy.HookCaller = getattr(self.pm.hook, hook_name)
        codes = self._impl_origins(hook)
        try:
            return list(hook(**kwargs))
        except PluginError as exc:
            if exc.plugin is None:
                origin = self._blame(codes, exc)
                if origin is not None:
                    exc.plugin, exc.distribution = origin.plugin, origin.distribution
            raise
        except Exception as exc:
            raise self._error(codes, hook_name, exc) from exc

    def _error(self, codes: Mapping[CodeType, list[Origin]], hook_name: str, exc: BaseException) -> PluginError:
        origin = self._blame(codes, exc) or Origin("<unknown plugin>")
        return PluginError(f"{origin}: hook {hook_name} raised {type(exc).__name__}: {exc}",
                           plugin=origin.plugin, distribution=origin.distribution)

    def _registrar_origin(self, hook_name: str) -> Callable[[], Origin]:
        """Who is registering right now: the implementation of ``hook_name`` on the call stack."""
        codes = self._impl_origins(getattr(self.pm.hook, hook_name))

        def current() -> Origin:
            return self._origin_on_stack(codes, sys._getframe(1)) or Origin("<unknown plugin>")

        return current

    # --- registration -------------------------------------------------------

    def _register_templates(self) -> None:
        hook = "policy_register_templates"
        self._call(hook, registry=self.templates.attributed(self._registrar_origin(hook)))

    def _register_adapters(self) -> None:
        hook = "policy_register_adapters"
        self._call(hook, registry=self.adapters.attributed(self._registrar_origin(hook)))
        for registered in self.adapters:
            for template in registered.adapter.templates:
                if template not in self.templates:
                    raise PluginError(
                        f"{registered.origin}: adapter {registered.name!r} supports unknown"
                        f" template {template!r}",
                        plugin=registered.origin.plugin, distribution=registered.origin.distribution,
                    )

    def _build_vocabulary(self) -> Vocabulary:
        vocabulary = standard_vocabulary()
        for declared, origin in self._declared_attributes():
            if not isinstance(declared, Mapping):
                raise PluginError(f"{origin}: policy_attributes must return a mapping, got {declared!r}",
                                  plugin=origin.plugin, distribution=origin.distribution)
            try:
                vocabulary = vocabulary.merged(declared, source=str(origin))
            except VocabularyError as exc:
                raise PluginError(str(exc), plugin=origin.plugin, distribution=origin.distribution) from None
        return vocabulary

    def _declared_attributes(self) -> list[tuple[Any, Origin]]:
        """``policy_attributes`` results (called through pluggy), each with the plugin that declared it.

        pluggy drops None results without saying whose they were; when every implementation
        declared something, results pair with implementations in call order, otherwise a
        result is attributed to all the implementations that may have declared it.
        """
        hook: pluggy.HookCaller = self.pm.hook.policy_attributes
        results = self._call("policy_attributes")
        calls = [impl for impl in reversed(hook.get_hookimpls()) if not (impl.hookwrapper or impl.wrapper)]
        origins = [self._origin_of_plugin(impl.plugin) for impl in calls]
        if len(origins) == len(results):
            return list(zip(results, origins, strict=True))
        some = Origin(" or ".join(o.plugin for o in origins))
        return [(declared, some) for declared in results]

    # --- lifecycle ----------------------------------------------------------

    async def _call_all(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook through pluggy, then await the results that are awaitable, in order."""
        codes = self._impl_origins(getattr(self.pm.hook, hook_name))
        for result in self._call(hook_name, **kwargs):
            if inspect.isawaitable(result):
                try:
                    await result
                except PluginError:
                    raise
                except Exception as exc:
                    raise self._error(codes, hook_name, exc) from exc

    async def startup(self, service: ServiceView) -> None:
        """Run every ``policy_startup`` hook (awaiting coroutine ones)."""
        await self._call_all("policy_startup", service=service)

    async def config_loaded(self, service: ServiceView, snapshot: SnapshotView) -> None:
        """Run every ``policy_config_loaded`` hook."""
        await self._call_all("policy_config_loaded", service=service, snapshot=snapshot)

    async def shutdown(self, service: ServiceView) -> None:
        """Run every ``policy_shutdown`` hook."""
        await self._call_all("policy_shutdown", service=service)

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
        origins[name] = Origin(name, dist, version, builtin=True)
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
                raise PluginError(f"{origin}: failed to load {ep.value}: {type(exc).__name__}: {exc}",
                                  plugin=origin.plugin, distribution=origin.distribution) from exc
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
