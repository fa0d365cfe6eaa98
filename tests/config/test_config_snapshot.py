"""From model to Snapshot: actions split by variety, handler builds and their failures, warnings."""

from __future__ import annotations

import asyncio

import pytest

from policy.config import build_snapshot, load_config, parse_config
from policy.sdk import ConfigError

MULTI = """
handlers:
  - {name: multi, adapter: testmulti}
instances:
  - {name: c, template: checknothing}
  - {name: q, template: quota, params: {dimensions: {user: request.auth.principal | "anon"}}}
  - {name: r, template: reportnothing}
  - {name: m, template: metric, params: {value: request.size | 0}}
rules:
  - name: all
    actions: [{handler: multi, instances: [r, c, q, m], name: everything}]
"""


def test_an_action_is_split_by_variety(write, host):
    snapshot = load_config(write(MULTI), host)
    (rule,) = snapshot.rules
    handler = snapshot.handlers["multi"]
    assert [(a.handler, a.name, [i.name for i in a.instances]) for a in rule.check_actions] == [
        (handler, "everything", ["c"])]
    assert [[i.name for i in a.instances] for a in rule.quota_actions] == [["q"]]
    assert [[i.name for i in a.instances] for a in rule.report_actions] == [["r", "m"]]
    assert all(a.handler is handler for a in (*rule.check_actions, *rule.quota_actions, *rule.report_actions))


def test_snapshot_records_sources_and_warnings(tmp_path, write, host):
    write(MULTI, "a.yaml")
    write("handlers: [{name: idle, adapter: testlist}]", "b.yaml")
    model = parse_config(tmp_path, host)
    snapshot = build_snapshot(model, host)
    assert snapshot.sources == (str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))
    assert list(snapshot.warnings) == model.warnings
    (warning,) = model.warnings
    assert (warning.document, warning.severity) == ("handlers[0] (idle)", "warning")
    assert warning.message == "handler idle is not used by any rule; it is not built"
    assert list(snapshot.handlers) == ["multi"]


def test_only_used_handlers_are_built(write, host, built):
    config = MULTI.replace("handlers:\n", "handlers:\n  - {name: unused, adapter: testlist}\n")
    snapshot = load_config(write(config), host)
    assert list(snapshot.handlers) == ["multi"] and len(built) == 1


BROKEN = """
handlers:
  - {name: good, adapter: testlist}
  - {name: broken, adapter: testlist, params: {failBuild: true}}
  - {name: also-good, adapter: testmulti}
instances:
  - {name: e, template: listentry, params: {value: '"x"'}}
  - {name: c, template: checknothing}
rules:
  - actions: [{handler: good, instances: [e]}, {handler: broken, instances: [e]}, {handler: also-good, instances: [c]}]
"""


def test_a_build_failure_names_the_handler_and_closes_the_others(write, host, built):
    path = write(BROKEN)
    model = parse_config(path, host)
    with pytest.raises(ConfigError) as info:
        build_snapshot(model, host)
    (issue,) = info.value.issues
    assert (issue.file, issue.document, issue.field) == (str(path), "handlers[1] (broken)", "params")
    assert issue.message == "handler broken: adapter 'testlist' failed to build it: RuntimeError: backend unreachable"
    assert len(built) == 2 and all(h.closed for h in built)


async def test_a_build_failure_inside_an_event_loop_closes_handlers_on_the_loop(write, host, built):
    with pytest.raises(ConfigError):
        load_config(write(BROKEN), host)
    assert len(built) == 2
    for _ in range(5):
        await asyncio.sleep(0)
    assert all(h.closed for h in built)


def test_snapshot_close_closes_handlers(write, host, built):
    snapshot = load_config(write(MULTI), host)
    asyncio.run(snapshot.close())
    assert [h.closed for h in built] == [True]


VOLATILE = """
handlers:
  - {name: multi, adapter: testmulti}
instances:
  - {name: c, template: authorization, params: {subject: {user: request.id}}}
  - {name: log, template: logentry, params: {variables: {id: request.id}, timestamp: request.time}}
  - {name: q, template: quota, params: {dimensions: {id: request.id}}}
rules:
  - name: one
    match: request.id == "x" || request.path == "/"
    actions: [{handler: multi, instances: [c, log, q]}]
  - name: two
    actions: [{handler: multi, instances: [c]}]
"""


def test_volatile_attributes_in_matches_and_check_instances_warn(write, host):
    model = parse_config(write(VOLATILE), host)
    got = [(w.document, w.field, w.message) for w in model.warnings]
    assert got == [
        ("rules[0] (one)", "match",
         "the match reads request.id, which differs on every request; this defeats the decision cache"),
        ("instances[0] (c)", "params.subject.user",
         "instance c is sent to check handler multi (rule one) and reads request.id, which differs on every"
         " request; this defeats the decision cache"),
    ]
    assert all(w.severity == "warning" for w in model.warnings)


def test_header_operations_only_rule_is_valid(write, host):
    snapshot = load_config(write("""
        rules:
          - name: tag
            match: request.headers["x-team"] == "a"
            responseHeaderOperations: [{name: x-team-seen, values: ['"yes"'], operation: APPEND}]
    """), host)
    (rule,) = snapshot.rules
    assert rule.check_actions == () and rule.response_header_operations[0].name == "x-team-seen"


def test_template_defaults_fill_fields_left_out(write, host):
    snapshot = load_config(write("""
        handlers: [{name: multi, adapter: testmulti}]
        instances:
          - {name: none-given, template: withdefaults}
          - {name: some-given, template: withdefaults, params: {group: {b: '"mine"'}, dims: {y: '"2"'}}}
        rules: [{actions: [{handler: multi, instances: [none-given, some-given]}]}]
    """), host)
    from policy.attributes import AttributeBag

    bag = AttributeBag({"request.path": "/p"})
    assert snapshot.instances["none-given"].build(bag) == {
        "name": "none-given", "value": "/p", "group": {"a": "A", "b": "B"}, "dims": {"x": "1"}}
    assert snapshot.instances["some-given"].build(bag) == {
        "name": "some-given", "value": "/p", "group": {"a": "A", "b": "mine"}, "dims": {"y": "2"}}


def test_a_broken_template_default_is_reported_as_the_templates(write, host):
    with pytest.raises(ConfigError) as info:
        parse_config(write("instances: [{name: i, template: brokendefaults}]"), host)
    (issue,) = info.value.issues
    assert (issue.document, issue.field) == ("instances[0] (i)", "params.value")
    assert issue.message.startswith("template 'brokendefaults' default for this field: expression ")


def test_summary_counts_the_model(write, host):
    model = parse_config(write(MULTI + "---\napiVersion: v9\nkind: Other\n"), host)
    assert model.summary() == "1 handler, 4 instances, 1 rule, 1 other document, 1 warning"
