"""The embedded engine never fails open: missing built-ins are refused at load, errors are errors,
and input strings compare with literals and data exactly as in OPA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from regopy import Interpreter

from adapters.opa._engine import CompileError, EvalError, PolicySource, to_native
from policy import Code
from tests.cli.test_cli import policy as policy_cli
from tests.opa.conftest import inline, message, opa_config

OPA_BUILTINS = [line.strip() for line in (Path(__file__).parent / "data" / "opa_builtins.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
_ENGINE = Interpreter()
UNSUPPORTED = [name for name in OPA_BUILTINS if not _ENGINE.is_builtin(name)]

#: Built-ins OPA-Envoy policies use that rego-cpp does not implement (so the list above cannot be empty).
KNOWN_MISSING = {"net.cidr_contains", "net.cidr_intersects", "http.send", "net.lookup_ip_addr", "json.match_schema"}


def test_the_unsupported_list_is_the_engines_and_not_empty():
    assert KNOWN_MISSING <= set(UNSUPPORTED)
    assert len(OPA_BUILTINS) > 150


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_each_unsupported_builtin_is_refused_at_load(name):
    module = f"package envoy.authz\n\ndefault allow := false\nallow if not deny\ndeny if {name}(input.a, input.b)\n"
    with pytest.raises(CompileError) as caught:
        PolicySource(inline=[module]).compile("envoy/authz/allow")
    assert f"inline-0.rego:5:9: {name} is not a built-in function of the embedded engine" in str(caught.value)


@pytest.mark.parametrize("name", sorted(set(OPA_BUILTINS) - set(UNSUPPORTED)))
def test_supported_builtins_are_not_refused(name):
    from adapters.opa._builtins import unknown_calls
    assert unknown_calls([("m.rego", f"package t\np := {name}(1)\n")], _ENGINE.is_builtin) == []


def test_fail_open_shape_is_refused_by_the_server_config(policy_config, policy_host_factory):
    from policy import ConfigError
    from policy.config import load_config
    text = inline("package envoy.authz\ndefault allow := false\nallow if not deny\n"
                  "deny if net.cidr_contains(\"10.0.0.0/8\", input.attributes.source.address.socketAddress.address)")
    with pytest.raises(ConfigError) as caught:
        load_config(policy_config(opa_config(text)), policy_host_factory())
    assert "inline-0.rego:4:9: net.cidr_contains is not a built-in function" in str(caught.value)


def test_policy_validate_refuses_it_too(tmp_path):
    rego = tmp_path / "authz.rego"
    rego.write_text("package envoy.authz\n\nallow if http.send({\"method\": \"get\", \"url\": \"http://x\"}).status_code == 200\n")
    config = tmp_path / "config.yaml"
    config.write_text(opa_config("policyFiles: [authz.rego]"))
    result = policy_cli("validate", "--build", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{rego}:3:10: http.send is not a built-in function" in result.stderr


def test_policy_validate_refuses_inline_policies_without_building(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(opa_config(inline("package envoy.authz\ndefault allow := false\nallow if not deny\n"
                                        "deny if net.cidr_contains(\"10.0.0.0/8\", \"10.1.2.3\")")))
    result = policy_cli("validate", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "inline-0.rego:4:9: net.cidr_contains is not a built-in function" in result.stderr


@pytest.mark.parametrize("module", [
    "package t\nimport data.lib\nallow if lib.f(1)\n",
    "package t\nallow if data.lib.f(1)\n",
    "package t\nimport data.lib as l\nallow if l.f(1)\n",
    "package t\nallow if g(1)\ng(x) := true if x == 1\n",
    "package t\nallow if { print(\"x\"); g(1) }\ndefault g(_) := false\ng(x) if x == 1\n",
])
def test_policy_functions_are_not_builtins(module):
    compiled = PolicySource(inline=[module, "package lib\nf(x) if x == 1\n"]).compile("t/allow")
    assert compiled.evaluate(to_native({})) == (True, True)


def test_undefined_policy_function_is_refused():
    with pytest.raises(CompileError, match="inline-0.rego:2:10: data.lib.nope is not a built-in"):
        PolicySource(inline=["package t\nallow if data.lib.nope(1)\n", "package lib\nf(x) if x\n"]).compile("t/allow")


@pytest.mark.parametrize("body", ["x := 1 / 0", "x := to_number(\"abc\")", "x := json.unmarshal(\"{\")",
                                  "x := base64.decode(\"%%%\")"])
def test_builtin_errors_are_errors_not_undefined(body):
    compiled = PolicySource(inline=[f"package t\ndefault allow := false\nallow if not deny\ndeny if {{ {body} }}\n"
                                    ]).compile("t/allow")
    with pytest.raises(EvalError):
        compiled.evaluate(to_native({}))


async def test_an_evaluation_error_denies_with_the_fail_mode(opa_service):
    service = await opa_service(inline("package envoy.authz\ndefault allow := false\nallow if not deny\n"
                                       "deny if to_number(input.attributes.request.http.method) > 1\n"))
    decision = await service.check({"request.method": "GET", "request.path": "/"})
    assert decision.code == Code.INTERNAL
    assert "evaluation failed" in message(decision)


AWKWARD = ['a"b', "back\\slash", "new\nline", "tab\t", "bell\x07", "del\x7f", "é", "snow☃", "emoji😀", "slash/",
           "quote\\\"mix", "\u2028", ""]


@pytest.mark.parametrize("value", AWKWARD)
def test_input_strings_equal_the_same_literal(value, tmp_path):
    escaped = json.dumps(value)  # \uXXXX spellings
    raw = json.dumps(value, ensure_ascii=False)  # literal characters
    slashed = escaped.replace("/", "\\/")
    module = (f"package t\nescaped := {escaped}\nraw := {raw}\nslashed := {slashed}\n"
              "eq if { input.s == escaped; input.s == raw; input.s == slashed; input.s == data.d }\n"
              "key if input.o[raw] == 1\n"
              "same := input.s\n")
    source = PolicySource(inline=[module])
    document = {"s": value, "o": {value: 1}}
    for entry, want in (("t/eq", True), ("t/key", True), ("t/same", value)):
        compiled = _with_data(source, {"d": value}, tmp_path).compile(entry)
        assert compiled.evaluate(to_native(document)) == (True, want), entry


def _with_data(source: PolicySource, data: dict, directory: Path) -> PolicySource:
    path = directory / "data.json"
    path.write_text(json.dumps(data))
    return PolicySource(inline=source.inline, data_files=[path])
