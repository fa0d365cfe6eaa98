"""Every ``from`` / ``to`` / ``when`` field of an AuthorizationPolicy rule, with its ``not`` twin.

Each row is one ALLOW policy with a single rule in namespace ``foo`` and one request;
allowed means the rule matched (reason ``ns[foo]-policy[p]-rule[0]``), denied means it
did not (``no ALLOW policy matched``).
"""

from __future__ import annotations

import json

import pytest

from tests.rbac.conftest import attrs, reason

SLEEP = "cluster.local/ns/default/sa/sleep"
RAW_CLAIMS = json.dumps({"iss": "https://accounts.google.com", "sub": "alice", "aud": ["web", "api"],
                         "azp": "frontend", "groups": ["admins", "dev"], "org": {"team": "payments"}})


def rule(body: str) -> str:
    """An ALLOW policy ``p`` in ``foo`` with one rule."""
    return ("apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: p, namespace: foo}}\nspec: {{rules: [{body}]}}\n")


def src(fields: str) -> str:
    return rule(f"{{from: [{{source: {fields}}}]}}")


def op(fields: str) -> str:
    return rule(f"{{to: [{{operation: {fields}}}]}}")


def when(key: str, values: str = "", not_values: str = "") -> str:
    parts = [f"key: '{key}'"]
    if values:
        parts.append(f"values: {values}")
    if not_values:
        parts.append(f"notValues: {not_values}")
    return rule(f"{{when: [{{{', '.join(parts)}}}]}}")


ROWS = [
    # --- from.source -----------------------------------------------------------------------------
    ("principals exact", src(f"{{principals: ['{SLEEP}']}}"), attrs(source__principal=SLEEP), True),
    ("principals with spiffe:// in the request", src(f"{{principals: ['{SLEEP}']}}"),
     attrs(source__principal="spiffe://" + SLEEP), True),
    ("principals other", src(f"{{principals: ['{SLEEP}']}}"),
     attrs(source__principal="cluster.local/ns/default/sa/other"), False),
    ("principals prefix", src("{principals: ['cluster.local/ns/default/*']}"), attrs(source__principal=SLEEP), True),
    ("principals suffix", src("{principals: ['*/sa/sleep']}"), attrs(source__principal=SLEEP), True),
    ("principals presence needs a principal", src("{principals: ['*']}"), attrs(), False),
    ("principals presence", src("{principals: ['*']}"), attrs(source__principal=SLEEP), True),
    ("notPrincipals excludes", src(f"{{notPrincipals: ['{SLEEP}']}}"), attrs(source__principal=SLEEP), False),
    ("notPrincipals admits others", src(f"{{notPrincipals: ['{SLEEP}']}}"), attrs(source__principal="x/y"), True),
    ("notPrincipals admits no principal", src("{notPrincipals: ['*']}"), attrs(), True),
    ("requestPrincipals iss/sub", src("{requestPrincipals: ['https://accounts.google.com/alice']}"),
     attrs(request__auth__principal="https://accounts.google.com/alice"), True),
    ("requestPrincipals other sub", src("{requestPrincipals: ['https://accounts.google.com/alice']}"),
     attrs(request__auth__principal="https://accounts.google.com/bob"), False),
    ("requestPrincipals iss/*", src("{requestPrincipals: ['https://accounts.google.com/*']}"),
     attrs(request__auth__principal="https://accounts.google.com/bob"), True),
    ("requestPrincipals */sub", src("{requestPrincipals: ['*/alice']}"),
     attrs(request__auth__principal="https://issuer.example/alice"), True),
    ("requestPrincipals * needs a JWT", src("{requestPrincipals: ['*']}"), attrs(), False),
    ("notRequestPrincipals * admits no JWT", src("{notRequestPrincipals: ['*']}"), attrs(), True),
    ("namespaces from the principal", src("{namespaces: [default]}"), attrs(source__principal=SLEEP), True),
    ("namespaces wildcard", src("{namespaces: ['def*']}"), attrs(source__principal=SLEEP), True),
    ("namespaces other", src("{namespaces: [test]}"), attrs(source__principal=SLEEP), False),
    ("namespaces: the principal wins over source.namespace", src("{namespaces: [test]}"),
     attrs(source__principal=SLEEP, source__namespace="test"), False),
    ("namespaces fall back to source.namespace", src("{namespaces: [test]}"), attrs(source__namespace="test"), True),
    ("notNamespaces", src("{notNamespaces: [default]}"), attrs(source__principal=SLEEP), False),
    ("serviceAccounts ns/name", src("{serviceAccounts: [default/sleep]}"), attrs(source__principal=SLEEP), True),
    ("serviceAccounts name in the policy's namespace", src("{serviceAccounts: [sleep]}"),
     attrs(source__principal="cluster.local/ns/foo/sa/sleep"), True),
    ("serviceAccounts name elsewhere", src("{serviceAccounts: [sleep]}"), attrs(source__principal=SLEEP), False),
    ("serviceAccounts is not a prefix", src("{serviceAccounts: [default/sle]}"), attrs(source__principal=SLEEP), False),
    ("notServiceAccounts", src("{notServiceAccounts: [default/sleep]}"), attrs(source__principal=SLEEP), False),
    ("ipBlocks CIDR", src("{ipBlocks: ['10.1.0.0/16']}"), attrs(source__ip="10.1.2.3"), True),
    ("ipBlocks single address", src("{ipBlocks: ['10.1.2.3']}"), attrs(source__ip="10.1.2.4"), False),
    ("ipBlocks IPv6", src("{ipBlocks: ['2001:db8::/32']}"), attrs(source__ip="2001:db8::1"), True),
    ("notIpBlocks", src("{notIpBlocks: ['10.1.0.0/16']}"), attrs(source__ip="10.1.2.3"), False),
    ("remoteIpBlocks on origin.ip", src("{remoteIpBlocks: ['192.0.2.0/24']}"),
     attrs(source__ip="10.1.2.3", origin__ip="192.0.2.7"), True),
    ("remoteIpBlocks is not the peer", src("{remoteIpBlocks: ['10.1.0.0/16']}"),
     attrs(source__ip="10.1.2.3", origin__ip="192.0.2.7"), False),
    ("remoteIpBlocks without origin is the peer", src("{remoteIpBlocks: ['10.1.0.0/16']}"),
     attrs(source__ip="10.1.2.3"), True),
    ("notRemoteIpBlocks", src("{notRemoteIpBlocks: ['192.0.2.0/24']}"), attrs(origin__ip="192.0.2.7"), False),
    ("source fields are AND-ed", src(f"{{principals: ['{SLEEP}'], ipBlocks: ['10.9.0.0/16']}}"),
     attrs(source__principal=SLEEP, source__ip="10.1.2.3"), False),
    ("sources are OR-ed", rule(f"{{from: [{{source: {{principals: ['{SLEEP}']}}}}, "
                               "{source: {ipBlocks: ['10.1.0.0/16']}}]}"), attrs(source__ip="10.1.2.3"), True),
    ("values and not-values together", src("{principals: ['cluster.local/*'], notPrincipals: ['*/sa/sleep']}"),
     attrs(source__principal=SLEEP), False),
    # --- to.operation ----------------------------------------------------------------------------
    ("hosts case-insensitive", op("{hosts: [Books.Shop]}"), attrs(request__host="books.SHOP"), True),
    ("hosts ignore the request's port", op("{hosts: [books.shop]}"), attrs(request__host="books.shop:8080"), True),
    ("hosts with a port need it", op("{hosts: ['books.shop:8080']}"), attrs(request__host="books.shop:9090"), False),
    ("hosts suffix", op("{hosts: ['*.shop']}"), attrs(request__host="books.shop"), True),
    ("notHosts", op("{notHosts: ['*.shop']}"), attrs(request__host="BOOKS.shop"), False),
    ("ports", op("{ports: ['8080']}"), attrs(destination__port=8080), True),
    ("ports other", op("{ports: ['8080']}"), attrs(destination__port=9090), False),
    ("notPorts", op("{notPorts: ['8080']}"), attrs(destination__port=8080), False),
    ("methods", op("{methods: [GET, HEAD]}"), attrs(request__method="HEAD"), True),
    ("methods are case-sensitive", op("{methods: [GET]}"), attrs(request__method="get"), False),
    ("notMethods", op("{notMethods: [DELETE]}"), attrs(request__method="DELETE"), False),
    ("paths exact", op("{paths: [/info]}"), attrs(request__path="/info"), True),
    ("paths exact ignores the query", op("{paths: [/info]}"), attrs(request__path="/info?x=1"), True),
    ("paths exact other", op("{paths: [/info]}"), attrs(request__path="/info/1"), False),
    ("paths prefix", op("{paths: ['/info*']}"), attrs(request__path="/info/1"), True),
    ("paths suffix", op("{paths: ['*/review']}"), attrs(request__path="/books/1/review"), True),
    ("paths presence", op("{paths: ['*']}"), attrs(request__path="/"), True),
    ("paths use url_path when given", op("{paths: [/a]}"),
     attrs(request__path="/b?q", request__url_path="/a"), True),
    ("paths template {*} one segment", op("{paths: ['/books/{*}/review']}"),
     attrs(request__path="/books/12/review"), True),
    ("paths template {*} not two", op("{paths: ['/books/{*}/review']}"),
     attrs(request__path="/books/1/2/review"), False),
    ("paths template {*} not empty", op("{paths: ['/books/{*}/review']}"),
     attrs(request__path="/books//review"), False),
    ("paths template {**} many", op("{paths: ['/books/{**}']}"), attrs(request__path="/books/1/2/3"), True),
    ("paths template {**} needs the slash", op("{paths: ['/books/{**}']}"), attrs(request__path="/books"), False),
    ("notPaths", op("{notPaths: ['/admin*']}"), attrs(request__path="/admin/x"), False),
    ("operation fields are AND-ed", op("{methods: [GET], paths: [/a]}"),
     attrs(request__method="GET", request__path="/b"), False),
    ("operations are OR-ed", rule("{to: [{operation: {methods: [POST]}}, {operation: {paths: [/a]}}]}"),
     attrs(request__method="GET", request__path="/a"), True),
    ("from and to are AND-ed", rule(f"{{from: [{{source: {{principals: ['{SLEEP}']}}}}], "
                                    "to: [{operation: {methods: [GET]}}]}"),
     attrs(source__principal=SLEEP, request__method="POST"), False),
    # --- when ------------------------------------------------------------------------------------
    ("when header", when("request.headers[x-user]", "[alice, bob]"),
     attrs(request__headers={"x-user": "bob"}), True),
    ("when header name is case-insensitive", when("request.headers[X-User]", "[bob]"),
     attrs(request__headers={"x-user": "bob"}), True),
    ("when header prefix", when("request.headers[user-agent]", "['curl/*']"),
     attrs(request__headers={"user-agent": "curl/8.0"}), True),
    ("when header presence admits empty", when("request.headers[x-flag]", "['*']"),
     attrs(request__headers={"x-flag": ""}), True),
    ("when header absent", when("request.headers[x-user]", "[alice]"), attrs(), False),
    ("when header notValues", when("request.headers[x-user]", not_values="[mallory]"),
     attrs(request__headers={"x-user": "mallory"}), False),
    ("when source.ip", when("source.ip", "['10.0.0.0/8']"), attrs(source__ip="10.1.2.3"), True),
    ("when remote.ip", when("remote.ip", "['192.0.2.7']"), attrs(origin__ip="192.0.2.7"), True),
    ("when source.namespace", when("source.namespace", "[default]"), attrs(source__principal=SLEEP), True),
    ("when source.principal", when("source.principal", f"['{SLEEP}']"), attrs(source__principal=SLEEP), True),
    ("when source.serviceAccount", when("source.serviceAccount", "[default/sleep]"),
     attrs(source__principal=SLEEP), True),
    ("when request.auth.principal", when("request.auth.principal", "['https://accounts.google.com/*']"),
     attrs(request__auth__principal="https://accounts.google.com/alice"), True),
    ("when request.auth.audiences (list claim)", when("request.auth.audiences", "[api]"),
     attrs(request__auth__raw_claims=RAW_CLAIMS), True),
    ("when request.auth.audiences (attribute)", when("request.auth.audiences", "[api]"),
     attrs(request__auth__audiences="api"), True),
    ("when request.auth.presenter", when("request.auth.presenter", "[frontend]"),
     attrs(request__auth__raw_claims=RAW_CLAIMS), True),
    ("when claims list element", when("request.auth.claims[groups]", "[dev]"),
     attrs(request__auth__raw_claims=RAW_CLAIMS), True),
    ("when claims nested", when("request.auth.claims[org][team]", "[payments]"),
     attrs(request__auth__raw_claims=RAW_CLAIMS), True),
    ("when claims from the claims map", when("request.auth.claims[groups]", "[dev]"),
     attrs(request__auth__claims={"groups": "dev"}), True),
    # Envoy's metadata list matcher: a string claim is one string, never split at commas.
    ("when claims: a comma-joined string is one value", when("request.auth.claims[groups]", "[g2]"),
     attrs(request__auth__raw_claims=json.dumps({"groups": "g1,g2"})), False),
    ("when claims: a comma-joined string matches whole", when("request.auth.claims[groups]", "['g1,g2']"),
     attrs(request__auth__raw_claims=json.dumps({"groups": "g1,g2"})), True),
    ("when claims map: a comma-joined string is one value", when("request.auth.claims[groups]", "[g2]"),
     attrs(request__auth__claims={"groups": "g1,g2"}), False),
    ("when claims: a boolean is not 'true'", when("request.auth.claims[admin]", "['true']"),
     attrs(request__auth__raw_claims=json.dumps({"admin": True})), False),
    ("when claims: a number is not its text", when("request.auth.claims[level]", "['7']"),
     attrs(request__auth__raw_claims=json.dumps({"level": 7})), False),
    ("when claims: numbers in a list are skipped", when("request.auth.claims[ids]", "['7']"),
     attrs(request__auth__raw_claims=json.dumps({"ids": [7, "8"]})), False),
    ("when claims: a JSON-looking string is a string", when("request.auth.claims[groups]", "[a]"),
     attrs(request__auth__raw_claims=json.dumps({"groups": '["a"]'})), False),
    ("requestPrincipals: compared to iss and sub, a '/' in sub", src("{requestPrincipals: ['iss/a/b']}"),
     attrs(request__auth__principal="iss/a/b", request__auth__raw_claims=json.dumps({"iss": "iss", "sub": "a/b"})),
     False),
    ("requestPrincipals: iss with a '/'", src("{requestPrincipals: ['https://x.io/a/b']}"),
     attrs(request__auth__principal="https://x.io/a/b",
           request__auth__raw_claims=json.dumps({"iss": "https://x.io/a", "sub": "b"})), True),
    ("requestPrincipals: a '*' inside a half is literal", src("{requestPrincipals: ['a*/b']}"),
     attrs(request__auth__raw_claims=json.dumps({"iss": "abc", "sub": "b"})), False),
    ("requestPrincipals: iss/*x* is a literal prefix '*x'", src("{requestPrincipals: ['iss/*x*']}"),
     attrs(request__auth__raw_claims=json.dumps({"iss": "iss", "sub": "*xy"})), True),
    ("requestPrincipals: iss/*x* is not a suffix", src("{requestPrincipals: ['iss/*x*']}"),
     attrs(request__auth__raw_claims=json.dumps({"iss": "iss", "sub": "ax*"})), False),
    ("when request.auth.principal: iss and sub", when("request.auth.principal", "['iss/a/b']"),
     attrs(request__auth__raw_claims=json.dumps({"iss": "iss", "sub": "a/b"})), False),
    ("when claims notValues", when("request.auth.claims[iss]", not_values="['https://accounts.google.com']"),
     attrs(request__auth__raw_claims=RAW_CLAIMS), False),
    ("when destination.ip", when("destination.ip", "['10.4.0.0/16']"), attrs(destination__ip="10.4.5.6"), True),
    ("when destination.port", when("destination.port", "['8080']"), attrs(destination__port=8081), False),
    ("when connection.sni", when("connection.sni", "['*.shop']"),
     attrs(connection__requested_server_name="books.shop"), True),
    ("when conditions are AND-ed",
     rule("{when: [{key: 'request.headers[a]', values: ['1']}, {key: 'request.headers[b]', values: ['2']}]}"),
     attrs(request__headers={"a": "1", "b": "3"}), False),
]


@pytest.mark.parametrize(("policy", "request_attrs", "allowed"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
async def test_field(decide, policy, request_attrs, allowed):
    decision = await decide(policy, request_attrs)
    assert decision.allowed is allowed, reason(decision)
    expected = "allowed by ns[foo]-policy[p]-rule[0]" if allowed else "no ALLOW policy matched"
    assert expected in reason(decision)
