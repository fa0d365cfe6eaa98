"""Bad AuthorizationPolicies are config errors naming file, policy and field; reload keeps the last good config."""

from __future__ import annotations

import asyncio

import pytest

from policy import ConfigError
from policy.config import load_config
from tests.rbac.conftest import attrs, config_text, reason


def policy(spec: str, name: str = "p") -> str:
    return ("apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: {name}, namespace: foo}}\nspec: {spec}\n")


BAD = [
    ("service account wildcard", "{rules: [{from: [{source: {serviceAccounts: ['ns/*']}}]}]}",
     "wildcard not allowed in a service account"),
    ("service account format", "{rules: [{from: [{source: {serviceAccounts: ['a/b/c']}}]}]}",
     "expected 'serviceAccount' or 'namespace/serviceAccount'"),
    ("DENY without rules", "{action: DENY}", "DENY action without `rules` is meaningless"),
    ("CUSTOM without rules", "{action: CUSTOM, provider: {name: ext}}", "CUSTOM action without `rules`"),
    ("CUSTOM with principals", "{action: CUSTOM, provider: {name: ext}, rules: [{from: [{source: {principals: [a]}}]}]}",
     "source.principals: currently not supported with CUSTOM action"),
    ("CUSTOM with a JWT key", "{action: CUSTOM, provider: {name: ext}, rules: [{when: [{key: request.auth.principal, values: [a]}]}]}",
     "request.auth.principal is currently not supported with CUSTOM action"),
    ("empty value", "{rules: [{to: [{operation: {paths: ['']}}]}]}", "paths: empty value not allowed"),
    ("trust domain with a slash", "{rules: [{from: [{source: {trustDomains: ['a/b']}}]}]}",
     "trust domain must not contain '/'"),
    ("trust domain wildcard inside", "{rules: [{from: [{source: {notTrustDomains: ['a*b']}}]}]}",
     "one '*', at the start or end only"),
    ("experimental Envoy filter key", "{rules: [{when: [{key: 'experimental.envoy.filters.a.b[c]', values: [x]}]}]}",
     "is not supported: Envoy filter metadata"),
    ("destination.labels key", "{rules: [{when: [{key: 'destination.labels[app]', values: [x]}]}]}",
     "replaces it by the workload selector"),
    ("unknown spec field", "{rulez: []}", "spec.rulez: unknown field"),
    ("unknown action", "{action: PERMIT}", "spec.action: expected one of ALLOW, DENY, AUDIT, CUSTOM"),
    ("CUSTOM without provider", "{action: CUSTOM, rules: [{}]}", "spec.provider.name: a CUSTOM policy needs"),
    ("provider on ALLOW", "{provider: {name: x}, rules: [{}]}", "provider is only allowed with action CUSTOM"),
    ("bad CIDR", "{rules: [{from: [{source: {ipBlocks: ['10.0.0.300/8']}}]}]}",
     "spec.rules[0].from[0].source: '10.0.0.300/8' is not an IP address or CIDR block"),
    ("bad port", "{rules: [{to: [{operation: {ports: ['http']}}]}]}", "'http' is not a port number"),
    ("port out of range", "{rules: [{to: [{operation: {ports: ['70000']}}]}]}", "port 70000 is out of range"),
    ("{**} not last", "{rules: [{to: [{operation: {paths: ['/a/{**}/{*}']}}]}]}", "{**} must be the last operator"),
    ("template inside a segment", "{rules: [{to: [{operation: {paths: ['/a{*}']}}]}]}", "must be a whole path segment"),
    ("unknown when key", "{rules: [{when: [{key: request.bogus, values: [x]}]}]}",
     "spec.rules[0].when[0].key: unknown attribute 'request.bogus'"),
    ("header key without name", "{rules: [{when: [{key: request.headers, values: [x]}]}]}",
     "the name must be given in brackets"),
    ("when without values", "{rules: [{when: [{key: source.ip}]}]}", "needs values or notValues"),
    ("empty source", "{rules: [{from: [{source: {}}]}]}", "a source must set at least one field"),
    ("unknown source field", "{rules: [{from: [{source: {users: [a]}}]}]}", "source.users: unknown field"),
    ("serviceAccounts with principals", "{rules: [{from: [{source: {serviceAccounts: [a], principals: [b]}}]}]}",
     "serviceAccounts cannot be set together with principals or namespaces"),
    ("values not a list", "{rules: [{to: [{operation: {methods: GET}}]}]}", "expected a list of strings"),
    ("targetRef with selector", "{selector: {matchLabels: {a: b}}, targetRef: {kind: Gateway, name: gw}}",
     "at most one of selector and targetRef"),
]


@pytest.mark.parametrize(("spec", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_policy_is_a_config_error(policy_config, policy_host_factory, spec, expected):
    directory = policy_config(config_text(policy(spec)))
    with pytest.raises(ConfigError) as caught:
        load_config(directory, policy_host_factory())
    text = str(caught.value)
    assert expected in text
    assert "AuthorizationPolicy/p.foo" in text and "policy.yaml" in text


def test_every_bad_policy_is_reported_at_once(policy_config, policy_host_factory):
    directory = policy_config(config_text(policy("{action: PERMIT}", "a") + "---\n" + policy("{rulez: 1}", "b")))
    with pytest.raises(ConfigError) as caught:
        load_config(directory, policy_host_factory())
    assert len(caught.value.issues) == 2


def test_policy_files_param_and_unreadable_files(tmp_path, policy_config, policy_host_factory):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "deny.yaml").write_text(policy("{action: DENY, rules: [{}]}"))
    directory = policy_config(config_text("", params=f"{{policyFiles: ['{tmp_path / 'policies'}']}}"))
    snapshot = load_config(directory, policy_host_factory())
    assert len(snapshot.handlers["authz"].handler.engine.policies) == 1
    missing = policy_config(config_text("", params=f"{{policyFiles: ['{tmp_path / 'nope.yaml'}']}}"),
                            name="other.yaml")
    (missing / "policy.yaml").unlink()
    with pytest.raises(ConfigError, match="nope.yaml: cannot read policies"):
        load_config(missing, policy_host_factory())


def test_mixer_config_store_url_fs_reads_a_directory(tmp_path, policy_config, policy_host_factory):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "p.yaml").write_text(policy("{}"))
    directory = policy_config(config_text("", params=f"{{configStoreUrl: 'fs://{tmp_path / 'store'}'}}"))
    snapshot = load_config(directory, policy_host_factory())
    assert [p.name for p in snapshot.handlers["authz"].handler.engine.policies] == ["p"]


async def test_reload_with_a_bad_policy_keeps_the_last_good_one(policy_config, policy_service_factory):
    directory = policy_config(config_text(policy("{action: DENY, rules: [{}]}")))
    service = await policy_service_factory(directory)
    assert not (await service.check(attrs())).allowed
    (directory / "policy.yaml").write_text(config_text(policy("{action: DENY, rules: [{from: [{source: "
                                                              "{ipBlocks: [not-an-ip]}}]}]}")))
    assert await service.reload(force=True) is False
    assert "'not-an-ip' is not an IP address" in " ".join(service.reload_status.errors)
    decision = await service.check(attrs(request__path="/uncached"))
    assert decision.generation == 1
    assert not decision.allowed and "access denied by ns[foo]-policy[p]-rule[0]" in reason(decision)
    (directory / "policy.yaml").write_text(config_text(policy("{rules: [{}]}")))
    await asyncio.sleep(0)
    assert await service.reload(force=True) is True
    assert (await service.check(attrs())).allowed


async def test_policy_files_are_reloaded_when_they_change(tmp_path, policy_config, policy_service_factory, caplog):
    import os

    def write(text: str) -> None:
        target = tmp_path / "policies.yaml"
        target.write_text(text)
        stat = target.stat()  # move the mtime on, whatever the filesystem's resolution
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))

    write(policy("{action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}"))
    directory = policy_config(config_text("", params=f"{{policyFiles: ['{tmp_path / 'policies.yaml'}'],"
                                                     " reloadInterval: 1us}"))
    service = await policy_service_factory(directory)
    handler = service.snapshot.handlers["authz"].handler
    assert not (await service.check(attrs(request__method="DELETE"))).allowed
    write(policy("{action: DENY, rules: [{to: [{operation: {methods: [PUT]}}]}]}"))
    assert not (await service.check(attrs(request__method="PUT"))).allowed
    assert (await service.check(attrs(request__method="DELETE", request__path="/new"))).allowed
    assert handler.reloads == 1
    write(policy("{action: DENY, rules: [{to: [{operation: {ports: [http]}}]}]}"))
    still = await service.check(attrs(request__method="PUT", request__path="/other"))
    assert not still.allowed
    assert "'http' is not a port number" in handler.last_error
    assert "the last good policies stay in force" in caplog.text


@pytest.mark.parametrize("target", ["targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}",
                                    "targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]"])
async def test_gateway_attached_policy_is_ignored_with_a_warning(decide, caplog, target):
    # A DENY-all attached to a gateway must not deny the sidecar's requests, nor reject the config.
    decision = await decide(policy(f"{{action: DENY, {target}, rules: [{{}}]}}"), attrs(request__path="/x"))
    assert decision.allowed
    assert "the policy is ignored" in caplog.text
