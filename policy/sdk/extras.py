"""Optional dependencies: which extra of sidecar-policy installs a module, and how to say so.

Built-in adapters import their optional dependency (regopy, redis, prometheus-client,
fluent-logger) only when they need it; when it is missing, the host and the config loader turn
the ModuleNotFoundError into a message naming the extra (``pip install 'sidecar-policy[opa]'``).
"""

from __future__ import annotations

PROJECT_DISTRIBUTION = "sidecar-policy"

#: Top-level modules of optional dependencies, by the extra of sidecar-policy that installs them.
OPTIONAL_MODULES: dict[str, str] = {
    "regopy": "opa",
    "opa_client": "opa",
    "redis": "redis",
    "hiredis": "redis",
    "prometheus_client": "prometheus",
    "fluent": "fluentd",
    "msgpack": "fluentd",
}


def missing_extra(exc: BaseException) -> str | None:
    """The extra that would install the module ``exc`` (a ModuleNotFoundError) did not find, if known."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    return OPTIONAL_MODULES.get(exc.name.split(".", 1)[0])


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``."""
    return f"pip install '{PROJECT_DISTRIBUTION}[{extra}]'"


__all__ = ["OPTIONAL_MODULES", "PROJECT_DISTRIBUTION", "install_hint", "missing_extra"]
