"""Mixer's RBAC: ServiceRole / ServiceRoleBinding on the authorization template, from Mixer documents.

The config is Mixer's own form (``kind: rbac`` handler, ``kind: authorization``
instance, a rule) as Istio's bookinfo RBAC samples wrote it; the last test sends
the requests through the native gRPC server.
"""

from __future__ import annotations

import pytest

from policy import Code
from policy.testing import native_check

MIXER = """
apiVersion: config.istio.io/v1alpha2
kind: rbac
metadata: {name: handler, namespace: istio-system}
spec: {config_store_url: "k8s://"}
---
apiVersion: config.istio.io/v1alpha2
kind: authorization
metadata: {name: requestcontext, namespace: istio-system}
spec:
  subject:
    user: source.principal | ""
    groups: request.headers["x-group"] | ""
    properties:
      namespace: source.namespace | ""
  action:
    namespace: destination.namespace | ""
    service: destination.service.host | ""
    method: request.method | ""
    path: request.path | ""
    properties:
      version: destination.labels["version"] | ""
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: rbaccheck, namespace: istio-system}
spec:
  actions:
  - {handler: handler.rbac, instances: [requestcontext.authorization]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: service-viewer, namespace: default}
spec:
  rules:
  - services: ["*"]
    methods: ["GET"]
    constraints:
    - {key: version, values: ["v1", "v2"]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-service-viewer, namespace: default}
spec:
  subjects:
  - properties: {namespace: istio-system}
  - user: cluster.local/ns/default/sa/bookinfo-productpage
  roleRef: {kind: ServiceRole, name: service-viewer}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: reviews-writer, namespace: default}
spec:
  rules:
  - services: ["reviews.default.svc.cluster.local"]
    paths: ["/reviews/*", "*/ratings"]
    methods: ["POST", "PUT"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-reviews-writer, namespace: default}
spec:
  subjects:
  - {user: "*", group: editors}
  - {user: cluster.local/ns/default/sa/admin, properties: {namespace: default}}
  roleRef: {kind: ServiceRole, name: reviews-writer}
"""

PRODUCTPAGE = "cluster.local/ns/default/sa/bookinfo-productpage"


def req(method: str = "GET", path: str = "/reviews/1", service: str = "reviews.default.svc.cluster.local",
        namespace: str = "default", **more) -> dict:
    out = {"destination.namespace": namespace, "destination.service.host": service, "request.method": method,
           "request.path": path, "destination.labels": {"version": "v1"}}
    out.update({k.replace("__", "."): v for k, v in more.items()})
    return out


ROWS = [
    ("binding by user", req(source__principal=PRODUCTPAGE), True,
     "RBAC: allowed by ServiceRoleBinding default/bind-service-viewer (ServiceRole service-viewer)"),
    ("binding by property", req(source__namespace="istio-system"), True, "bind-service-viewer"),
    ("unbound user", req(source__principal="cluster.local/ns/default/sa/other"), False,
     "no binding of ServiceRole service-viewer matches the subject"),
    ("constraint not met", req(source__principal=PRODUCTPAGE, destination__labels={"version": "v3"}), False,
     "no ServiceRole in namespace 'default' grants GET /reviews/1"),
    ("no role for the method", req("DELETE", source__principal=PRODUCTPAGE), False, "no ServiceRole"),
    ("role in another namespace", req(namespace="prod", source__principal=PRODUCTPAGE), False,
     "no ServiceRole in namespace 'prod'"),
    ("path prefix and group", req("POST", "/reviews/7", request__headers={"x-group": "editors"}), True,
     "bind-reviews-writer"),
    ("path suffix", req("PUT", "/v1/ratings", request__headers={"x-group": "editors"}), True, "bind-reviews-writer"),
    ("path not granted", req("POST", "/details", request__headers={"x-group": "editors"}), False, "no ServiceRole"),
    ("service not granted", req("POST", "/reviews/7", service="ratings.default.svc.cluster.local",
                                request__headers={"x-group": "editors"}), False, "no ServiceRole"),
    ("user and properties must both match", req("POST", "/reviews/1", source__principal="cluster.local/ns/default/sa/admin",
                                                source__namespace="prod"), False, "no binding"),
    ("user and properties match", req("POST", "/reviews/1", source__principal="cluster.local/ns/default/sa/admin",
                                      source__namespace="default"), True, "bind-reviews-writer"),
    ("missing action.namespace", req(namespace=""), False, "the request has no action.namespace"),
]


@pytest.mark.parametrize(("request_attrs", "allowed", "text"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
async def test_service_role_scenario(policy_config, policy_service_factory, request_attrs, allowed, text):
    service = await policy_service_factory(policy_config(MIXER))
    decision = await service.check({k: v for k, v in request_attrs.items() if v != ""})
    assert decision.allowed is allowed, decision.message
    (call,) = decision.calls
    assert text in call.result.status.message
    assert call.handler == "handler.rbac.istio-system"
    if not allowed:
        assert decision.code == Code.PERMISSION_DENIED


BAD = [
    ("a field Mixer never read", "kind: ServiceRole\nmetadata: {name: r, namespace: default}\n"
     "spec: {rules: [{services: ['*'], methods: [GET], notPaths: [/admin]}]}",
     "spec.rules[0].notPaths: not supported by Mixer's RBAC"),
    ("a rule without methods", "kind: ServiceRole\nmetadata: {name: r, namespace: default}\n"
     "spec: {rules: [{services: ['*']}]}", "spec.rules[0].methods: at least one value is required"),
]


@pytest.mark.parametrize(("document", "text"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_rbac_documents_are_config_errors(policy_config, policy_host_factory, document, text):
    from policy import ConfigError
    from policy.config import load_config

    directory = policy_config(MIXER + "---\napiVersion: rbac.istio.io/v1alpha1\n" + document + "\n")
    with pytest.raises(ConfigError, match=text.replace("[", r"\[").replace("]", r"\]")):
        load_config(directory, policy_host_factory())


async def test_through_the_native_grpc_server(policy_config, policy_server_factory):
    running = await policy_server_factory(policy_config(MIXER))
    for address in (running.tcp, running.unix):
        stub = running.native(address)
        allowed = await native_check(stub, req(source__principal=PRODUCTPAGE))
        denied = await native_check(stub, req("DELETE", source__principal=PRODUCTPAGE))
        assert allowed.precondition.status.code == Code.OK
        assert denied.precondition.status.code == Code.PERMISSION_DENIED
        assert "RBAC: permission denied: no ServiceRole" in denied.precondition.status.message
        assert allowed.precondition.valid_duration.seconds == 60


async def test_binding_to_a_missing_role_is_skipped_with_a_warning(policy_config, policy_service_factory, caplog):
    # Mixer's controller.go: "Failed to add ServiceRoleBinding" is logged and the binding skipped.
    extra = ("---\napiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\n"
             "metadata: {name: b, namespace: default}\n"
             "spec: {subjects: [{user: mallory}], roleRef: {kind: ServiceRole, name: nope}}\n")
    service = await policy_service_factory(policy_config(MIXER + extra))
    assert "ServiceRole 'nope' does not exist in namespace 'default'; the binding is skipped" in caplog.text
    assert (await service.check(req(source__principal=PRODUCTPAGE))).allowed
    assert not (await service.check(req(source__principal="mallory"))).allowed


STAR_ROLE = """
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: any-version, namespace: default}
spec:
  rules:
  - services: ["*"]
    methods: ["DELETE"]
    constraints:
    - {key: version, values: ["*"]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-any-version, namespace: default}
spec:
  subjects: [{user: "*"}]
  roleRef: {kind: ServiceRole, name: any-version}
"""


@pytest.mark.parametrize(("labels", "allowed"), [({"version": "v9"}, True), ({}, True)])
async def test_star_constraint_matches_an_empty_property(policy_config, policy_service_factory, labels, allowed):
    # Mixer's stringMatch: s == "*" matches any string, "" too (the instance gives version: "").
    service = await policy_service_factory(policy_config(MIXER + STAR_ROLE))
    decision = await service.check({**req("DELETE"), "destination.labels": labels})
    assert decision.allowed is allowed, decision.message
