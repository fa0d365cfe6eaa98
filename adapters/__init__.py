"""Built-in adapters. Each is an ordinary plugin written only against the public SDK (``policy``)."""

from __future__ import annotations

#: Modules registered as plugins by every plugin host, whatever POLICY_DISABLE_PLUGIN_AUTOLOAD says.
#: Each is also listed under the ``policy.adapters`` entry-point group in setup.cfg.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "adapters.denier",
    "adapters.fluentd",
    "adapters.listchecker",
    "adapters.memquota",
    "adapters.opa",
    "adapters.prometheus",
    "adapters.rbac",
    "adapters.redisquota",
    "adapters.requestcontext",
    "adapters.statsd",
    "adapters.stdio",
)

#: Built-in adapters whose module needs an optional dependency, with the extra that brings it and
#: the adapter's name and templates. Without the dependency the host registers a stand-in under
#: that name: ``policy adapters`` lists it as unavailable, and a config that uses it is refused
#: with a config error naming the extra (``pip install 'sidecar-policy[opa]'``).
OPTIONAL_PLUGINS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "adapters.opa": ("opa", "opa", ("requestcontext", "authorization")),
    "adapters.redisquota": ("redis", "redisquota", ("quota",)),
}
