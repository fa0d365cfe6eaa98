"""Every error kind, with exact file, document and field, all collected into one ConfigError."""

from __future__ import annotations

import pytest

from policy.config import parse_config
from policy.sdk import ConfigError

API = "apiVersion: config.istio.io/v1alpha2"


def issues(path, host) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(path, host)
    for issue in info.value.issues:
        assert issue.file == str(path) and issue.severity == "error"
        assert str(issue).startswith(f"{path}: ")
    return [(i.document, i.field, i.message) for i in info.value.issues]


def fields(path, host) -> list[tuple[str, str]]:
    return [(d, f) for d, f, _ in issues(path, host)]


def test_all_errors_are_collected_into_one_config_error(write, host):
    path = write(f"""
        handlers:
          - {{name: h, adapter: nosuch}}
          - {{name: l, adapter: testlist, params: {{overrides: [ok, bad, [x]], colour: red}}}}
          - {{name: v, adapter: testlist, params: {{overrides: [ok, ok, ok, bad], limits: [{{name: a, max: many}}]}}}}
          - {{name: m, adapter: testmulti}}
        instances:
          - {{name: t, template: nosuch}}
          - {{name: e, template: listentry, params: {{value: 'source.ip ==', colour: x}}}}
          - {{name: q, template: quota, params: {{dimensions: {{user: request.size + "x"}}}}}}
          - {{name: c, template: checknothing}}
        rules:
          - name: bad-match
            match: request.size
            actions: [{{handler: m, instances: [c, c]}}]
          - name: unsupported
            actions: [{{handler: l, instances: [q]}}]
          - name: empty
          - name: ops
            requestHeaderOperations:
              - {{name: x-a}}
              - {{name: x-b, values: [request.nosuch], operation: SET}}
        ---
        {API}
        kind: handler
        metadata: {{name: k, namespace: istio-system}}
        spec: {{compiledAdapter: testlist, params: {{overrides: [a, b, c, bad]}}}}
    """)
    with pytest.raises(ConfigError) as info:
        parse_config(path, host)
    error = info.value
    got = [(i.document, i.field) for i in error.issues]
    assert got == [
        ("rules[3] (ops)", "requestHeaderOperations[0].values"),
        ("rules[3] (ops)", "requestHeaderOperations[1].operation"),
        ("handlers[0] (h)", "adapter"),
        ("handlers[1] (l)", "params.overrides[2]"),
        ("handlers[1] (l)", "params.colour"),
        ("handlers[2] (v)", "params.limits[0].max"),
        ("handler/k.istio-system", "spec.params.overrides[3]"),
        ("instances[0] (t)", "template"),
        ("instances[1] (e)", "params.value"),
        ("instances[1] (e)", "params.colour"),
        ("instances[2] (q)", "params.dimensions.user"),
        ("rules[0] (bad-match)", "match"),
        ("rules[0] (bad-match)", "actions[0].instances[1]"),
        ("rules[1] (unsupported)", "actions[0].instances[0]"),
    ]
    assert str(error).startswith("14 config error(s):\n")
    assert error.warnings == [] or all(w.severity == "warning" for w in error.warnings)


def test_unknown_adapter_and_template_list_the_known_ones(write, host):
    path = write("""
        handlers: [{name: h, adapter: nosuch}]
        instances: [{name: i, template: nosuch}]
    """)
    (adapter, template) = issues(path, host)
    assert adapter[2].startswith("unknown adapter 'nosuch' (known: ")
    assert "testlist" in adapter[2] and "testmulti" in adapter[2]
    assert template[2].startswith("unknown template 'nosuch' (known: authorization, brokendefaults, ")


def test_params_errors_are_prefixed_with_their_place(write, host):
    path = write(f"""
        {API}
        kind: testlist
        metadata: {{name: legacy, namespace: ns}}
        spec: {{overrides: [x, bad], colour: 1}}
        ---
        {API}
        kind: handler
        metadata: {{name: generic, namespace: ns}}
        spec: {{compiledAdapter: testlist, params: [not, a, mapping]}}
    """)
    assert issues(path, host) == [
        ("testlist/legacy.ns", "spec.colour", "unknown field (known: blacklist, failBuild, limits, overrides)"),
        ("handler/generic.ns", "spec.params", "expected a mapping, got list ['not', 'a', 'mapping']"),
    ]
    path = write(f"""
        {API}
        kind: testlist
        metadata: {{name: legacy, namespace: ns}}
        spec: {{overrides: [x, bad]}}
    """)
    assert issues(path, host) == [("testlist/legacy.ns", "spec.overrides[1]", "'bad' is not a valid entry")]


def test_instance_field_errors(write, host):
    path = write(f"""
        {API}
        kind: authorization
        metadata: {{name: authz, namespace: ns}}
        spec:
          subject: {{user: request.auth.principal, group: x}}
          action: {{properties: [a]}}
        ---
        {API}
        kind: instance
        metadata: {{name: m, namespace: ns}}
        spec:
          compiledTemplate: metric
          params: {{value: {{a: b}}, monitoredResourceType: '"global"', dimensions: {{"a.b": 1 +}}}}
    """)
    got = issues(path, host)
    assert [(d, f) for d, f, _ in got] == [
        ("authorization/authz.ns", "spec.subject.group"),
        ("authorization/authz.ns", "spec.action.properties"),
        ("instance/m.ns", "spec.params.value"),
        ("instance/m.ns", "spec.params.dimensions['a.b']"),
    ]
    assert got[0][2] == ("not a field of template 'authorization' (fields: groups, properties, user)")
    assert got[1][2] == "expected a mapping of name to expression, got a list ['a']"
    assert got[2][2] == "expected an expression (a string), got a mapping {'a': 'b'}"
    assert got[3][2].startswith('expression "1 +": column ')


def test_expression_errors_carry_the_column(write, host):
    path = write("""
        handlers: [{name: m, adapter: testmulti}]
        instances: [{name: c, template: checknothing}]
        rules:
          - name: r
            match: request.path == "/" && nosuch.attribute == "x"
            actions: [{handler: m, instances: [c]}]
    """)
    ((document, field, message),) = issues(path, host)
    assert (document, field) == ("rules[0] (r)", "match")
    assert message.startswith('expression "request.path == \\"/\\" && nosuch.attribute == \\"x\\"": column 24: ')
    assert "nosuch.attribute" in message


def test_match_must_be_boolean(write, host):
    path = write(f"""
        {API}
        kind: rule
        metadata: {{name: r, namespace: istio-system}}
        spec:
          match: request.size
          requestHeaderOperations: [{{name: x, values: ['"y"']}}]
    """)
    ((document, field, message),) = issues(path, host)
    assert (document, field) == ("rule/r.istio-system", "spec.match")
    assert "expected BOOL" in message


def test_unsupported_template_names_handler_adapter_and_template(write, host):
    path = write("""
        handlers: [{name: l, adapter: testlist}]
        instances: [{name: q, template: quota}]
        rules: [{name: r, actions: [{handler: l, instances: [q]}]}]
    """)
    assert issues(path, host) == [(
        "rules[0] (r)", "actions[0].instances[0]",
        "instance q is of template 'quota', which handler l (adapter 'testlist') does not support"
        " (it supports: listentry)",
    )]


def test_duplicate_names_across_forms_and_files(tmp_path, write, host):
    write("""
        handlers: [{name: h, adapter: testlist}, {name: h, adapter: testlist}]
        instances: [{name: i, template: listentry, params: {value: '"x"'}}]
        rules:
          - {name: r, actions: [{handler: h, instances: [i]}]}
          - {name: r, requestHeaderOperations: [{name: a, values: ['"b"']}]}
    """, "a.yaml")
    write(f"""
        {API}
        kind: handler
        metadata: {{name: h, namespace: istio-system}}
        spec: {{compiledAdapter: testlist}}
        ---
        {API}
        kind: listentry
        metadata: {{name: i, namespace: istio-system}}
    """, "b.yaml")
    with pytest.raises(ConfigError) as info:
        parse_config(tmp_path, host)
    got = [(i.file.rsplit("/", 1)[1], i.document, i.field, i.message) for i in info.value.issues]
    first = f"already defined in {tmp_path / 'a.yaml'} (handlers[0] (h))"
    assert got == [
        ("a.yaml", "handlers[1] (h)", "name", f"duplicate handler h: {first}"),
        ("b.yaml", "handler/h.istio-system", "metadata.name", f"duplicate handler h.istio-system: {first}"),
        ("a.yaml", "rules[1] (r)", "name", f"duplicate rule r: already defined in {tmp_path / 'a.yaml'}"
                                           " (rules[0] (r))"),
    ]


def test_unknown_keys_are_rejected_at_every_level(write, host):
    path = write(f"""
        colour: red
        handlers: [{{name: h, adapter: testmulti, colour: red}}]
        instances: [{{name: i, template: checknothing, colour: red}}]
        rules:
          - name: r
            colour: red
            actions: [{{handler: h, instances: [i], colour: red}}]
            requestHeaderOperations: [{{name: a, values: ['"b"'], colour: red}}]
        ---
        {API}
        kind: rule
        metadata: {{name: k, namespace: istio-system}}
        spec:
          colour: red
          actions: [{{handler: h, instances: [i], colour: red}}]
        ---
        {API}
        kind: instance
        metadata: {{name: j, namespace: istio-system}}
        spec: {{compiledTemplate: checknothing, colour: red}}
    """)
    assert fields(path, host) == [
        ("document[0] (line 1)", "colour"),
        ("handlers[0] (h)", "colour"),
        ("instances[0] (i)", "colour"),
        ("rules[0] (r)", "colour"),
        ("rules[0] (r)", "actions[0].colour"),
        ("rules[0] (r)", "requestHeaderOperations[0].colour"),
        ("rule/k.istio-system", "spec.colour"),
        ("rule/k.istio-system", "spec.actions[0].colour"),
        ("instance/j.istio-system", "spec.colour"),
    ]


def test_action_shape_errors(write, host):
    path = write("""
        handlers: [{name: h, adapter: testmulti}]
        instances: [{name: i, template: checknothing}]
        rules:
          - {name: a, actions: {handler: h}}
          - {name: b, actions: [{instances: [i]}, {handler: h, instances: []}, {handler: h, instances: i}]}
          - {name: c, actions: [[h, i]]}
    """)
    assert issues(path, host) == [
        ("rules[0] (a)", "actions", "expected a list, got a mapping {'handler': 'h'}"),
        ("rules[1] (b)", "actions[0].handler", "a handler reference is required"),
        ("rules[1] (b)", "actions[1].instances", "an action needs at least one instance"),
        ("rules[1] (b)", "actions[2].instances", "expected a list, got a string 'i'"),
        ("rules[2] (c)", "actions[0]", "expected a mapping, got a list ['h', 'i']"),
    ]


def test_errors_do_not_cascade_into_references(write, host):
    # The handler is broken and the instance's template unknown: the rule reports nothing more.
    path = write("""
        handlers: [{name: h, adapter: testlist, params: {colour: 1}}]
        instances: [{name: i, template: nosuch}]
        rules: [{name: r, actions: [{handler: h, instances: [i]}]}]
    """)
    assert fields(path, host) == [("handlers[0] (h)", "params.colour"), ("instances[0] (i)", "template")]


def test_a_matches_pattern_taken_from_the_request_is_rejected_with_its_field(write, host):
    # The pattern would be the client's to choose (and its cost): only a constant pattern is allowed.
    path = write("""
        handlers:
          - {name: l, adapter: testlist, params: {overrides: [ok]}}
        instances:
          - {name: e, template: listentry, params: {value: source.name | ""}}
        rules:
          - name: computed
            match: request.path.matches(request.headers["x-pattern"])
            actions: [{handler: l, instances: [e]}]
          - name: backreference
            match: '"(a)\\\\1".matches(request.path)'
            actions: [{handler: l, instances: [e]}]
    """)
    got = issues(path, host)
    assert [(d, f) for d, f, _ in got] == [("rules[0] (computed)", "match"), ("rules[1] (backreference)", "match")]
    assert "the pattern of matches must be a constant string" in got[0][2]
    assert "invalid escape sequence" in got[1][2]
