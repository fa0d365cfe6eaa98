"""Policy and data files are reloaded off the request path when they change; a policy that fails to
compile keeps the last good one; decisions cached from the old policy are dropped."""

from __future__ import annotations

import asyncio
import json
import os

from policy import Code
from tests.opa.conftest import message

POLICY = """package envoy.authz
import rego.v1
default allow := false
allow if input.attributes.request.http.headers["x-user"] in data.users
"""


def touch_later(path, text: str) -> None:
    """Write ``text`` and move the mtime forward, so the change is seen whatever the clock's resolution."""
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))


def req(user: str) -> dict:
    return {"request.method": "GET", "request.path": "/", "request.headers": {"x-user": user}}


async def test_changed_files_are_reloaded_and_bad_ones_rejected(tmp_path, opa_service, caplog):
    policy, data = tmp_path / "authz.rego", tmp_path / "users.json"
    policy.write_text(POLICY)
    data.write_text(json.dumps({"users": ["alice"]}))
    service = await opa_service(f"policyFiles: [{policy}]\ndataFiles: [{data}]\nreloadInterval: 1h")
    handler = service.snapshot.handlers["opa"].handler
    assert (await service.check(req("alice"))).allowed
    assert not (await service.check(req("bob"))).allowed

    touch_later(data, json.dumps({"users": ["alice", "bob"]}))
    assert await handler.reload_if_changed()
    assert (await service.check(req("bob"))).allowed
    assert handler.reloads == 1

    touch_later(policy, POLICY.replace("allow if", "allow {"))  # v0 syntax: rejected
    assert not await handler.reload_if_changed()
    still = await service.check(req("bob"))
    assert still.allowed
    assert "`if` keyword is required before rule body" in handler.last_error
    assert "policy change rejected, the last good policy stays in force" in caplog.text

    touch_later(policy, POLICY.replace('"x-user"', '"x-login"'))
    assert await handler.reload_if_changed()
    decision = await service.check({**req("bob"), "request.headers": {"x-login": "bob"}})
    assert decision.allowed and handler.last_error is None and handler.reloads == 2


async def test_a_removed_file_is_an_error_that_keeps_the_policy(tmp_path, opa_service):
    policy = tmp_path / "authz.rego"
    policy.write_text(POLICY.replace("in data.users", '== "alice"'))
    service = await opa_service(f"policyFiles: [{policy}]\nreloadInterval: 1h")
    handler = service.snapshot.handlers["opa"].handler
    policy.unlink()
    assert not await handler.reload_if_changed()
    assert (await service.check(req("alice"))).allowed
    assert "cannot read" in handler.last_error


async def test_a_check_never_compiles(tmp_path, opa_service):
    policy = tmp_path / "authz.rego"
    policy.write_text(POLICY.replace("in data.users", '== "alice"'))
    service = await opa_service(f"policyFiles: [{policy}]\nreloadInterval: 1h")
    handler = service.snapshot.handlers["opa"].handler
    touch_later(policy, POLICY.replace("in data.users", '== "bob"'))
    decision = await service.check(req("bob"))  # answered by the policy in force, not a recompiled one
    assert decision.code == Code.PERMISSION_DENIED and "denied" in message(decision)
    assert handler.reloads == 0


async def test_the_watcher_reloads_in_the_background(tmp_path, opa_service):
    policy = tmp_path / "authz.rego"
    policy.write_text(POLICY.replace("in data.users", '== "alice"'))
    service = await opa_service(f"policyFiles: [{policy}]\nreloadInterval: 5ms")
    handler = service.snapshot.handlers["opa"].handler
    assert not (await service.check(req("bob"))).allowed
    handler.changed.clear()
    touch_later(policy, POLICY.replace("in data.users", '== "bob"'))
    await asyncio.wait_for(handler.changed.wait(), 30)  # the watcher's event, not a sleep
    assert handler.reloads == 1
    assert (await service.check(req("bob"))).allowed


async def test_decisions_cached_from_the_old_policy_are_dropped(tmp_path, opa_service):
    policy = tmp_path / "authz.rego"
    policy.write_text(POLICY.replace("in data.users", '== "alice"'))
    service = await opa_service(f"policyFiles: [{policy}]\nreloadInterval: 1h\nvalidDuration: 1h")
    handler = service.snapshot.handlers["opa"].handler
    assert (await service.check(req("alice"))).allowed
    assert (await service.check(req("alice"))).cache_hit
    touch_later(policy, POLICY.replace("in data.users", '== "bob"'))
    assert await handler.reload_if_changed()
    after = await service.check(req("alice"))
    assert not after.cache_hit and not after.allowed
