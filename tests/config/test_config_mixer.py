"""Mixer's Kubernetes documents: kinds, reference resolution, namespace scoping, extra documents."""

from __future__ import annotations

import pytest

from policy.attributes import AttributeBag
from policy.config import load_config, parse_config
from policy.sdk import ConfigError

API = "apiVersion: config.istio.io/v1alpha2"

ENTITIES = f"""
{API}
kind: handler
metadata: {{name: whitelist, namespace: istio-system}}
spec: {{compiledAdapter: testlist, params: {{overrides: [a]}}}}
---
{API}
kind: testlist
metadata: {{name: whitelist, namespace: istio-system}}
spec: {{overrides: [b]}}
---
{API}
kind: handler
metadata: {{name: local, namespace: default}}
spec: {{adapter: testlist}}
---
{API}
kind: handler
metadata: {{name: dotted.name, namespace: istio-system}}
spec: {{compiledAdapter: testlist}}
---
{API}
kind: instance
metadata: {{name: sourceip, namespace: istio-system}}
spec: {{compiledTemplate: listentry, params: {{value: source.ip | ip("0.0.0.0")}}}}
---
{API}
kind: listentry
metadata: {{name: sourceip, namespace: istio-system}}
spec: {{value: source.uid | "none"}}
---
{API}
kind: instance
metadata: {{name: user, namespace: default}}
spec: {{template: listentry, params: {{value: request.auth.principal | ""}}}}
"""


def rule(name: str, namespace: str, handler: str, instances: list[str]) -> str:
    return f"""
---
{API}
kind: rule
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  actions: [{{handler: {handler}, instances: {instances}}}]
"""


def resolved(snapshot, rule_name: str) -> tuple[str, list[str]]:
    (found,) = [r for r in snapshot.rules if r.name == rule_name]
    (action,) = found.check_actions
    return action.handler.name, [i.name for i in action.instances]


@pytest.mark.parametrize(
    ("namespace", "handler", "instance", "want_handler", "want_instance"),
    [
        # one part: name.<kind>.<rule namespace>
        ("istio-system", "whitelist", "sourceip", "whitelist.istio-system", "sourceip.instance.istio-system"),
        ("default", "local", "user", "local.default", "user.instance.default"),
        # two parts, the second a kind (legacy): name.kind.<rule namespace>
        ("istio-system", "whitelist.testlist", "sourceip.listentry", "whitelist.testlist.istio-system",
         "sourceip.listentry.istio-system"),
        # two parts, the second a namespace: name.<kind>.namespace
        ("default", "whitelist.istio-system", "sourceip.istio-system", "whitelist.istio-system",
         "sourceip.instance.istio-system"),
        # three parts: exact
        ("default", "whitelist.testlist.istio-system", "sourceip.listentry.istio-system",
         "whitelist.testlist.istio-system", "sourceip.listentry.istio-system"),
        ("default", "whitelist.handler.istio-system", "sourceip.instance.istio-system",
         "whitelist.istio-system", "sourceip.instance.istio-system"),
        # more parts (a name with a dot): the text itself, exactly
        ("default", "dotted.name.handler.istio-system", "user", "dotted.name.istio-system",
         "user.instance.default"),
    ],
)
def test_reference_resolution(write, host, namespace, handler, instance, want_handler, want_instance):
    path = write(ENTITIES + rule("r", namespace, handler, [instance]))
    snapshot = load_config(path, host)
    assert resolved(snapshot, f"r.rule.{namespace}") == (want_handler, [want_instance])


def test_legacy_handler_params_come_from_spec(write, host):
    path = write(ENTITIES + rule("r", "istio-system", "whitelist.testlist", ["sourceip.listentry"])
                 + rule("s", "istio-system", "whitelist", ["sourceip"]))
    snapshot = load_config(path, host)
    assert snapshot.handlers["whitelist.testlist.istio-system"].handler.params.overrides == ["b"]
    assert snapshot.handlers["whitelist.istio-system"].handler.params.overrides == ["a"]


@pytest.mark.parametrize(
    ("namespace", "handler", "instance", "field", "message"),
    [
        # Mixer rules do not fall back to the root namespace.
        ("default", "whitelist", "user", "spec.actions[0].handler",
         "handler 'whitelist' not found (looked for whitelist.handler.default); handlers in namespace"
         " default: local"),
        ("istio-system", "whitelist.nosuch", "sourceip", "spec.actions[0].handler",
         "handler 'whitelist.nosuch' not found (looked for whitelist.nosuch.istio-system,"
         " whitelist.handler.nosuch); handlers in namespace istio-system or nosuch: dotted.name (istio-system),"
         " whitelist (istio-system), whitelist.testlist (istio-system)"),
        ("default", "local", "sourceip", "spec.actions[0].instances[0]",
         "instance 'sourceip' not found (looked for sourceip.instance.default); instances in namespace"
         " default: user"),
        ("default", "local", "a.b.c", "spec.actions[0].instances[0]",
         "instance 'a.b.c' not found (looked for a.b.c); no instances in namespace c"),
    ],
)
def test_unresolved_references(write, host, namespace, handler, instance, field, message):
    path = write(ENTITIES + rule("r", namespace, handler, [instance]))
    with pytest.raises(ConfigError) as info:
        parse_config(path, host)
    (issue,) = info.value.issues
    assert (issue.file, issue.document, issue.field, issue.message) == (
        str(path), f"rule/r.{namespace}", field, message)


def test_namespace_scoping(write, host):
    path = write(f"""
        settings: {{rootNamespace: mesh}}
        ---
        {API}
        kind: handler
        metadata: {{name: h}}
        spec: {{compiledAdapter: testmulti}}
        ---
        {API}
        kind: checknothing
        metadata: {{name: c}}
        ---
        {API}
        kind: rule
        metadata: {{name: everywhere}}
        spec: {{actions: [{{handler: h, instances: [c.checknothing]}}]}}
        ---
        {API}
        kind: rule
        metadata: {{name: only-shop, namespace: shop}}
        spec: {{actions: [{{handler: h.mesh, instances: [c.checknothing.mesh]}}]}}
        ---
        {API}
        kind: rule
        metadata: {{name: only-bank, namespace: bank}}
        spec:
          match: request.path == "/pay"
          actions: [{{handler: h.handler.mesh, instances: [c.checknothing.mesh]}}]
    """)
    snapshot = load_config(path, host)
    assert [(r.name, r.namespace) for r in snapshot.rules] == [
        ("everywhere.rule.mesh", "mesh"), ("only-shop.rule.shop", "shop"), ("only-bank.rule.bank", "bank")]

    def names(attrs):
        return [r.name for r in snapshot.rules_for(AttributeBag(attrs))]

    assert names({"destination.namespace": "shop"}) == ["everywhere.rule.mesh", "only-shop.rule.shop"]
    assert names({"destination.service.namespace": "bank"}) == ["everywhere.rule.mesh", "only-bank.rule.bank"]
    assert names({"destination.namespace": "elsewhere"}) == ["everywhere.rule.mesh"]
    assert names({}) == ["everywhere.rule.mesh"]


def test_extra_documents_reach_every_handler_and_warn_once_per_kind(tmp_path, write, host, built):
    write(f"""
        apiVersion: security.istio.io/v1beta1
        kind: AuthorizationPolicy
        metadata: {{name: allow-get, namespace: shop}}
        spec: {{action: ALLOW}}
        ---
        apiVersion: security.istio.io/v1beta1
        kind: AuthorizationPolicy
        metadata: {{name: deny-all, namespace: bank}}
        spec: {{}}
        ---
        {API}
        kind: QuotaSpec
        metadata: {{name: request-count}}
        spec: {{rules: []}}
    """, "a-extras.yaml")
    write(ENTITIES + rule("r", "istio-system", "whitelist", ["sourceip"])
          + rule("s", "istio-system", "whitelist.testlist", ["sourceip.listentry"]), "b-policy.yaml")
    model = parse_config(tmp_path, host)
    assert [e.document for e in model.extra_documents] == [
        "AuthorizationPolicy/allow-get.shop", "AuthorizationPolicy/deny-all.bank", "QuotaSpec/request-count"]
    warnings = [(w.document, w.message) for w in model.warnings if w.document.startswith(("Auth", "Quota"))]
    # The built-in rbac adapter reads AuthorizationPolicy documents: no "unclaimed kind" warning for them,
    # but no rule uses an rbac handler, so each says it is not enforced.
    assert [(d, m.split(":")[0]) for d, m in warnings if d.startswith("AuthorizationPolicy")] == [
        ("AuthorizationPolicy/allow-get.shop", "not enforced"), ("AuthorizationPolicy/deny-all.bank", "not enforced")]
    warnings = [(d, m) for d, m in warnings if not m.startswith("not enforced")]
    # QuotaSpecs are read by policy.config.quota_specs: this one only warns that no binding uses it.
    assert [d for d, _ in warnings] == ["QuotaSpec/request-count"]
    assert "not bound by any QuotaSpecBinding" in warnings[0][1]
    load_config(tmp_path, host)
    assert len(built) == 2
    for handler in built:
        documents = handler.context.extras["documents"]
        assert [d["metadata"]["name"] for d in documents] == ["allow-get", "deny-all", "request-count"]
        assert {d["_source"] for d in documents} == {str(tmp_path / "a-extras.yaml")}
        assert handler.context.config_dir == tmp_path


def test_adapter_can_claim_a_document_kind(write, host, monkeypatch):
    from tests.config.conftest import ListAdapter

    monkeypatch.setattr(ListAdapter, "document_kinds", ("AuthorizationPolicy",), raising=False)
    path = write("apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n")
    model = parse_config(path, host)
    assert len(model.extra_documents) == 1
    # Claimed: no "unclaimed kind" warning; but with no rule and no handler of that adapter it is not enforced.
    assert [w.message.split(":")[0] for w in model.warnings] == [
        "not enforced", "the config has no rules"]
    assert "'testlist'" in model.warnings[0].message


def test_sampling_is_ignored_with_a_warning(write, host):
    path = write(ENTITIES + f"""
---
{API}
kind: rule
metadata: {{name: sampled, namespace: istio-system}}
spec:
  sampling: {{random: {{percentSampled: 10}}}}
  actions: [{{handler: whitelist, instances: [sourceip]}}]
""")
    model = parse_config(path, host)
    (warning,) = [w for w in model.warnings if w.field == "spec.sampling"]
    assert warning.document == "rule/sampled.istio-system" and warning.severity == "warning"
    assert "ignored" in warning.message


def test_kubernetes_metadata_and_status_are_accepted(write, host):
    path = write(f"""
        {API}
        kind: handler
        metadata:
          name: h
          namespace: istio-system
          labels: {{app: mixer}}
          annotations: {{note: x}}
          creationTimestamp: 2020-01-01T00:00:00Z
          resourceVersion: "12"
        spec: {{compiledAdapter: testlist}}
        status: {{}}
    """)
    assert list(parse_config(path, host).handlers) == ["h.istio-system"]


def test_mixer_structure_errors(write, host):
    path = write(f"""
        {API}
        kind: handler
        metadata: {{name: both, namespace: ns, colour: red}}
        spec: {{compiledAdapter: testlist, adapter: testlist}}
        ---
        {API}
        kind: handler
        metadata: {{name: remote, namespace: ns}}
        spec: {{adapter: testlist, connection: {{address: "x:1"}}}}
        extra: 1
        ---
        {API}
        kind: handler
        metadata: {{name: none, namespace: ns}}
        spec: {{}}
        ---
        {API}
        kind: instance
        metadata: {{name: bound, namespace: ns}}
        spec: {{compiledTemplate: listentry, attributeBindings: {{a: b}}}}
        ---
        {API}
        kind: rule
        metadata: {{namespace: ns}}
        spec: {{}}
        ---
        kind: rule
        metadata: {{name: x}}
    """)
    with pytest.raises(ConfigError) as info:
        parse_config(path, host)
    got = [(i.document, i.field) for i in info.value.issues]
    assert got == [
        ("handler/both.ns", "metadata.colour"),
        ("handler/both.ns", "spec.adapter"),
        ("handler/remote.ns", "extra"),
        ("handler/remote.ns", "spec.connection"),
        ("handler/none.ns", "spec.compiledAdapter"),
        ("instance/bound.ns", "spec.attributeBindings"),
        ("document[4] (line 22)", "metadata.name"),
        ("document[5] (line 27)", "apiVersion"),
    ]


def test_mixer_kinds_not_read_are_explained(write, host):
    path = write(f"""
        {API}
        kind: attributemanifest
        metadata: {{name: istioproxy, namespace: istio-system}}
        spec: {{attributes: {{}}}}
        ---
        {API}
        kind: stackdriver
        metadata: {{name: handler, namespace: istio-system}}
    """)
    model = parse_config(path, host)
    assert [(w.document, w.message.split(":")[0]) for w in model.warnings] == [
        ("attributemanifest/istioproxy.istio-system", "kind 'attributemanifest' is not read"),
        ("stackdriver/handler.istio-system", "kind 'stackdriver' is neither an installed adapter (adapters"),
        ("rules", "the config has no rules"),
    ]
    assert "the attribute vocabulary comes from plugins" in model.warnings[0].message
