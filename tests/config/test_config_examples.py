"""The Mixer documents under examples/mixer load with the built-in denier and listchecker and decide right."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

from policy.attributes import AttributeBag
from policy.config import load_config
from policy.runtime.plugins import build_plugin_host
from policy.sdk import Code

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mixer"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("adapters.denier") is None or importlib.util.find_spec("adapters.listchecker") is None,
    reason="the built-in denier and listchecker adapters are not installed",
)


@pytest.fixture
async def snapshot():
    snapshot = load_config(EXAMPLES, build_plugin_host(autoload=False))
    await snapshot.start()
    yield snapshot
    await snapshot.close()


async def decide(snapshot, **attrs) -> list[tuple[str, Code]]:
    """Run the check actions of every matching rule: (rule, status code) per action."""
    bag = AttributeBag(attrs)
    out = []
    for rule in snapshot.rules_for(bag):
        if not rule.matches(bag):
            continue
        for action in rule.check_actions:
            for instance in action.instances:
                result = action.handler.handler.check(instance.build(bag))
                if inspect.isawaitable(result):
                    result = await result
                out.append((rule.name, result.status.code))
    return out


def test_examples_load_with_denier_and_listchecker():
    snapshot = load_config(EXAMPLES, build_plugin_host(autoload=False))
    adapters = {name: entry.adapter.name for name, entry in snapshot.handlers.items()}
    assert adapters == {
        "blocked-user.istio-system": "denier",
        "internal-networks.listchecker.istio-system": "listchecker",
        "read-only.istio-system": "denier",
    }
    assert [(r.name, r.namespace) for r in snapshot.rules] == [
        ("deny-blocked-users.rule.istio-system", "istio-system"),
        ("internal-only.rule.istio-system", "istio-system"),
        ("deny-writes.rule.bookinfo", "bookinfo"),
    ]
    assert list(snapshot.warnings) == []


async def test_ip_whitelist(snapshot):
    assert await decide(snapshot, **{"source.ip": _ip("10.1.2.3")}) == [
        ("internal-only.rule.istio-system", Code.OK)]
    assert await decide(snapshot, **{"source.ip": _ip("203.0.113.9")}) == [
        ("internal-only.rule.istio-system", Code.PERMISSION_DENIED)]


async def test_denier_on_a_header_match(snapshot):
    inside = {"source.ip": _ip("10.1.2.3")}
    assert await decide(snapshot, **inside, **{"request.headers": {"x-user": "mallory"}}) == [
        ("deny-blocked-users.rule.istio-system", Code.PERMISSION_DENIED),
        ("internal-only.rule.istio-system", Code.OK),
    ]
    assert await decide(snapshot, **inside, **{"request.headers": {"x-user": "alice"}}) == [
        ("internal-only.rule.istio-system", Code.OK)]


async def test_rule_scoped_to_one_namespace(snapshot):
    inside = {"source.ip": _ip("10.1.2.3"), "request.method": "DELETE"}
    in_bookinfo = await decide(snapshot, **inside, **{"destination.namespace": "bookinfo"})
    assert ("deny-writes.rule.bookinfo", Code.PERMISSION_DENIED) in in_bookinfo
    elsewhere = await decide(snapshot, **inside, **{"destination.namespace": "shop"})
    assert elsewhere == [("internal-only.rule.istio-system", Code.OK)]
    reads = await decide(snapshot, **{**inside, "request.method": "GET"}, **{"destination.namespace": "bookinfo"})
    assert reads == [("internal-only.rule.istio-system", Code.OK)]


def _ip(text: str):
    import ipaddress

    return ipaddress.ip_address(text)
