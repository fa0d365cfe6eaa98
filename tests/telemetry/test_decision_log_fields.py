"""A decision-log record carries only what report rules can read, and they see exactly what the whole record gives.

The decision log copies into a record only the attributes (and map keys) the snapshot's
report rules can read (``Snapshot.report_reads``). Each test below builds both records, the
whole one (``DecisionLog.record``) and the cut one (``RecordFields.take``), and checks that
every report rule's match and every instance it sends come out the same, masking included.
"""

from __future__ import annotations

import ipaddress
import random
import textwrap
from typing import Any

import pytest

from policy.attributes import AttributeBag
from policy.runtime.decision import Decision
from policy.runtime.decision_log import MASK, DecisionLog, RecordFields
from policy.sdk import Code, Status

#: Report rules reading headers by key (any case; masked and plain), a path with a query,
#: query parameters, a masked map attribute, a masked scalar and a map by a computed key.
KEYED = """
handlers:
  - {name: out, adapter: stdio, params: {logStream: FILE, outputPath: "%(log)s"}}
  - {name: deny, adapter: denier, params: {status: {code: 7}}}
instances:
  - {name: nothing, template: checknothing, params: {}}
  - name: line
    template: logentry
    params:
      severity: 'conditional(check.error_code == 0, "info", "warning")'
      variables:
        code: check.error_code
        message: check.error_message | ""
        user: request.headers["x-user"] | ""
        auth: request.headers["authorization"] | ""
        cookie: request.headers["Cookie"] | ""
        ref: request.headers["referer"] | ""
        path: request.path | ""
        token: request.query_params["access_token"] | ""
        page: request.query_params["page"] | ""
        sub: request.auth.claims["sub"] | ""
        key: request.api_key | ""
rules:
  - {name: block, match: source.principal == "mallory", actions: [{handler: deny, instances: [nothing]}]}
  - name: decisions
    match: context.reporter.kind == "decision" && (request.headers["x-skip"] | "") != "yes"
    actions: [{handler: out, instances: [line]}]
"""

#: The same, one variable reading headers by a computed key: the record keeps every header, masked.
COMPUTED_KEY = KEYED.replace('        key: request.api_key | ""\n', '        key: request.api_key | ""\n'
                             '        by_method: request.headers[request.method | "get"] | ""\n')

#: A namespaced report rule: the record must keep the identity attributes that pick the namespace.
NAMESPACED = """
handlers:
  - {name: out, adapter: stdio, params: {logStream: FILE, outputPath: "%(log)s"}}
instances:
  - name: line
    template: logentry
    params: {variables: {code: check.error_code, who: source.principal | ""}}
rules:
  - {name: everywhere, actions: [{handler: out, instances: [line]}]}
  - {name: shop-only, namespace: shop, match: (request.method | "") == "POST",
     actions: [{handler: out, instances: [line]}]}
"""

HEADER_KEYS = ["x-user", "X-User", "authorization", "Authorization", "Cookie", "cookie", "referer", "get", "POST",
               "x-skip", "accept"]


def _requests(rng: random.Random) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{}, {"request.headers": {}}, {"source.principal": "mallory"}]
    for i in range(150):
        request: dict[str, Any] = {"request.id": f"r-{i}"}
        if rng.random() < 0.8:
            request["request.headers"] = {key: rng.choice(["v", "yes", "/p?access_token=t&x=1", "Bearer s"])
                                          for key in HEADER_KEYS if rng.random() < 0.4}
        for name, choices in (("request.path", ["/", "/a?access_token=t", "/b?page=2&CODE=9#f"]),
                              ("request.method", ["GET", "POST", "get"]),
                              ("request.api_key", ["k-1"]), ("source.principal", ["ann", "mallory"]),
                              ("destination.namespace", ["shop", "books", ""]),
                              ("destination.service.namespace", ["shop", "books"]),
                              ("source.namespace", ["shop", "other"])):
            if rng.random() < 0.6:
                request[name] = rng.choice(choices)
        if rng.random() < 0.5:
            request["request.query_params"] = {k: "q" for k in ("access_token", "page", "Token") if rng.random() < 0.6}
        if rng.random() < 0.4:
            request["request.auth.claims"] = {"sub": "u-1", "email": "u@x"}
        if rng.random() < 0.3:
            request["source.ip"] = ipaddress.ip_address("10.1.2.3")
        out.append(request)
    return out


def _outcome(fn: Any, bag: AttributeBag) -> Any:
    try:
        return ("ok", fn(bag))
    except Exception as exc:  # both records must fail the same way
        return ("error", type(exc).__name__)


DECISIONS = [Decision(rules=(), decision_id="d-ok"),
             Decision(status=Status(Code.PERMISSION_DENIED, "blocked"), rules=("block",), decision_id="d-no")]


@pytest.mark.parametrize("config", [KEYED, COMPUTED_KEY, NAMESPACED], ids=["keyed", "computed key", "namespaced"])
async def test_every_report_rule_sees_the_same_in_a_cut_record(policy_service_factory, policy_config, tmp_path,
                                                                 config):
    service = await policy_service_factory(policy_config(config % {"log": tmp_path / "out.jsonl"}))
    snapshot = service.snapshot
    assert snapshot.report_reads is not None
    assert (("request.headers", None) in snapshot.report_reads) == (config is COMPUTED_KEY)
    fields = RecordFields(snapshot.report_reads)
    log = DecisionLog()
    compared = 0
    for request in _requests(random.Random(5)):
        for decision in DECISIONS:
            whole = log.record(decision, request)
            cut = log._record(decision, fields.take(request))
            assert set(cut.raw) <= set(whole.raw)
            rules = snapshot.report_rules_for(whole)
            assert snapshot.report_rules_for(cut) == rules
            for rule in rules:
                if rule.match is not None:
                    assert _outcome(rule.match.evaluate, cut) == _outcome(rule.match.evaluate, whole), rule.name
                for action in rule.report_actions:
                    for builder in action.instances:
                        assert _outcome(builder.build, cut) == _outcome(builder.build, whole), builder.name
                        compared += 1
    assert compared > 300


def test_a_cut_record_keeps_read_keys_only_and_masks_them():
    reads = frozenset({("request.headers", "x-user"), ("request.headers", "Authorization"), ("request.path", None),
                       ("request.auth.claims", None), ("source.principal", None)})
    request = {"request.headers": {"x-user": "ann", "Authorization": "Bearer s", "cookie": "c=1", "accept": "*/*"},
               "request.path": "/a?access_token=t&page=1", "request.auth.claims": {"sub": "u"},
               "request.api_key": "k", "destination.ip": ipaddress.ip_address("10.0.0.1")}
    record = DecisionLog()._record(DECISIONS[0], RecordFields(reads).take(request))
    assert record["request.headers"] == {"x-user": "ann", "Authorization": MASK}
    assert record["request.path"] == f"/a?access_token={MASK}&page=1"
    assert record["request.auth.claims"] == {"sub": MASK}
    assert "request.api_key" not in record.raw and "destination.ip" not in record.raw and "source.principal" not in record.raw
    assert request["request.headers"]["Authorization"] == "Bearer s"  # the request itself is untouched


def test_a_rule_that_cannot_say_what_it_reads_gets_the_whole_request():
    assert RecordFields(frozenset({("request.headers", None), ("request.headers", "x")})).take(
        {"request.headers": {"x": "1", "y": "2"}}) == {"request.headers": {"x": "1", "y": "2"}}


async def test_the_served_record_is_cut_to_what_report_rules_read(policy_service_factory, policy_config, tmp_path):
    config = textwrap.dedent(f"""
        handlers:
          - {{name: out, adapter: stdio, params: {{logStream: FILE, outputPath: "{tmp_path / 'out.jsonl'}"}}}}
        instances:
          - {{name: line, template: logentry, params: {{variables: {{user: 'request.headers["x-user"] | ""'}}}}}}
        rules:
          - {{name: decisions, match: context.reporter.kind == "decision", actions: [{{handler: out, instances: [line]}}]}}
    """)
    service = await policy_service_factory(policy_config(config), decision_log=True)
    seen: list[AttributeBag] = []
    real_report = service.dispatcher.report
    service.dispatcher.report = lambda bags: seen.extend(bags) or real_report(bags)  # type: ignore[method-assign]
    await service.check({"request.headers": {"x-user": "ann", "cookie": "c"}, "request.path": "/p",
                         "source.principal": "u"})
    assert await service.reports.drain(timeout=5)
    [record] = seen
    assert record["request.headers"] == {"x-user": "ann"}
    assert set(record.raw) == {"request.headers", "check.error_code", "check.cache_hit", "check.rules",
                               "check.decision_id", "context.reporter.kind"}
    assert '"user":"ann"' in (tmp_path / "out.jsonl").read_text().replace(" ", "")
