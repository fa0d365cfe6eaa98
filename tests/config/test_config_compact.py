"""The compact form: settings, handlers, instances, rules and what the snapshot gets from them."""

from __future__ import annotations

import pytest

from policy.attributes import AttributeBag
from policy.config import load_config, parse_config
from policy.config.snapshot import CacheSettings
from policy.sdk import ConfigError, FailMode, HeaderOperationKind, ListEntry

CONFIG = """
settings:
  rootNamespace: mesh-root
  identityAttributes: [destination.service.namespace]
  cache: {enabled: false, maxEntries: 50, defaultValidDuration: 2m, defaultValidUseCount: 7, maxShapes: 3}
handlers:
  - name: whitelist
    adapter: testlist
    failMode: open
    timeout: 250ms
    params: {overrides: ["10.0.0.1"], limits: [{name: a, max: 3}]}
  - {name: multi, adapter: testmulti, namespace: team}
instances:
  - {name: source-ip, template: listentry, params: {value: source.ip | ip("0.0.0.0")}}
  - name: who
    template: authorization
    params:
      subject: {user: request.auth.principal | "", properties: {admin: 'request.headers["x-admin"] == "1"'}}
      action: {method: request.method | "GET", path: request.path | "/"}
  - {name: size, template: metric, params: {value: 42, dimensions: {flag: true}}}
rules:
  - name: check-ip
    match: destination.service.host == "x"
    actions: [{handler: whitelist, instances: [source-ip], name: ip}]
    requestHeaderOperations:
      - {name: x-user, values: ['"alice"', request.auth.principal | ""]}
    responseHeaderOperations:
      - {name: x-debug, operation: remove}
  - namespace: team
    actions: [{handler: multi, instances: [who, size]}]
"""


def test_compact_form_builds_a_snapshot(write, host, built):
    snapshot = load_config(write(CONFIG), host, generation=7)
    assert snapshot.generation == 7
    assert snapshot.root_namespace == "mesh-root"
    assert snapshot.identity_attributes == ("destination.service.namespace",)
    assert snapshot.cache == CacheSettings(enabled=False, max_entries=50, default_valid_duration=120.0,
                                           default_valid_use_count=7, max_shapes=3)
    assert list(snapshot.handlers) == ["whitelist", "multi.team"]
    whitelist = snapshot.handlers["whitelist"]
    assert (whitelist.fail_mode, whitelist.timeout) == (FailMode.OPEN, 0.25)
    assert whitelist.handler.params.limits[0].max == 3
    assert snapshot.handlers["multi.team"].fail_mode is FailMode.CLOSED
    assert snapshot.handlers["multi.team"].timeout == 1.0
    assert sorted(snapshot.instances) == ["size", "source-ip", "who"]

    check_ip, team_rule = snapshot.rules
    assert (check_ip.name, check_ip.namespace) == ("check-ip", "mesh-root")
    assert check_ip.match.text == 'destination.service.host == "x"'
    (action,) = check_ip.check_actions
    assert action.handler is whitelist and action.name == "ip"
    assert action.instances[0].build(AttributeBag({})) == ListEntry("source-ip", value=_ip("0.0.0.0"))
    (op,) = check_ip.request_header_operations
    assert op.name == "x-user" and op.operation is HeaderOperationKind.REPLACE
    assert [v.evaluate(AttributeBag({})) for v in op.values] == ["alice", ""]
    (remove,) = check_ip.response_header_operations
    assert remove.operation is HeaderOperationKind.REMOVE and remove.values == ()

    assert (team_rule.name, team_rule.namespace, team_rule.match) == ("rule-1.team", "team", None)
    who = team_rule.check_actions[0].instances[0].build(AttributeBag({"request.headers": {"x-admin": "1"}}))
    assert who.subject.user == "" and who.subject.properties == {"admin": True}
    assert (who.action.method, who.action.path) == ("GET", "/")
    metric = team_rule.report_actions[0].instances[0].build(AttributeBag({}))
    assert metric.value == 42 and metric.dimensions == {"flag": True}


def test_defaults_without_settings(write, host):
    snapshot = load_config(write("rules: []"), host)
    assert snapshot.root_namespace == "istio-system"
    assert snapshot.identity_attributes == ("destination.namespace", "destination.service.namespace")
    assert snapshot.cache == CacheSettings()


def test_default_rule_names_count_per_file(tmp_path, write, host):
    rule = "{handlers: [{name: h%s, adapter: testmulti}], instances: [{name: i%s, template: checknothing}],"
    write(rule % (1, 1) + " rules: [{actions: [{handler: h1, instances: [i1]}]}]}", "a.yaml")
    write(rule % (2, 2) + " rules: [{name: mine, actions: [{handler: h2, instances: [i2]}]},"
          " {actions: [{handler: h2, instances: [i2]}]}]}", "b.yaml")
    names = [r.name for r in load_config(tmp_path, host).rules]
    assert names == ["rule-0", "mine", "rule-1"]


def test_compact_rule_in_a_namespace_falls_back_to_root_handlers(write, host):
    path = write("""
        handlers: [{name: h, adapter: testmulti}]
        instances: [{name: i, template: checknothing}]
        rules:
          - {namespace: team, actions: [{handler: h, instances: [i]}]}
    """)
    (rule,) = load_config(path, host).rules
    assert rule.check_actions[0].handler.name == "h"


def test_settings_given_twice_is_an_error(tmp_path, write, host):
    write("settings: {rootNamespace: a}", "a.yaml")
    write("settings: {rootNamespace: b}", "b.yaml")
    with pytest.raises(ConfigError) as info:
        parse_config(tmp_path, host)
    (issue,) = info.value.issues
    assert (issue.file, issue.document) == (str(tmp_path / "b.yaml"), "settings")
    assert "settings are given twice" in issue.message and "a.yaml" in issue.message


def test_settings_errors_name_their_fields(write, host):
    path = write("""
        settings:
          identityAttributes: [nosuch.attr, request.size]
          cache: {maxEntries: 0, defaultValidDuration: soon, colour: red}
          extra: 1
    """)
    with pytest.raises(ConfigError) as info:
        parse_config(path, host)
    got = {(i.document, i.field) for i in info.value.issues}
    assert got == {("settings", "cache.colour"), ("settings", "cache.defaultValidDuration"),
                   ("settings", "extra")}
    path = write("""
        settings:
          identityAttributes: [nosuch.attr, request.size]
          cache: {maxEntries: 0}
    """)
    with pytest.raises(ConfigError) as info:
        parse_config(path, host)
    got = {(i.field, i.message) for i in info.value.issues}
    assert got == {
        ("identityAttributes[0]", "unknown attribute 'nosuch.attr'"),
        ("identityAttributes[1]", "attribute 'request.size' is INT64; a namespace attribute must be STRING"),
        ("cache.maxEntries", "must be positive, got 0"),
    }


def test_compact_handler_field_errors(write, host):
    path = write("""
        handlers:
          - {name: a.b, adapter: testlist, failMode: sometimes, timeout: -1s}
          - {name: c, adapter: testlist, timeout: 0s}
          - {adapter: testlist}
    """)
    with pytest.raises(ConfigError) as info:
        parse_config(path, host)
    got = [(i.document, i.field) for i in info.value.issues]
    assert got == [
        ("handlers[0] (a.b)", "name"),
        ("handlers[0] (a.b)", "failMode"),
        ("handlers[0] (a.b)", "timeout"),
        ("handlers[1] (c)", "timeout"),
        ("handlers[2]", "name"),
    ]
    messages = [i.message for i in info.value.issues]
    assert "cannot contain '.'" in messages[0]
    assert messages[1] == "expected CLOSED or OPEN, got 'sometimes'"
    assert messages[4] == "a name is required"


def _ip(text: str):
    import ipaddress

    return ipaddress.ip_address(text)
