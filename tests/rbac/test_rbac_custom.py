"""CUSTOM AuthorizationPolicies: delegation to a provider handler, evaluation order, provider failures."""

from __future__ import annotations

import textwrap

import pytest

from policy import Code, ConfigError
from policy.config import load_config
from tests import scripted as scripted_adapters
from tests.rbac.conftest import attrs, reason

OPA_PROVIDER = """
  - name: opa-check
    adapter: opa
    params:
      validDuration: 10s
      policies:
        - |
          package envoy.authz
          import rego.v1
          default allow := false
          allow if input.attributes.request.http.headers["x-token"] == "let-me-in"
"""


def config(providers: str, extra_handlers: str, policies: str) -> str:
    return textwrap.dedent(f"""
        handlers:
          - name: authz
            adapter: rbac
            params: {{providers: {providers}}}
        """) + extra_handlers.strip("\n") + "\n" + textwrap.dedent("""
        instances:
          - {name: request, template: requestcontext, params: {}}
        rules:
          - name: authz
            actions: [{handler: authz, instances: [request]}]
        """) + "---\n" + textwrap.dedent(policies)


def ap(name: str, spec: str, annotations: str = "") -> str:
    meta = f"{{name: {name}, namespace: foo{', annotations: ' + annotations if annotations else ''}}}"
    return f"---\napiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {meta}\nspec: {spec}\n"


CUSTOM_ADMIN = ap("ext-admin", "{action: CUSTOM, provider: {name: ext}, rules: [{to: [{operation: {paths: ['/admin*']}}]}]}")


# The stand-in external authorizers (tests.scripted's adapters), by behaviour: they drive the
# delegation logic through failures a real engine cannot produce on demand (raising, hanging);
# the happy path is also tested with a real opa handler as the provider.
_PROVIDERS = {
    "allow": ("shaper", "{code: OK, message: provider ok, valid_duration: 20, valid_use_count: 50,"
                        " append_request_headers: {x-ext-authz: checked}, metadata: {provider: scripted}}"),
    "deny": ("shaper", "{code: PERMISSION_DENIED, message: not on the guest list, valid_duration: 5,"
                       " http_status: 401, body: go away}"),
    "unavailable": ("script", "{behaviour: adapter-error}"),   # AdapterError(UNAVAILABLE, "backend down")
    "raise": ("script", "{behaviour: raise}"),                 # RuntimeError("boom")
    "slow": ("async-script", "{behaviour: allow, delay: 5.0}"),
}


def scripted(behaviour: str, name: str = "provider") -> str:
    adapter, params = _PROVIDERS[behaviour]
    return f"""
  - name: {name}
    adapter: {adapter}
    params: {params}
"""


@pytest.fixture
def service_for(policy_config, policy_service_factory):
    async def make(text: str):
        return await policy_service_factory(policy_config(text), scripted_adapters)
    return make


async def test_opa_handler_as_the_provider(service_for):
    service = await service_for(config("{ext: opa-check}", OPA_PROVIDER, CUSTOM_ADMIN))
    denied = await service.check(attrs(request__path="/admin/users"))
    assert denied.code == Code.PERMISSION_DENIED
    assert reason(denied) == ("RBAC: access denied by CUSTOM provider 'ext' for ns[foo]-policy[ext-admin]-rule[0]:"
                              " OPA: denied by envoy/authz/allow")
    allowed = await service.check(attrs(request__path="/admin/users", request__headers={"x-token": "let-me-in"}))
    assert allowed.allowed
    assert "CUSTOM provider 'ext' allowed ns[foo]-policy[ext-admin]-rule[0]" in reason(allowed)
    assert allowed.valid_duration == 10  # the provider's duration caps rbac's 60s


async def test_provider_is_asked_only_when_a_custom_rule_matches(service_for):
    service = await service_for(config("{ext: provider}", scripted("allow"), CUSTOM_ADMIN))
    provider = service.snapshot.handlers["provider"].handler
    decision = await service.check(attrs(request__path="/public"))
    assert decision.allowed and provider.calls == []
    assert decision.valid_duration == 60
    await service.check(attrs(request__path="/admin"))
    assert len(provider.calls) == 1 and provider.calls[0].request_path == "/admin"


async def test_provider_allow_brings_its_headers_and_a_deny_policy_still_denies(service_for):
    policies = CUSTOM_ADMIN + ap("deny-delete", "{action: DENY, rules: [{to: [{operation: {methods: [DELETE]}}]}]}")
    service = await service_for(config("{ext: provider}", scripted("allow"), policies))
    allowed = await service.check(attrs(request__path="/admin", request__method="GET"))
    assert allowed.allowed
    assert [(h.name, h.value) for h in allowed.request_headers] == [("x-ext-authz", "checked")]
    assert allowed.metadata["provider"] == "scripted"
    assert (allowed.valid_duration, allowed.valid_use_count) == (20, 50)
    denied = await service.check(attrs(request__path="/admin", request__method="DELETE"))
    assert "access denied by ns[foo]-policy[deny-delete]-rule[0]" in reason(denied)
    assert denied.request_headers == ()


async def test_custom_deny_beats_a_matching_allow(service_for):
    service = await service_for(config("{ext: provider}", scripted("deny"), CUSTOM_ADMIN + ap("all", "{rules: [{}]}")))
    denied = await service.check(attrs(request__path="/admin"))
    assert denied.code == Code.PERMISSION_DENIED
    assert "RBAC: access denied by CUSTOM provider 'ext'" in reason(denied)
    assert "not on the guest list" in reason(denied)
    assert (denied.http_status, denied.body) == (401, "go away")
    assert (await service.check(attrs(request__path="/x"))).allowed


@pytest.mark.parametrize(("behaviour", "code", "text"), [
    ("unavailable", Code.UNAVAILABLE, "backend down"),
    ("raise", Code.UNAVAILABLE, "boom"),
    ("slow", Code.DEADLINE_EXCEEDED, "failed"),
])
async def test_provider_failure_denies_uncached(service_for, behaviour, code, text):
    providers = "{ext: {handler: provider, timeout: 50ms}}"
    service = await service_for(config(providers, scripted(behaviour), CUSTOM_ADMIN))
    decision = await service.check(attrs(request__path="/admin"))
    assert decision.code == code
    assert text in reason(decision)
    assert not decision.valid_duration


async def test_provider_fail_open_allows_uncached(service_for):
    service = await service_for(config("{ext: {handler: provider, failOpen: true}}", scripted("unavailable"),
                                       CUSTOM_ADMIN))
    decision = await service.check(attrs(request__path="/admin"))
    assert decision.allowed
    assert "allowed by failOpen" in reason(decision)
    assert not decision.valid_duration


async def test_each_provider_is_asked_for_the_requests_its_rules_match(service_for):
    # Istio (tests/integration/security/authz_multiple_providers_test.go): one filter pair per
    # provider, each triggered by its own rules.
    policies = CUSTOM_ADMIN + ap("ext2", "{action: CUSTOM, provider: {name: other}, rules: [{to: [{operation: {paths: ['/other*']}}]}]}")
    service = await service_for(config("{ext: provider, other: second}",
                                       scripted("allow") + scripted("deny", name="second"), policies))
    first = service.snapshot.handlers["provider"].handler
    second = service.snapshot.handlers["second"].handler
    assert (await service.check(attrs(request__path="/x"))).allowed
    assert first.calls == [] and second.calls == []
    assert (await service.check(attrs(request__path="/admin"))).allowed
    assert len(first.calls) == 1 and second.calls == []
    denied = await service.check(attrs(request__path="/other"))
    assert not denied.allowed
    assert "CUSTOM provider 'other'" in reason(denied)
    assert len(first.calls) == 1 and len(second.calls) == 1


async def test_overlapping_providers_must_all_allow(service_for):
    policies = (ap("a", "{action: CUSTOM, provider: {name: ext}, rules: [{}]}")
                + ap("b", "{action: CUSTOM, provider: {name: other}, rules: [{}]}"))
    both_allow = await service_for(config("{ext: provider, other: second}",
                                          scripted("allow") + scripted("allow", name="second"), policies))
    assert (await both_allow.check(attrs(request__path="/x"))).allowed
    one_denies = await service_for(config("{ext: provider, other: second}",
                                          scripted("allow") + scripted("deny", name="second"), policies))
    assert not (await one_denies.check(attrs(request__path="/x"))).allowed


@pytest.mark.parametrize("providers, extra", [("{}", ""), ("{other: provider}", None)])
async def test_unconfigured_provider_denies_only_what_its_rules_match(service_for, caplog, providers, extra):
    extra = scripted("allow") if extra is None else extra
    service = await service_for(config(providers, extra, CUSTOM_ADMIN))
    assert (await service.check(attrs(request__path="/public"))).allowed
    denied = await service.check(attrs(request__path="/admin/x"))
    assert not denied.allowed
    assert "CUSTOM provider 'ext' is not configured" in reason(denied)
    assert "provider 'ext' is not configured" in caplog.text


async def test_dry_run_custom_policy_does_not_call_the_provider(service_for):
    policy = ap("ext-admin", "{action: CUSTOM, provider: {name: ext}, rules: [{}]}",
                annotations="{istio.io/dry-run: 'true'}")
    service = await service_for(config("{ext: provider}", scripted("deny"), policy))
    assert (await service.check(attrs(request__path="/admin"))).allowed
    assert service.snapshot.handlers["provider"].handler.calls == []


def test_unknown_provider_handler_is_a_config_error(policy_config, policy_host_factory):
    directory = policy_config(config("{ext: nope}", "", CUSTOM_ADMIN))
    with pytest.raises(ConfigError, match="handler authz delegates to handler 'nope', which not found"):
        load_config(directory, policy_host_factory(scripted_adapters))


def test_provider_handler_used_by_no_rule_is_built_without_warning(policy_config, policy_host_factory):
    snapshot = load_config(policy_config(config("{ext: provider}", scripted("allow"), CUSTOM_ADMIN)),
                           policy_host_factory(scripted_adapters))
    assert set(snapshot.handlers) == {"authz", "provider"}
    assert not [w for w in snapshot.warnings if "not used" in w.message]
