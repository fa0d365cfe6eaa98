"""Warnings for configs that enforce less than they seem to: said at load, never silent.

* documents an adapter reads (an AuthorizationPolicy, a ServiceRole ...) while no rule sends
  requests to a handler of such an adapter: nothing applies them, so a DENY-all policy
  denies nothing;
* such a document at an apiVersion this service does not know for its kind;
* a config with no rules (and no rate-limit service config): every check is allowed.
"""

from __future__ import annotations


from policy.sdk import ConfigIssue

from policy.config.model import ConfigModel
from policy.config.catalog import Catalog

#: The apiVersions of the Istio kinds read by built-in adapters (other versions are read the same
#: way, with a warning: a typo there usually means the author meant another kind of document).
KNOWN_API_VERSIONS: dict[str, tuple[str, ...]] = {
    "AuthorizationPolicy": ("security.istio.io/v1", "security.istio.io/v1beta1"),
    "ServiceRole": ("rbac.istio.io/v1alpha1",),
    "ServiceRoleBinding": ("rbac.istio.io/v1alpha1",),
    "ClusterRbacConfig": ("rbac.istio.io/v1alpha1",),
    "RbacConfig": ("rbac.istio.io/v1alpha1",),
}


def enforcement_warnings(model: ConfigModel, host: Catalog) -> list[ConfigIssue]:
    """The warnings of :mod:`policy.config.enforcement` for a validated ``model``."""
    warnings: list[ConfigIssue] = []
    readers: dict[str, list[str]] = {}  # document kind -> adapters that read it
    for registered in host.adapters:
        for kind in registered.adapter.document_kinds:
            readers.setdefault(kind, []).append(registered.name)
    used_adapters = {model.handlers[name].adapter_name.split(".", 1)[0] for name in model.used_handlers}
    for extra in model.extra_documents:
        kind, api = extra.data.get("kind"), extra.data.get("apiVersion")
        if not isinstance(kind, str) or kind not in readers:
            continue
        if kind in KNOWN_API_VERSIONS and api not in KNOWN_API_VERSIONS[kind]:
            warnings.append(ConfigIssue(
                extra.file, extra.document, "apiVersion",
                f"apiVersion {api!r} is not one of {kind}'s ({', '.join(KNOWN_API_VERSIONS[kind])})",
                "warning"))
        if not used_adapters.intersection(readers[kind]):
            adapters = " or ".join(repr(name) for name in readers[kind])  # 'rbac' or 'other'
            warnings.append(ConfigIssue(
                extra.file, extra.document, "",
                f"not enforced: no rule sends requests to a handler of adapter {adapters}, which reads"
                f" {kind} documents (add a handler and a rule for it); as it stands this document"
                " allows and denies nothing", "warning"))
    if not model.rules and model.rate_limit is None:
        where = model.sources[0] if model.sources else ""
        warnings.append(ConfigIssue(where, "rules", "", "the config has no rules: every check is allowed",
                                    "warning"))
    return warnings


__all__ = ["KNOWN_API_VERSIONS", "enforcement_warnings"]
