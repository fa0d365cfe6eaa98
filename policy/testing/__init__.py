"""Test kit for sidecar-policy and its plugins, registered as a pytest plugin (``policy_testing``).

Installing ``sidecar-policy`` makes these fixtures available in every pytest run
(see ``docs/testing.md``). All start real components on loopback and stop them:

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
    ready gRPC stubs (``.native()``, ``.ext_authz()``).
``policy_hook_recorder`` / ``policy_call_recorder``
    a :class:`HookRecorder` / :class:`CallRecorder` to pass as a plugin.
``policy_fake_clock``
    a :class:`FakeClock`; pass ``.clock`` to ``BuildContext(clock=...)``.

Helpers: :func:`assert_scenarios` (scenario tables), :func:`check_adapter_conformance`
(the adapter contract), :func:`native_check`, :func:`native_report`,
:func:`ext_authz_request`, :func:`served_apis`, :func:`free_port`, :func:`write_config`.
Fixture types, to annotate a test's parameters: :class:`HostFactory`,
:class:`ConfigFactory`, :class:`ServiceFactory`, :class:`ServerFactory`.
"""

from __future__ import annotations

from policy.testing.clock import FakeClock
from policy.testing.conformance import STEPS, ConformanceReport, check_adapter_conformance, sample_instance
from policy.testing.fixtures import ConfigFactory, HostFactory, ServerFactory, ServiceFactory
from policy.testing.harness import (
    RunningServer,
    ext_authz_request,
    free_port,
    native_check,
    native_report,
    served_apis,
    write_config,
)
from policy.testing.recorder import CallRecorder, HandlerCallRecord, HookCall, HookRecorder, RecordingHandler
from policy.testing.scenarios import Outcome, Scenario, assert_scenarios, run_scenarios

__all__ = [
    "ConfigFactory", "HostFactory", "ServerFactory", "ServiceFactory", "native_report", "served_apis",
    "STEPS", "CallRecorder", "ConformanceReport", "FakeClock", "HandlerCallRecord", "HookCall", "HookRecorder",
    "Outcome", "RecordingHandler", "RunningServer", "Scenario", "assert_scenarios",
    "check_adapter_conformance", "ext_authz_request", "free_port", "native_check", "run_scenarios",
    "sample_instance", "write_config",
]

from policy.testing.fixtures import (  # noqa: E402,F401  (pytest collects fixtures from the plugin module)
    policy_call_recorder,
    policy_config,
    policy_fake_clock,
    policy_host_factory,
    policy_hook_recorder,
    policy_server_factory,
    policy_service_factory,
)
