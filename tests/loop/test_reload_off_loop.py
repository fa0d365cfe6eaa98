"""A reload compiles on its own thread: while a build is stuck, the old snapshot answers checks."""

from __future__ import annotations

import asyncio

from policy.sdk import Code
from tests.loop import plugins_for_loop

DENY_ALL = """
handlers:
  - name: deny
    adapter: denier
    params: {status: {code: 7, message: blocked}, validDuration: 60s}
instances:
  - {name: nothing, template: checknothing, params: {}}
rules:
  - {name: all, actions: [{handler: deny, instances: [nothing]}]}
"""

GATED = """
handlers:
  - {name: gate, adapter: gate}
instances:
  - {name: nothing, template: checknothing, params: {}}
rules:
  - {name: all, actions: [{handler: gate, instances: [nothing]}]}
"""


async def _until(predicate, what: str) -> None:
    for _ in range(1000):  # bounded: 10 s
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_checks_are_answered_by_the_old_snapshot_while_the_new_one_builds(policy_config,
                                                                                 policy_service_factory):
    plugins_for_loop.ENTERED.clear()
    plugins_for_loop.RELEASE.clear()
    path = policy_config(DENY_ALL)
    service = await policy_service_factory(path, plugins_for_loop)
    (path / "policy.yaml").write_text(GATED)
    reload = asyncio.create_task(service.reload(force=True))
    try:
        # Before, the build ran on the event loop: this wait (and every check) stalled behind it.
        await _until(plugins_for_loop.ENTERED.is_set, "the new config's build to start")
        for i in range(20):
            decision = await service.check({"request.id": str(i)})
            assert decision.code == Code.PERMISSION_DENIED and decision.generation == 1
        assert not reload.done()
    finally:
        plugins_for_loop.RELEASE.set()
    assert await reload
    decision = await service.check({"request.id": "after"})
    assert decision.code == Code.OK and decision.generation == 2


async def test_a_reload_cancelled_mid_compile_closes_what_it_built(policy_config, policy_service_factory):
    plugins_for_loop.ENTERED.clear()
    plugins_for_loop.RELEASE.clear()
    path = policy_config(DENY_ALL)
    service = await policy_service_factory(path, plugins_for_loop)
    (path / "policy.yaml").write_text(GATED)
    reload = asyncio.create_task(service.reload(force=True))
    await _until(plugins_for_loop.ENTERED.is_set, "the new config's build to start")
    reload.cancel()
    plugins_for_loop.RELEASE.set()
    await asyncio.gather(reload, return_exceptions=True)
    assert reload.cancelled()
    assert service.reload_status.generation == 1  # the old config still serves
    assert (await service.check({})).code == Code.PERMISSION_DENIED
    # The next reload is not blocked by the cancelled one, and takes the new config.
    assert await service.reload(force=True)
    assert service.reload_status.generation == 2


async def test_an_unchanged_config_check_leaves_the_collector_alone(policy_config, policy_service_factory):
    # The watcher fingerprints the config every interval (on the compile thread): that must not
    # freeze the young objects of the traffic, or their cycles would never be collected.
    import gc

    service = await policy_service_factory(policy_config(DENY_ALL))
    frozen = gc.get_freeze_count()
    for _ in range(3):
        assert not await service.reload()
    assert gc.get_freeze_count() <= frozen and gc.isenabled()  # (frozen objects may be freed)
