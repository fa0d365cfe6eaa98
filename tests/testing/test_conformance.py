"""The conformance check passes good adapters (the built-ins among them) and names what breaks a bad one."""

from __future__ import annotations

import pytest

from policy.testing import check_adapter_conformance
from tests.testing import broken_adapters as b

GOOD = dict(valid_params=[{}, {"users": ["alice"], "validDuration": "5s"}],
            invalid_params=[{"users": "alice"}, {"users": [""]}, {"validDuration": "soon"}, {"bogus": 1}])


async def test_a_good_adapter_conforms():
    report = await check_adapter_conformance(b.Good, **GOOD)
    assert report.ok, str(report)
    assert report.steps_run == ["declaration", "docs", "params", "calls", "close", "dispatch"]


@pytest.mark.parametrize("adapter_name, valid, invalid", [
    ("denier", [{}, {"status": {"code": "UNAUTHENTICATED"}}], [{"status": {"code": "NOPE"}}, {"validUseCount": -1}]),
    ("listchecker", [{"overrides": ["a", "b"]}], [{"entryType": "WORDS"}, {"overrides": "a"}]),
    ("stdio", [{"logStream": "FILE", "outputPath": "out.log"}, {}], [{"logStream": "FILE"}, {"maxRotatedFiles": -1}]),
])
async def test_builtin_adapters_conform(adapter_name, valid, invalid):
    from policy.runtime.plugins import build_plugin_host

    adapter = build_plugin_host(autoload=False).adapters.get(adapter_name).adapter
    await check_adapter_conformance(adapter, valid, invalid)


async def _problems(adapter, step, **kw):
    args = {**GOOD, **kw}
    report = await check_adapter_conformance(adapter, raise_on_failure=False, **args)
    assert not report.ok
    return report.of(step), report


async def test_undocumented_params_are_named():
    problems, _ = await _problems(b.Undocumented, "docs", invalid_params=[{"limit": "x"}])
    assert problems == ["param 'users' has no doc (declare it with param(..., doc=...))",
                        "param 'limit' has no doc (declare it with param(..., doc=...))"]


async def test_errors_must_name_a_field():
    problems, _ = await _problems(b.Unscoped, "params", valid_params=[{"users": ["a"]}], invalid_params=[{}])
    assert problems == ["error 'something is wrong' for {} names no declared param (field ''; params: users,"
                        " validDuration)"]
    report = await check_adapter_conformance(b.Good, [{}], [], raise_on_failure=False)
    assert report.of("params") == ["give at least one invalid_params example to show field-scoped errors"]
    problems, _ = await _problems(b.Good, "params", valid_params=[{"users": 3}], invalid_params=[{}])
    assert problems[0].startswith("valid params {'users': 3} were rejected: users: expected a list")
    assert problems[1] == "invalid params {} were accepted"


async def test_results_must_declare_cacheability():
    problems, report = await _problems(b.Silent, "calls")
    assert problems == ["check(authorization instance) returned a result with valid_duration=None:"
                        " declare cacheability (0 for 'do not cache')"] * 2
    assert "served check of conformance-authorization declared no cacheability" in report.of("dispatch")


async def test_close_must_release_tasks_threads_and_files():
    b.LEAKED.clear()
    problems, _ = await _problems(b.Leaky, "close", valid_params=[{}])
    try:
        assert any("asyncio task 'leaky-refresh'" in p for p in problems), problems
        assert any("thread 'leaky-thread' still alive" in p for p in problems), problems
        assert any(p.endswith("leaky.log still open") for p in problems), problems
    finally:
        for handler in b.LEAKED:
            handler.release()


async def test_crashes_are_reported_not_raised():
    problems, report = await _problems(b.Crashy, "calls", valid_params=[{}])
    assert problems == ["check(authorization instance) raised AttributeError: 'NoneType' object has no attribute"
                        " 'startswith' (raise AdapterError to answer a status)"]
    assert report.of("close") == ["a second close() raised RuntimeError: already closed"]
    (dispatch,) = report.of("dispatch")
    assert dispatch.startswith("a check of an instance with absent fields crashed: conformance-handler: adapter"
                               " crashy failed: AttributeError")


async def test_plain_methods_must_not_block():
    problems, _ = await _problems(b.Blocking, "calls", valid_params=[{}], clock=b.fake_clock())
    assert len(problems) == 1 and "is a plain method and took 0.150s (each of 3 times)" in problems[0]
    assert "make it async def" in problems[0]


async def test_one_slow_call_is_not_blocking():
    """A call slow once (a busy machine) is timed again; only a call slow every time is a problem."""
    report = await check_adapter_conformance(b.Hiccup, raise_on_failure=False, clock=b.fake_clock(),
                                             **{**GOOD, "valid_params": [{}]})
    assert report.ok, report


async def test_quota_grants_are_bounded():
    problems, _ = await _problems(b.Greedy, "calls", valid_params=[{}], invalid_params=[{"limit": "x"}])
    assert problems == ["quota(quota instance) granted 3 of 1"]


async def test_declaration_problems_stop_before_dispatch():
    problems, report = await _problems(b.Nameless, "declaration")
    assert "name 'Bad Name' should be a lowercase identifier such as 'my-adapter'" in problems
    assert "description should be one non-empty line" in problems
    assert any("template 'nosuchtemplate' is not registered" in p for p in problems)
    assert "dispatch" not in report.steps_run
    with pytest.raises(AssertionError, match=r"adapter 'Bad Name' \(Nameless\) does not conform:\n  \[declaration\]"):
        report.raise_if_failed()


async def test_a_crashing_handler_becomes_a_status_naming_it():
    # The dispatch step injects a crash into the real handler served from config; a good
    # adapter passes it, which shows the status named the handler and was not cached.
    report = await check_adapter_conformance(b.Good, **GOOD)
    assert "dispatch" in report.steps_run and not report.of("dispatch")
