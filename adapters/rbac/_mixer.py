"""Mixer's RBAC: ``ServiceRole`` / ``ServiceRoleBinding`` (``rbac.istio.io/v1alpha1``) on ``authorization``.

Semantics follow Mixer's adapter (``mixer/adapter/rbac/rbacStore.go``):

* roles and bindings are per namespace; a request is checked against the roles of
  ``action.namespace`` only; ``action.namespace``, ``service``, ``path`` and ``method``
  are required (a request without one is denied, as Mixer answered an error);
* a role's rule matches when ``services`` and ``methods`` each contain a match for the
  action's service and method, ``paths`` (when given) one for its path, and every
  ``constraint`` (key, values) is satisfied by ``action.properties[key]``; values
  match exactly, by prefix ``abc*``, by suffix ``*abc`` or with ``*``;
* a binding's subject matches when ``user`` (when given; ``*`` for any) equals
  ``subject.user``, ``group`` equals ``subject.groups``, and every ``properties``
  entry equals ``subject.properties[key]``; the request is allowed when a binding
  of a matching role has a matching subject.

Deviation: Mixer let a matching ``user`` override mismatching ``properties`` of the
same subject; here every field a subject sets must match (what the API documents).
Fields later Istio releases added for Envoy-side RBAC (``notPaths``, ``hosts``,
``names``, ``ips`` ...) are rejected rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.rbac._match import StringSet, string_set
from adapters.rbac._policy import PolicyIssues

API = "rbac.istio.io/"
ROLE, BINDING = "ServiceRole", "ServiceRoleBinding"
RULE_KEYS = ("services", "paths", "methods", "constraints")
SUBJECT_KEYS = ("user", "group", "properties")


def is_mixer_rbac(doc: Mapping[str, Any]) -> bool:
    """True for a ServiceRole or ServiceRoleBinding document."""
    api = doc.get("apiVersion")
    return doc.get("kind") in (ROLE, BINDING) and isinstance(api, str) and api.startswith(API)


@dataclass(frozen=True, slots=True)
class RoleRule:
    """One access rule of a ServiceRole."""

    services: StringSet
    paths: StringSet | None
    methods: StringSet
    constraints: tuple[tuple[str, StringSet], ...]

    def matches(self, service: str, path: str, method: str, properties: Mapping[str, Any]) -> bool:
        """Mixer's ``matchRule``."""
        if not (self.services(service) and self.methods(method)):
            return False
        if self.paths is not None and not self.paths(path):
            return False
        for key, values in self.constraints:
            value = properties.get(key)
            # Mixer's stringMatch: "*" matches any string, the empty one too.
            if not (isinstance(value, str) and (values(value) or (value == "" and values.presence))):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Subject:
    """One subject of a ServiceRoleBinding."""

    user: str | None
    group: str | None
    properties: tuple[tuple[str, str], ...]

    def matches(self, user: str | None, groups: str | None, properties: Mapping[str, Any]) -> bool:
        """Every field the subject sets must match (see the module docstring)."""
        if self.user is None and self.group is None and not self.properties:
            return False
        if self.user is not None and self.user != "*" and self.user != user:
            return False
        if self.group is not None and self.group != "*" and self.group != groups:
            return False
        return all(properties.get(k) == v for k, v in self.properties)


@dataclass(eq=False)
class Role:
    """A ServiceRole with the bindings that refer to it."""

    namespace: str
    name: str
    rules: tuple[RoleRule, ...]
    bindings: list[tuple[str, tuple[Subject, ...]]] = field(default_factory=list)


def _strings(raw: Any, at: str, where: tuple[str, str], issues: PolicyIssues, required: bool) -> list[str] | None:
    if raw is None or raw == []:
        if required:
            issues.add(*where, at, "at least one value is required")
        return None
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        issues.add(*where, at, f"expected a list of strings, got {raw!r}")
        return None
    return raw


def _meta(doc: Mapping[str, Any], issues: PolicyIssues) -> tuple[str, str, tuple[str, str]] | None:
    meta = doc.get("metadata") or {}
    name = meta.get("name") if isinstance(meta, Mapping) else None
    namespace = (meta.get("namespace") if isinstance(meta, Mapping) else None) or "default"
    where = (str(doc.get("_source", "")), f"{doc.get('kind')}/{name}.{namespace}")
    if not isinstance(name, str) or not name:
        issues.add(*where, "metadata.name", "a name is required")
        return None
    return name, namespace, where


def _role(doc: Mapping[str, Any], issues: PolicyIssues) -> Role | None:
    meta = _meta(doc, issues)
    if meta is None:
        return None
    name, namespace, where = meta
    spec = doc.get("spec") or {}
    rules_raw = spec.get("rules") if isinstance(spec, Mapping) else None
    if not isinstance(rules_raw, list) or not rules_raw:
        issues.add(*where, "spec.rules", "a ServiceRole needs at least one rule")
        return None
    before = len(issues.errors)
    rules = []
    for i, raw in enumerate(rules_raw):
        at = f"spec.rules[{i}]"
        if not isinstance(raw, Mapping):
            issues.add(*where, at, f"expected a mapping, got {raw!r}")
            continue
        unknown = sorted(set(raw) - set(RULE_KEYS))
        if unknown:
            issues.add(*where, f"{at}.{unknown[0]}",
                       f"not supported by Mixer's RBAC (supported: {', '.join(RULE_KEYS)})")
            continue
        services = _strings(raw.get("services"), f"{at}.services", where, issues, True)
        methods = _strings(raw.get("methods"), f"{at}.methods", where, issues, True)
        paths = _strings(raw.get("paths"), f"{at}.paths", where, issues, False)
        constraints = []
        for j, c in enumerate(raw.get("constraints") or []):
            if not isinstance(c, Mapping) or not isinstance(c.get("key"), str) or set(c) - {"key", "values"}:
                issues.add(*where, f"{at}.constraints[{j}]", f"expected {{key, values}}, got {c!r}")
                continue
            values = _strings(c.get("values"), f"{at}.constraints[{j}].values", where, issues, True)
            if values is not None:
                constraints.append((c["key"], string_set(values)))
        if services is not None and methods is not None:
            rules.append(RoleRule(string_set(services), string_set(paths) if paths is not None else None,
                                  string_set(methods), tuple(constraints)))
    if len(issues.errors) > before:
        return None
    return Role(namespace, name, tuple(rules))


def _binding(doc: Mapping[str, Any], roles: dict[tuple[str, str], Role], issues: PolicyIssues) -> None:
    meta = _meta(doc, issues)
    if meta is None:
        return
    name, namespace, where = meta
    spec = doc.get("spec") or {}
    ref = spec.get("roleRef") if isinstance(spec, Mapping) else None
    if not isinstance(ref, Mapping) or ref.get("kind") != ROLE or not ref.get("name"):
        issues.add(*where, "spec.roleRef", f"expected {{kind: ServiceRole, name: <role>}}, got {ref!r}")
        return
    role = roles.get((namespace, ref["name"]))
    if role is None:
        # Mixer's controller logs "Failed to add ServiceRoleBinding" and skips the binding.
        issues.warn(*where, "spec.roleRef.name",
                    f"ServiceRole {ref['name']!r} does not exist in namespace {namespace!r}; the binding is skipped")
        return
    subjects_raw = spec.get("subjects")
    if not isinstance(subjects_raw, list) or not subjects_raw:
        issues.add(*where, "spec.subjects", "a binding needs at least one subject")
        return
    subjects = []
    for i, raw in enumerate(subjects_raw):
        at = f"spec.subjects[{i}]"
        if not isinstance(raw, Mapping) or not raw:
            issues.add(*where, at, f"expected a non-empty mapping, got {raw!r}")
            return
        unknown = sorted(set(raw) - set(SUBJECT_KEYS))
        if unknown:
            issues.add(*where, f"{at}.{unknown[0]}",
                       f"not supported by Mixer's RBAC (supported: {', '.join(SUBJECT_KEYS)})")
            return
        props = raw.get("properties") or {}
        if not isinstance(props, Mapping):
            issues.add(*where, f"{at}.properties", f"expected a mapping, got {props!r}")
            return
        subjects.append(Subject(raw.get("user"), raw.get("group"),
                                tuple((str(k), str(v)) for k, v in props.items())))
    if any(b == name for b, _ in role.bindings):
        issues.warn(*where, "metadata.name", f"duplicate ServiceRoleBinding {name!r}; skipped")
        return
    role.bindings.append((name, tuple(subjects)))


class MixerRbac:
    """ServiceRoles and their bindings by namespace, answering ``authorization`` instances."""

    def __init__(self, documents: Iterable[Mapping[str, Any]], issues: PolicyIssues) -> None:
        docs = list(documents)
        roles: dict[tuple[str, str], Role] = {}
        for doc in docs:
            if doc.get("kind") == ROLE:
                role = _role(doc, issues)
                if role is None:
                    continue
                if (role.namespace, role.name) in roles:
                    issues.add(str(doc.get("_source", "")), f"{ROLE}/{role.name}.{role.namespace}",
                               "metadata.name", f"duplicate ServiceRole {role.name!r}")
                    continue
                roles[(role.namespace, role.name)] = role
        for doc in docs:
            if doc.get("kind") == BINDING:
                _binding(doc, roles, issues)
        self.by_namespace: dict[str, list[Role]] = {}
        for role in roles.values():
            self.by_namespace.setdefault(role.namespace, []).append(role)
        self.count = len(roles)

    def decide(self, instance: Any) -> tuple[bool, str]:
        """Mixer's ``CheckPermission``: (allowed, reason)."""
        action, subject = instance.action, instance.subject
        for name in ("namespace", "service", "path", "method"):
            if not getattr(action, name):
                return False, f"RBAC: permission denied: the request has no action.{name}"
        properties = action.properties or {}
        eligible = []
        for role in self.by_namespace.get(action.namespace, ()):
            if any(r.matches(action.service, action.path, action.method, properties) for r in role.rules):
                eligible.append(role)
                for binding, subjects in role.bindings:
                    if any(s.matches(subject.user, subject.groups, subject.properties or {}) for s in subjects):
                        return True, (f"RBAC: allowed by ServiceRoleBinding {action.namespace}/{binding}"
                                      f" (ServiceRole {role.name})")
        if not eligible:
            return False, (f"RBAC: permission denied: no ServiceRole in namespace {action.namespace!r} grants"
                           f" {action.method} {action.path} on {action.service}")
        names = ", ".join(r.name for r in eligible)
        return False, (f"RBAC: permission denied: no binding of ServiceRole {names} matches the subject"
                       f" (user {subject.user!r})")


__all__ = ["MixerRbac", "is_mixer_rbac"]
