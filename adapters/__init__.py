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
