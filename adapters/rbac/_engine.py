"""Indexed evaluation of compiled AuthorizationPolicies, in Istio's order.

Policies are grouped at load by namespace and workload selector, and each group's
rules by action and by an index key (an exact path, principal, host, port or
method every alternative of the rule requires). A request only looks at the groups
of its namespace and the root namespace whose selector its destination labels
satisfy (groups are found through one of their labels), and within a group only
at the rules whose key equals the request's value, plus the unkeyed ones. So a
decision's cost does not grow with policies that cannot apply.

Order of evaluation (Istio's ``builder.go`` and the AuthorizationPolicy reference):

1. a matching CUSTOM policy sends the request to its provider; a denial denies
   (done by the handler, which owns the providers);
2. a matching DENY policy denies;
3. with no ALLOW policy for the workload the request is allowed;
4. a matching ALLOW policy allows;
5. otherwise the request is denied.

AUDIT policies never change the outcome; a match is reported in the metadata
(``access_log_hint``). Dry-run policies (``istio.io/dry-run``) are evaluated like
Envoy's shadow rules: per action, the shadow result and the effective policy go to
the metadata and the message, and are counted, but never enforced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.rbac._policy import CompiledPolicy, CompiledRule
from adapters.rbac._request import RequestView

_GETTERS: dict[str, Callable[[RequestView], tuple[Any, ...]]] = {
    "path": lambda r: (r.path,),
    "principal": lambda r: (r.principal,),
    "host": lambda r: (r.host,) if r.host == r.host_no_port else (r.host, r.host_no_port),
    "port": lambda r: (r.port,),
    "method": lambda r: (r.method,),
}


class RuleIndex:
    """The rules of one action in one group, bucketed by their index key."""

    __slots__ = ("tables", "scan", "size")

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        tables: dict[str, dict[Any, list[CompiledRule]]] = {}
        scan: list[CompiledRule] = []
        size = 0
        for rule in sorted(rules, key=lambda r: r.ordinal):
            size += 1
            if rule.key is None:
                scan.append(rule)
                continue
            name, values = rule.key
            table = tables.setdefault(name, {})
            for value in values:
                table.setdefault(value, []).append(rule)
        self.tables = tuple((_GETTERS[name], table) for name, table in tables.items())
        self.scan = tuple(scan)
        self.size = size

    def first_match(self, request: RequestView) -> CompiledRule | None:
        """The first rule (in document order) the request matches, or None."""
        lists: list[Sequence[CompiledRule]] = [self.scan] if self.scan else []
        for getter, table in self.tables:
            for value in getter(request):
                bucket = table.get(value)
                if bucket:
                    lists.append(bucket)
        if not lists:
            return None
        candidates = lists[0] if len(lists) == 1 else sorted(
            {id(r): r for lst in lists for r in lst}.values(), key=lambda r: r.ordinal)
        for rule in candidates:
            if rule.matches(request):
                return rule
        return None


@dataclass(eq=False)
class Group:
    """The policies of one namespace with one selector, indexed per action (enforced and dry-run)."""

    namespace: str
    selector: Mapping[str, str]
    policies: list[CompiledPolicy] = field(default_factory=list)
    indexes: dict[tuple[str, bool, bool], RuleIndex] = field(default_factory=dict)
    has_allow: bool = False
    has_dry_allow: bool = False
    has_dry_deny: bool = False
    providers: frozenset[str] = frozenset()

    def finish(self) -> None:
        """Build the indexes once every policy is added."""
        by: dict[tuple[str, bool, bool], list[CompiledRule]] = {}
        for policy in self.policies:
            # CUSTOM rules are indexed per provider: each provider is asked for its own matches.
            action = custom_key(policy.provider or "") if policy.action == "CUSTOM" else policy.action
            by.setdefault((action, policy.dry_run, False), []).extend(policy.rules)
            # TCP checks see each rule as Istio builds it for the network filter.
            by.setdefault((action, policy.dry_run, True), []).extend(
                rule.tcp for rule in policy.rules if rule.tcp is not None)
        self.indexes = {key: RuleIndex(rules) for key, rules in by.items()}
        self.has_allow = any(p.action == "ALLOW" and not p.dry_run for p in self.policies)
        self.has_dry_allow = any(p.action == "ALLOW" and p.dry_run for p in self.policies)
        self.has_dry_deny = any(p.action == "DENY" and p.dry_run for p in self.policies)
        self.providers = frozenset(p.provider for p in self.policies
                                   if p.action == "CUSTOM" and not p.dry_run and p.provider)

    def applies_to(self, labels: Mapping[str, str]) -> bool:
        """True when every selector label is among the workload's labels."""
        for key, value in self.selector.items():
            if labels.get(key) != value:
                return False
        return True


class Scope:
    """The groups of one namespace, found by selector label."""

    __slots__ = ("unselected", "by_label")

    def __init__(self, groups: Iterable[Group]) -> None:
        self.unselected: list[Group] = []
        # label name → label value → groups whose selector's first label that is.
        self.by_label: dict[str, dict[str, list[Group]]] = {}
        for group in groups:
            if not group.selector:
                self.unselected.append(group)
            else:
                key, value = min(group.selector.items())
                self.by_label.setdefault(key, {}).setdefault(value, []).append(group)

    def applicable(self, labels: Mapping[str, str], out: list[Group]) -> None:
        """Append the groups whose selector the labels satisfy (reading labels by name only)."""
        out.extend(self.unselected)
        for key, by_value in self.by_label.items():
            value = labels.get(key)
            if value is not None:
                for group in by_value.get(value, ()):
                    if group.applies_to(labels):
                        out.append(group)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of DENY/ALLOW/AUDIT evaluation with its reason and metadata."""

    allowed: bool
    reason: str
    metadata: Mapping[str, Any]


def _first(groups: list[Group], action: str, dry: bool, request: RequestView) -> CompiledRule | None:
    best: CompiledRule | None = None
    for group in groups:
        index = group.indexes.get((action, dry, request.tcp))
        if index is None:
            continue
        rule = index.first_match(request)
        if rule is not None and (best is None or rule.ordinal < best.ordinal):
            best = rule
    return best


class Engine:
    """All AuthorizationPolicies of one handler, indexed by namespace and selector."""

    def __init__(self, policies: Iterable[CompiledPolicy], root_namespace: str) -> None:
        self.root_namespace = root_namespace
        self.policies = list(policies)
        groups: dict[tuple[str, tuple[tuple[str, str], ...]], Group] = {}
        for policy in self.policies:
            key = (policy.namespace, tuple(sorted(policy.selector.items())))
            group = groups.get(key)
            if group is None:
                group = groups[key] = Group(policy.namespace, dict(policy.selector))
            group.policies.append(policy)
        by_namespace: dict[str, list[Group]] = {}
        for group in groups.values():
            group.finish()
            by_namespace.setdefault(group.namespace, []).append(group)
        self.scopes = {ns: Scope(gs) for ns, gs in by_namespace.items()}
        self.has_custom = any(p.action == "CUSTOM" for p in self.policies)
        self.stats: Counter[str] = Counter()

    def groups_for(self, request: RequestView) -> list[Group]:
        """The groups that apply to the request's destination workload."""
        out: list[Group] = []
        labels = request.instance.destination_labels
        if labels is None:
            labels = {}
        root = self.scopes.get(self.root_namespace)
        if root is not None:
            root.applicable(labels, out)
        namespace = request.instance.destination_namespace
        if namespace and namespace != self.root_namespace:
            scope = self.scopes.get(namespace)
            if scope is not None:
                scope.applicable(labels, out)
        return out

    def custom(self, groups: list[Group], request: RequestView) -> list[CompiledRule]:
        """The first matching CUSTOM rule of each provider applying to the workload, by provider name.

        Istio builds one RBAC + ext_authz filter pair per provider, in sorted order
        (``PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS``); each provider is asked only for
        the requests its own rules match.
        """
        providers: set[str] = set()
        for group in groups:
            providers |= group.providers
        matches = []
        for provider in sorted(providers):
            rule = _first(groups, custom_key(provider), False, request)
            if rule is not None:
                matches.append(rule)
        return matches

    def decide(self, groups: list[Group], request: RequestView) -> Verdict:
        """Evaluate DENY, then ALLOW, then AUDIT and the dry-run policies."""
        stats = self.stats
        metadata: dict[str, Any] = {}
        notes: list[str] = []
        if any(g.has_dry_deny for g in groups):
            self._shadow("deny", _first(groups, "DENY", True, request), metadata, notes)
        denied = _first(groups, "DENY", False, request)
        if denied is not None:
            stats["denied"] += 1
            return Verdict(False, _with(f"RBAC: access denied by {denied.name}", notes), metadata)
        if any(g.has_dry_allow for g in groups):
            self._shadow("allow", _first(groups, "ALLOW", True, request), metadata, notes)
        audited = _first(groups, "AUDIT", False, request)
        if audited is not None:
            metadata["access_log_hint"] = True
            metadata["audit_policy"] = audited.name
            notes.append(f"audited by {audited.name}")
            stats["audited"] += 1
        if not any(g.has_allow for g in groups):
            stats["allowed"] += 1
            return Verdict(True, _with("RBAC: allowed: no ALLOW policy applies to the workload", notes), metadata)
        allowed = _first(groups, "ALLOW", False, request)
        if allowed is None:
            stats["denied"] += 1
            return Verdict(False, _with("RBAC: access denied: no ALLOW policy matched", notes), metadata)
        stats["allowed"] += 1
        return Verdict(True, _with(f"RBAC: allowed by {allowed.name}", notes), metadata)

    def _shadow(self, action: str, rule: CompiledRule | None, metadata: dict[str, Any], notes: list[str]) -> None:
        # Envoy's shadow engine of the ALLOW (DENY) filter holds only the dry-run ALLOW (DENY) policies.
        prefix = f"istio_dry_run_{action}_"
        if action == "allow":
            result = "allowed" if rule is not None else "denied"
        else:
            result = "denied" if rule is not None else "allowed"
        metadata[prefix + "shadow_engine_result"] = result
        if rule is not None:
            metadata[prefix + "shadow_effective_policy_id"] = rule.name
        self.stats[prefix + "shadow_" + result] += 1
        by = f" by {rule.name}" if rule is not None else ""
        notes.append(f"dry-run {action.upper()} policies: would be {result}{by}")


def custom_key(provider: str) -> str:
    """The index action of a provider's CUSTOM rules."""
    return "CUSTOM/" + provider


def _with(reason: str, notes: list[str]) -> str:
    return reason if not notes else f"{reason} ({'; '.join(notes)})"


__all__ = ["Engine", "Group", "RuleIndex", "Scope", "Verdict", "custom_key"]
