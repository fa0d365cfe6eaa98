"""RBAC: our rbac adapter (AuthorizationPolicy) against PyCasbin on the same decisions.

A role model of 100 users and 20 roles in 4 inheritance levels (each role inherits one
or two roles of the level below) grants N permissions ``(role, object, action)``.
Casbin gets it as written (a ``g`` line per assignment and inheritance, a ``p`` line
per permission, the classic RBAC model). Our rbac handler gets the same permissions as
Istio AuthorizationPolicies: one ALLOW policy per permission whose ``principals`` are
the users holding the role through inheritance (AuthorizationPolicy has no roles, so
inheritance is resolved when the policies are written) and whose operation is the
object (path) and action (method). Before timing, the decisions of the three engines
are compared on sampled requests.

Timed: one decision for one request, cycling through 2,000 requests (half of them
granted), one batch of each engine in turn so load from other processes falls on all alike: ``enforce(user, obj, act)`` for ``casbin.Enforcer`` and ``casbin.FastEnforcer``
(policies pre-filtered by object and action), ``handler.check(instance)`` for ours (the
adapter's whole decision on a requestcontext instance, building the request view
included; instance building by the host is excluded since casbin gets its arguments
ready-made). The host's in-process check with the decision cache off is printed too.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._stats import header, summarize_us

MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
"""

ACTIONS = ("GET", "POST", "PUT", "DELETE")
USERS = [f"user{i}" for i in range(100)]
ROLES = [f"role{i}" for i in range(20)]


def principal(user: str) -> str:
    """The SPIFFE-style principal a user's workload presents."""
    return f"cluster.local/ns/default/sa/{user}"


class RoleModel:
    """Users, roles with inheritance, and permissions; seeded, so every run builds the same one."""

    def __init__(self, permissions: int, seed: int = 42) -> None:
        rng = random.Random(seed)
        self.inherits: dict[str, list[str]] = {}
        for index, role in enumerate(ROLES):
            level = index // 5
            below = ROLES[(level - 1) * 5: level * 5] if level else []
            self.inherits[role] = rng.sample(below, rng.randint(1, 2)) if below else []
        self.user_roles = {user: rng.sample(ROLES, rng.randint(1, 2)) for user in USERS}
        objects = [f"/res/{i}" for i in range(max(permissions // 2, 1))]
        grants: set[tuple[str, str, str]] = set()
        while len(grants) < permissions:
            grants.add((rng.choice(ROLES), rng.choice(objects), rng.choice(ACTIONS)))
        self.permissions = sorted(grants)
        self.objects = objects

    def closure(self, user: str) -> set[str]:
        """Every role a user holds, directly or by inheritance."""
        seen: set[str] = set()
        pending = list(self.user_roles[user])
        while pending:
            role = pending.pop()
            if role not in seen:
                seen.add(role)
                pending.extend(self.inherits[role])
        return seen

    def holders(self) -> dict[str, list[str]]:
        """Role → users holding it (through inheritance)."""
        out: dict[str, list[str]] = {role: [] for role in ROLES}
        for user in USERS:
            for role in self.closure(user):
                out[role].append(user)
        return out

    def requests(self, count: int, seed: int = 7) -> list[tuple[str, str, str]]:
        """Half granted (a holder of a permission's role), half random (mostly refused)."""
        rng = random.Random(seed)
        holders = self.holders()
        out = []
        for i in range(count):
            role, obj, act = rng.choice(self.permissions)
            if i % 2 == 0 and holders[role]:
                out.append((rng.choice(holders[role]), obj, act))
            else:
                out.append((rng.choice(USERS), rng.choice(self.objects), rng.choice(ACTIONS)))
        return out

    def casbin_csv(self) -> str:
        """The model's policy as casbin CSV lines."""
        lines = [f"p, {r}, {o}, {a}" for r, o, a in self.permissions]
        lines += [f"g, {u}, {r}" for u, roles in self.user_roles.items() for r in roles]
        lines += [f"g, {child}, {parent}" for child, parents in self.inherits.items() for parent in parents]
        return "\n".join(lines) + "\n"

    def authorization_policies(self) -> list[dict[str, Any]]:
        """One ALLOW AuthorizationPolicy per permission."""
        holders = self.holders()
        docs = []
        for i, (role, obj, act) in enumerate(self.permissions):
            users = holders[role]
            if not users:
                continue
            docs.append({
                "apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy", "_source": "bench",
                "metadata": {"name": f"p{i}-{role}", "namespace": "default"},
                "spec": {"rules": [{"from": [{"source": {"principals": [principal(u) for u in users]}}],
                                    "to": [{"operation": {"paths": [obj], "methods": [act]}}]}]},
            })
        return docs


def build_casbin(model: RoleModel, workdir: Path) -> tuple[Any, Any]:
    """(Enforcer, FastEnforcer) loaded from the same files."""
    import casbin

    model_path, policy_path = workdir / "model.conf", workdir / "policy.csv"
    model_path.write_text(MODEL)
    policy_path.write_text(model.casbin_csv())
    plain = casbin.Enforcer(str(model_path), str(policy_path))
    fast = casbin.FastEnforcer(str(model_path), str(policy_path), cache_key_order=[1, 2])
    return plain, fast


def build_rbac(model: RoleModel) -> Any:
    """Our rbac handler, built as the host builds it."""
    from adapters.rbac import RbacAdapter
    from policy import BuildContext, parse_params

    params = parse_params(RbacAdapter.Params, {})
    return RbacAdapter.build(params, BuildContext(handler="bench", extras={"documents": model.authorization_policies()}))


def instance_for(user: str, obj: str, act: str) -> Any:
    """The requestcontext instance the host would build for the request."""
    from adapters.requestcontext import RequestContext

    return RequestContext(name="request", destination_namespace="default", source_principal=principal(user),
                          request_method=act, request_path=obj)


def _cycle(fn: Any, items: list[Any]) -> Any:
    it = itertools.cycle(items)
    return lambda: fn(*next(it))


def rbac_caller(size: int) -> Any:
    """A function deciding the next of 2,000 requests with an rbac handler for ``size`` permissions."""
    model = RoleModel(size)
    handler = build_rbac(model)
    return _cycle(lambda i: handler.check(i), [(instance_for(*r),) for r in model.requests(2000)])


def compare(size: int, quick: bool, workdir: Path) -> dict[str, list[float]]:
    """Build the three engines for ``size`` permissions, check they agree, time them."""
    model = RoleModel(size)
    plain, fast = build_casbin(model, workdir)
    handler = build_rbac(model)
    requests = model.requests(2000)
    instances = [instance_for(*r) for r in requests]
    sample = requests[:200] if size > 1000 else requests[:1000]
    ours = [handler.check(instance_for(*r)).status.ok for r in sample]
    theirs = [plain.enforce(*r) for r in sample]
    theirs_fast = [fast.enforce(*r) for r in sample]
    assert ours == theirs == theirs_fast, f"decisions differ at {size} permissions"
    granted = sum(ours)
    print(f"  {size:>6} permissions: decisions agree on {len(sample)} sampled requests ({granted} granted)")
    contenders = {
        "rbac": (_cycle(lambda i: handler.check(i), [(i,) for i in instances]), 50),
        "FastEnforcer": (_cycle(fast.enforce, requests), 10),
        "Enforcer": (_cycle(plain.enforce, requests), 1 if size > 1000 else 5),
    }
    return interleaved(contenders, 100 if quick else 400, 6.0 if quick else 20.0)


def interleaved(contenders: dict[str, tuple[Any, int]], rounds: int, max_seconds: float) -> dict[str, list[float]]:
    """Per-call seconds of each contender, one batch of each in turn (so load from other processes
    falls on all alike), bounded in rounds and time."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    perf = time.perf_counter
    deadline = time.monotonic() + max_seconds
    for _ in range(rounds):
        for name, (fn, batch) in contenders.items():
            start = perf()
            for _ in range(batch):
                fn()
            samples[name].append((perf() - start) / batch)
        if time.monotonic() > deadline:
            break
    return samples


def host_check(quick: bool) -> None:
    """The host's in-process check (instance built from attributes, cache off) for 200 permissions."""
    import yaml

    from policy.attributes import AttributeBag
    from policy.runtime.plugins import build_plugin_host
    from policy.runtime.service import PolicyService

    model = RoleModel(200)
    with tempfile.TemporaryDirectory() as tmp:
        docs = [{k: v for k, v in d.items() if k != "_source"} for d in model.authorization_policies()]
        config = {"settings": {"cache": {"enabled": False}},
                  "handlers": [{"name": "authz", "adapter": "rbac"}],
                  "instances": [{"name": "request", "template": "requestcontext", "params": {}}],
                  "rules": [{"name": "authz", "actions": [{"handler": "authz", "instances": ["request"]}]}]}
        Path(tmp, "policy.yaml").write_text(yaml.safe_dump_all([config, *docs]))

        async def run() -> list[float]:
            service = PolicyService(tmp, build_plugin_host(autoload=False), watch_interval=0)
            service.load()
            bags = [AttributeBag({"destination.namespace": "default", "source.principal": principal(u),
                                  "request.method": a, "request.path": o}) for u, o, a in model.requests(2000)]
            samples: list[float] = []
            perf = time.perf_counter
            deadline = time.monotonic() + (3 if quick else 10)
            for bag in itertools.islice(itertools.cycle(bags), 2_000 if quick else 20_000):
                start = perf()
                await service.check(bag)
                samples.append(perf() - start)
                if time.monotonic() > deadline:
                    break
            await service.stop()
            return samples

        samples = asyncio.run(run())
    print(f"  host in-process check, cache off, 200 permissions: {summarize_us(samples)}")


def run(quick: bool = False) -> None:
    """Compare at 100, 200 and 10,000 permissions; print medians, p99 and ratios."""
    header("rbac vs PyCasbin", __doc__.split("\n\n")[1].replace("\n", " "))
    medians: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in (100, 200, 10_000):
            samples = compare(size, quick, Path(tmp))
            medians[size] = {k: statistics.median(v) for k, v in samples.items()}
            for label, values in samples.items():
                print(f"      {label:<13} {summarize_us(values)}   ({len(values)} batches)")
            m = medians[size]
            print(f"      rbac is {m['Enforcer'] / m['rbac']:.0f}x Enforcer (target >= 10x), "
                  f"{m['FastEnforcer'] / m['rbac']:.1f}x FastEnforcer (target > 1x)")
    # The growth is timed again with both sizes interleaved, so both see the same machine load.
    both = interleaved({"rbac, 100": (rbac_caller(100), 50), "rbac, 10000": (rbac_caller(10_000), 50)},
                       200 if quick else 1000, 6.0 if quick else 20.0)
    for label, values in both.items():
        print(f"      {label:<13} {summarize_us(values)}   ({len(values)} batches, interleaved)")
    growth = statistics.median(both["rbac, 10000"]) / statistics.median(both["rbac, 100"])
    print(f"  rbac median at 10,000 permissions / at 100: {growth:.2f}x (target <= 2x); "
          f"Enforcer: {medians[10_000]['Enforcer'] / medians[100]['Enforcer']:.0f}x, "
          f"FastEnforcer: {medians[10_000]['FastEnforcer'] / medians[100]['FastEnforcer']:.1f}x")
    host_check(quick)
