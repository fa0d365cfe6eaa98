"""Test kit for sidecar-policy and its plugins, registered as a pytest plugin (``policy_testing``).

Fixtures (all start real components on loopback and stop them):

``policy_host_factory``
    ``policy_host_factory(*plugins, autoload=False)`` → a PluginHost with the
    built-ins plus the given plugin modules or objects.
``policy_config``
    ``policy_config(yaml_text, name="policy.yaml")`` → a config directory in tmp_path.
``policy_service_factory``
    ``await policy_service_factory(config_path, *plugins)`` → a started PolicyService.
``policy_server_factory``
    ``await policy_server_factory(config_path, *plugins, unix=True)`` → a started
    :class:`RunningServer` listening on a free TCP port and a Unix socket, with
    ready gRPC channels and stubs.

Helpers: :func:`free_port`, :class:`RunningServer`, :func:`native_check`.
"""

from __future__ import annotations

from policy.testing.harness import RunningServer, free_port, native_check, write_config

__all__ = ["RunningServer", "free_port", "native_check", "write_config"]

from policy.testing.fixtures import (  # noqa: E402,F401  (pytest collects fixtures from the plugin module)
    policy_config,
    policy_host_factory,
    policy_server_factory,
    policy_service_factory,
)
