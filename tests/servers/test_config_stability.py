"""A config file being written in place is not loaded half-written: a change loads once it holds still."""

from __future__ import annotations

import os


FULL = """
handlers:
  - {name: deny, adapter: denier, params: {status: {code: 7, message: admin is closed}}}
  - {name: nets, adapter: listchecker, params: {entryType: STRINGS, overrides: ["a", "b"], blacklist: true}}
instances:
  - {name: nothing, template: checknothing, params: {}}
  - {name: user, template: listentry, params: {value: 'request.headers["x-user"] | ""'}}
rules:
  - {name: users, actions: [{handler: nets, instances: [user]}]}
  - {name: admin, match: request.path == "/admin", actions: [{handler: deny, instances: [nothing]}]}
"""


def _write_in_place(path, text):
    with open(path, "r+") as f:  # same inode, like an editor or `cat > file` writing over it
        f.truncate(0)
        f.write(text)


async def _admin_code(service):
    decision = await service.check({"request.path": "/admin", "request.headers": {"x-user": "c"}})
    return int(decision.code)


async def test_a_half_written_file_is_not_loaded(policy_config, policy_service_factory):
    config = policy_config(FULL)
    file = config / "policy.yaml"
    service = await policy_service_factory(config)
    assert await _admin_code(service) == 7
    cut = FULL.index("  - {name: admin")                   # valid YAML, the deny rule not yet written
    edited = FULL.replace("overrides: [\"a\", \"b\"]", "overrides: [\"a\", \"b\", \"z\"]")
    _write_in_place(file, edited[:cut + 2])
    assert await service.reload() is False                # first poll sees the change: wait for it to settle
    assert service.reload_status.generation == 1
    assert await _admin_code(service) == 7
    _write_in_place(file, edited)                         # the writer finishes
    os.utime(file, ns=(1, 1_000_000_000_000_000_001))     # a distinct mtime even on a coarse clock
    assert await service.reload() is False                # changed again since the last poll
    assert await service.reload() is True                 # unchanged across two polls: loaded
    assert service.reload_status.generation == 2
    assert await _admin_code(service) == 7
    assert await service.reload() is False                # nothing new


async def test_force_loads_at_once(policy_config, policy_service_factory):
    config = policy_config(FULL)
    service = await policy_service_factory(config)
    (config / "policy.yaml").write_text(FULL.replace("/admin", "/root"))
    assert await service.reload(force=True) is True
    assert int((await service.check({"request.path": "/root", "request.headers": {"x-user": "c"}})).code) == 7
