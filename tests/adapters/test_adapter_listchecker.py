"""The listchecker adapter: entry types, whitelist/blacklist, providers, refresh, ttl, params."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

import pytest

from adapters.listchecker import ListChecker
from policy import AdapterError, Code, ListEntry, ParamsError, describe_params, parse_params


def entry(value):
    return ListEntry("source", value)


def code_of(handler, value):
    return handler.check(entry(value)).status.code


# --- local lists (overrides only) ------------------------------------------------


def test_strings_whitelist(build):
    handler = build(ListChecker, {"overrides": ["alpha", "Beta"]})
    allowed = handler.check(entry("alpha"))
    assert allowed.status.ok
    assert (allowed.valid_duration, allowed.valid_use_count) == (300.0, 10000)
    denied = handler.check(entry("gamma"))
    assert denied.status.code is Code.PERMISSION_DENIED
    assert denied.status.message == "gamma is not whitelisted"
    assert (denied.valid_duration, denied.valid_use_count) == (300.0, 10000)
    assert code_of(handler, "beta") is Code.PERMISSION_DENIED  # case matters for STRINGS


def test_case_insensitive_strings(build):
    handler = build(ListChecker, {"overrides": ["AbC", "straße"], "entryType": "CASE_INSENSITIVE_STRINGS"})
    for value in ("abc", "ABC", "aBc", "STRASSE"):
        assert code_of(handler, value) is Code.OK, value
    assert code_of(handler, "abd") is Code.PERMISSION_DENIED


def test_blacklist(build):
    handler = build(ListChecker, {"overrides": ["evil"], "blacklist": True})
    denied = handler.check(entry("evil"))
    assert denied.status.code is Code.PERMISSION_DENIED
    assert denied.status.message == "evil is blacklisted"
    assert code_of(handler, "good") is Code.OK


def test_caching_params_become_cacheability(build):
    handler = build(ListChecker, {"overrides": ["a"], "cachingInterval": "2s", "cachingUseCount": 7})
    for value in ("a", "b", None):
        result = handler.check(entry(value))
        assert (result.valid_duration, result.valid_use_count) == (2.0, 7)


IP_OVERRIDES = ["10.1.2.3", "192.168.0.0/16", "2001:db8::1", "2001:db8:ff00::/40", "172.16.5.9/24"]


@pytest.mark.parametrize(("value", "code"), [
    ("10.1.2.3", Code.OK),
    ("10.1.2.4", Code.PERMISSION_DENIED),
    ("192.168.200.7", Code.OK),
    ("192.169.0.1", Code.PERMISSION_DENIED),
    ("172.16.5.200", Code.OK),                     # host bits in the CIDR are masked, as in Go
    (ipaddress.ip_address("192.168.1.1"), Code.OK),  # from source.ip
    ("2001:db8::1", Code.OK),
    ("2001:db8::2", Code.PERMISSION_DENIED),       # a bare IPv6 address is not a /32 (Mixer's bug)
    ("2001:db8:ffab::17", Code.OK),
    ("2001:db8:fe00::1", Code.PERMISSION_DENIED),
    (ipaddress.ip_address("2001:db8:ff00::abcd"), Code.OK),
    ("::ffff:10.1.2.3", Code.OK),                 # IPv4-mapped IPv6 matches the IPv4 entry
    (bytes([10, 1, 2, 3]), Code.OK),              # Mixer's raw IP bytes
    ("XYZ", Code.INVALID_ARGUMENT),
    (42, Code.INVALID_ARGUMENT),
])
def test_ip_addresses(build, value, code):
    handler = build(ListChecker, {"overrides": IP_OVERRIDES, "entryType": "IP_ADDRESSES"})
    assert code_of(handler, value) is code


def test_ip_messages(build):
    handler = build(ListChecker, {"overrides": ["10.0.0.0/8"], "entryType": "IP_ADDRESSES"})
    assert handler.check(entry("XYZ")).status.message == "XYZ is not a valid IP address"
    denied = handler.check(entry(ipaddress.ip_address("11.0.0.1")))
    assert denied.status.message == "11.0.0.1 is not whitelisted"


def test_ip_blacklist_with_ipv6_cidr(build):
    handler = build(ListChecker, {"overrides": ["fd00::/8"], "entryType": "IP_ADDRESSES", "blacklist": True})
    assert code_of(handler, "fd12:3456::1") is Code.PERMISSION_DENIED
    assert code_of(handler, "fe80::1") is Code.OK
    assert code_of(handler, "10.0.0.1") is Code.OK  # the other family never matches


def test_strings_list_accepts_ip_values(build):
    handler = build(ListChecker, {"overrides": ["10.0.0.1"]})
    assert code_of(handler, ipaddress.ip_address("10.0.0.1")) is Code.OK


@pytest.mark.parametrize(("value", "code"), [
    ("foobar", Code.OK),          # ^foo
    ("xbar", Code.OK),            # bar$ (matches anywhere, as Go's MatchString)
    ("xbarx", Code.PERMISSION_DENIED),
    ("Hello", Code.OK),           # (?i)hello: inline flags, scoped to their own alternative
    ("xHELLOx", Code.OK),
    ("abba", Code.PERMISSION_DENIED),
    ("Bar", Code.PERMISSION_DENIED),  # the (?i) does not leak into the other patterns
])
def test_regex(build, value, code):
    handler = build(ListChecker, {"overrides": ["^foo", "bar$", "(?i)hello"], "entryType": "REGEX"})
    assert code_of(handler, value) is code


@pytest.mark.parametrize("pattern", [r"(ab)\1", "(?=a)b", "(?<!a)b", r"a\Z"])
def test_regex_that_re2_cannot_run_is_a_config_error(build, pattern):
    # Mixer compiled these with Go's regexp (RE2 syntax), which rejects them: so do we, at load,
    # rather than match them differently.
    with pytest.raises(AssertionError) as info:  # validate's errors (the fixture asserts there are none)
        build(ListChecker, {"overrides": ["^ok", pattern], "entryType": "REGEX"})
    assert "overrides[1]" in str(info.value) and "not a valid regular expression" in str(info.value)


def test_regex_runs_in_linear_time_on_hostile_input(build):
    # 7.8 s with a backtracking engine (exponential in the 27 characters); RE2 takes microseconds.
    handler = build(ListChecker, {"overrides": ["^([a-z0-9]+-?)*$"], "entryType": "REGEX"})
    assert code_of(handler, "a" * 27 + "!") is Code.PERMISSION_DENIED
    assert code_of(handler, "abc-def") is Code.OK


def test_regex_joined(build):
    handler = build(ListChecker, {"overrides": ["^api-", r"\.internal$"], "entryType": "REGEX"})
    assert code_of(handler, "api-users") is Code.OK
    assert code_of(handler, "db.internal") is Code.OK
    assert code_of(handler, "web") is Code.PERMISSION_DENIED


@pytest.mark.parametrize("blacklist", [False, True])
def test_missing_value_is_invalid_argument(build, blacklist):
    handler = build(ListChecker, {"overrides": ["a"], "blacklist": blacklist})
    result = handler.check(entry(None))
    assert result.status.code is Code.INVALID_ARGUMENT
    assert "source" in result.status.message


def test_empty_string_is_an_ordinary_value(build):
    """Mixer's list_integration_test.go: ``value: source.name | ""`` with no source.name."""
    whitelist = build(ListChecker, {"overrides": ["a"]})
    result = whitelist.check(entry(""))
    assert result.status.code is Code.PERMISSION_DENIED
    assert result.status.message == " is not whitelisted"
    assert build(ListChecker, {"overrides": ["a"], "blacklist": True}).check(entry("")).status.code is Code.OK
    # stringList.go skips an empty override: it is accepted and never lists ""
    assert build(ListChecker, {"overrides": ["", "a"]}).check(entry("")).status.code is Code.PERMISSION_DENIED
    assert build(ListChecker, {"overrides": ["", "a"], "blacklist": True}).check(entry("")).status.code is Code.OK


# --- providers ----------------------------------------------------------------------


async def test_file_provider_relative_path_and_refresh(build, tmp_path):
    (tmp_path / "lists").mkdir()
    source = tmp_path / "lists" / "allow.txt"
    source.write_text("alpha\r\n\n  beta  \n")
    handler = build(ListChecker, {"providerUrl": "file://lists/allow.txt", "overrides": ["omega"]})
    try:
        assert (await handler.check(entry("alpha"))).status.ok
        assert (await handler.check(entry("beta"))).status.ok
        assert (await handler.check(entry("omega"))).status.ok  # overrides are always in
        assert (await handler.check(entry("gamma"))).status.code is Code.PERMISSION_DENIED
        source.write_text("gamma\n")
        assert await handler.refresh() is True
        assert (await handler.check(entry("gamma"))).status.ok
        assert (await handler.check(entry("alpha"))).status.code is Code.PERMISSION_DENIED
        assert (await handler.check(entry("omega"))).status.ok
    finally:
        await handler.close()


async def test_file_provider_absolute_url_with_yaml_ip_list(build, tmp_path):
    source = tmp_path / "ips.yaml"
    source.write_text("whitelist:\n  - 10.0.0.0/8\n  - 2001:db8::/32\n")
    handler = build(ListChecker, {"providerUrl": source.as_uri(), "entryType": "IP_ADDRESSES"})
    try:
        assert (await handler.check(entry("10.9.8.7"))).status.ok
        assert (await handler.check(entry("2001:db8:1::1"))).status.ok
        assert (await handler.check(entry("11.0.0.1"))).status.code is Code.PERMISSION_DENIED
    finally:
        await handler.close()


async def test_bad_content_keeps_previous_list(build, tmp_path):
    source = tmp_path / "ips.txt"
    source.write_text("10.0.0.1\n")
    handler = build(ListChecker, {"providerUrl": source.as_uri(), "entryType": "IP_ADDRESSES"})
    try:
        assert (await handler.check(entry("10.0.0.1"))).status.ok
        source.write_text("10.0.0.2\nnot-an-ip\n")
        assert await handler.refresh() is False
        assert (await handler.check(entry("10.0.0.1"))).status.ok
        assert (await handler.check(entry("10.0.0.2"))).status.code is Code.PERMISSION_DENIED
    finally:
        await handler.close()


async def test_http_provider(build, list_server):
    list_server.body = b"alpha\nbeta\n"
    handler = build(ListChecker, {"providerUrl": list_server.url})
    try:
        assert (await handler.check(entry("alpha"))).status.ok
        assert (await handler.check(entry("gamma"))).status.code is Code.PERMISSION_DENIED
        list_server.body = b"gamma\n"
        assert await handler.refresh() is True
        assert (await handler.check(entry("gamma"))).status.ok
        assert (await handler.check(entry("alpha"))).status.code is Code.PERMISSION_DENIED
        list_server.status = 500
        assert await handler.refresh() is False  # an outage within ttl keeps the last list
        assert (await handler.check(entry("gamma"))).status.ok
        assert list_server.hits == 3
    finally:
        await handler.close()


async def test_ttl_expiry_answers_unavailable(build, list_server, fake_clock):
    list_server.body = b"alpha\n"
    handler = build(ListChecker, {"providerUrl": list_server.url, "refreshInterval": "10s", "ttl": "30s"},
                    clock=fake_clock.clock)
    try:
        assert (await handler.check(entry("alpha"))).status.ok
        list_server.status = 503
        fake_clock.advance(20)
        assert await handler.refresh() is False
        assert (await handler.check(entry("alpha"))).status.ok  # 20s old: still within ttl
        fake_clock.advance(11)
        with pytest.raises(AdapterError) as info:
            await handler.check(entry("alpha"))
        assert info.value.code is Code.UNAVAILABLE
        assert "'h'" in info.value.message and list_server.url in info.value.message
        assert "HTTP 503" in info.value.message
        list_server.status = 200
        assert await handler.refresh() is True
        assert (await handler.check(entry("alpha"))).status.ok
    finally:
        await handler.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_provider_is_unavailable(build):
    url = f"http://127.0.0.1:{_closed_port()}/list"
    handler = build(ListChecker, {"providerUrl": url})
    try:
        with pytest.raises(AdapterError) as info:
            await handler.check(entry("alpha"))
        assert info.value.code is Code.UNAVAILABLE
        assert url in info.value.message and "'h'" in info.value.message
    finally:
        await handler.close()


def _refresh_tasks():
    return [t for t in asyncio.all_tasks() if t.get_name() == "listchecker-refresh-h" and not t.done()]


async def test_background_task_is_lazy_and_closed(build, tmp_path):
    source = tmp_path / "list.txt"
    source.write_text("alpha\n")
    handler = build(ListChecker, {"providerUrl": source.as_uri()})
    assert _refresh_tasks() == []
    await handler.start()
    assert len(_refresh_tasks()) == 1
    assert (await handler.check(entry("alpha"))).status.code is Code.OK  # loaded by start()
    await handler.close()
    assert _refresh_tasks() == []


@pytest.mark.slow
async def test_background_refresh_picks_up_changes(build, tmp_path):
    source = tmp_path / "list.txt"
    source.write_text("alpha\n")
    handler = build(ListChecker, {"providerUrl": source.as_uri(), "refreshInterval": "1s", "ttl": "5s"})
    try:
        assert (await handler.check(entry("beta"))).status.code is Code.PERMISSION_DENIED
        source.write_text("beta\n")
        deadline = time.monotonic() + 30  # a bound for a loaded machine; the refresh runs every second
        while not (await handler.check(entry("beta"))).status.ok:
            assert time.monotonic() < deadline, "the background refresh did not install the new list"
            await asyncio.sleep(0.05)
    finally:
        await handler.close()


# --- params -------------------------------------------------------------------------


def _errors(raw):
    return {e.field: e.message for e in ListChecker.validate(parse_params(ListChecker.Params, raw))}


def test_validate_ip_overrides_by_index():
    errors = _errors({"entryType": "IP_ADDRESSES", "overrides": ["10.0.0.1", "::1", "10.0.0.0/8", "10.0.0.0/33"]})
    assert set(errors) == {"overrides[3]"}
    assert "10.0.0.0/33" in errors["overrides[3]"]


def test_validate_regex_and_empty_overrides():
    errors = _errors({"entryType": "REGEX", "overrides": ["(unclosed", "ok", ""]})
    assert set(errors) == {"overrides[0]", "overrides[2]"}


def test_validate_provider_and_intervals():
    errors = _errors({"providerUrl": "http://lists.example", "refreshInterval": "500ms", "ttl": "100ms",
                      "cachingUseCount": -1})
    assert set(errors) == {"refreshInterval", "ttl", "cachingUseCount"}
    assert "refreshInterval" in errors["ttl"]


@pytest.mark.parametrize("url", ["ftp://host/list", "lists/allow.txt", "http://", "https:///path", "file://"])
def test_validate_provider_url(url):
    assert set(_errors({"providerUrl": url})) == {"providerUrl"}


@pytest.mark.parametrize("url", ["https://lists.example/a.txt", "file:///etc/list", "file:rel/list.txt"])
def test_valid_provider_urls(url):
    assert _errors({"providerUrl": url}) == {}


def test_defaults_are_mixers_and_documented():
    params = parse_params(ListChecker.Params, {})
    assert params.refresh_interval.total_seconds() == 60
    assert params.ttl.total_seconds() == 300
    assert params.caching_interval.total_seconds() == 300
    assert params.caching_use_count == 10000
    assert (params.provider_url, params.overrides, params.entry_type.name, params.blacklist) == \
        ("", [], "STRINGS", False)
    assert all(row["doc"] for row in describe_params(ListChecker.Params))


def test_schema_errors():
    with pytest.raises(ParamsError) as info:
        parse_params(ListChecker.Params, {"entryType": "IPS", "ttl": "forever", "overrides": "a"})
    assert {e.field for e in info.value.errors} == {"entryType", "ttl", "overrides"}
