"""Every hook a plugin can implement, grouped by phase.

Plugins are modules (or objects) registered under the entry-point group
``policy.adapters``. Implement a hook by defining a function with the hook's name,
decorated with :data:`policy.hookimpl`; you may accept any subset of the
parameters. Core code calls hooks only through :class:`policy.runtime.plugins.PluginHost`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

from policy.attributes import ValueType
from policy.sdk import AdapterRegistrar, ServiceView, SnapshotView, TemplateRegistrar, hookspec


# --- registration: called once, when the plugin host is built -----------------


@hookspec
def policy_register_adapters(registry: AdapterRegistrar) -> None:
    """Register this plugin's adapters.

    Called once per plugin when the plugin host is built, before any config loads.

    :param registry: call ``registry.add(AdapterClass)`` for each adapter. An adapter
        whose ``name`` is already registered is rejected with a
        :class:`~policy.PluginError` naming both distributions.
    :return: nothing; the return value is ignored.

    .. versionadded:: 0.1
    """


@hookspec
def policy_register_templates(registry: TemplateRegistrar) -> None:
    """Register extra templates (instance shapes) this plugin's adapters use.

    Called once per plugin when the plugin host is built, after the built-in
    templates (checknothing, listentry, authorization, quota, metric, logentry,
    reportnothing) are registered.

    :param registry: call ``registry.add(Template(...))``; a duplicate name is an error.
    :return: nothing; the return value is ignored.

    .. versionadded:: 0.1
    """


@hookspec
def policy_attributes() -> Mapping[str, ValueType | str] | None:
    """Declare attributes this plugin adds to the vocabulary.

    Called once when the plugin host is built. Expressions in config may only
    reference attributes in the vocabulary, so a plugin whose transport or
    adapter introduces attributes declares them here.

    :return: a mapping of attribute name to :class:`~policy.attributes.ValueType`
        (or its name, e.g. ``"STRING_MAP"``); None adds nothing. Declaring a name
        that already exists with another type is an error.

    .. versionadded:: 0.1
    """


# --- service lifecycle -------------------------------------------------------


@hookspec
def policy_startup(service: ServiceView) -> None | Awaitable[None]:
    """Called once when a service starts, after its first config loaded and before it serves.

    :param service: the running service, seen through :class:`~policy.ServiceView`; its
        ``snapshot`` is the config now in force.
    :return: nothing; may be a coroutine function, which is awaited.

    .. versionadded:: 0.1
    """


@hookspec
def policy_config_loaded(service: ServiceView, snapshot: SnapshotView) -> None | Awaitable[None]:
    """Called after a config snapshot was compiled and swapped in (at start and on each reload).

    :param service: the service.
    :param snapshot: the config now in force (a :class:`~policy.SnapshotView`).
    :return: nothing; may be a coroutine function, which is awaited.

    .. versionadded:: 0.1
    """


@hookspec
def policy_shutdown(service: ServiceView) -> None | Awaitable[None]:
    """Called once when a service stops, after in-flight calls drained and reports flushed.

    :param service: the service that is stopping.
    :return: nothing; may be a coroutine function, which is awaited.

    .. versionadded:: 0.1
    """
