"""Loading many AuthorizationPolicies: 10,000 policies in one config directory, read and compiled.

Timed: ``PolicyService.load()`` of a directory holding the rbac handler and 10,000
AuthorizationPolicies (one rule each: principals, a path and a method), as ``policy
serve`` does at start and on every reload; then the YAML parsing alone with libyaml's
``CSafeLoader`` (what ``policy.config.documents`` uses when PyYAML has it) and with the
pure-Python ``SafeLoader`` (the fallback), to show where the time goes. Target: the whole
load under 3 s.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._stats import header

COUNT = 10_000


def policy_text(count: int) -> str:
    """The config (handler, instance, rule) followed by ``count`` AuthorizationPolicies."""
    config = {"handlers": [{"name": "authz", "adapter": "rbac"}],
              "instances": [{"name": "request", "template": "requestcontext", "params": {}}],
              "rules": [{"name": "authz", "actions": [{"handler": "authz", "instances": ["request"]}]}]}
    docs: list[object] = [config]
    for i in range(count):
        docs.append({
            "apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy",
            "metadata": {"name": f"p{i}", "namespace": f"ns{i % 50}"},
            "spec": {"selector": {"matchLabels": {"app": f"app{i % 20}"}},
                     "rules": [{"from": [{"source": {"principals": [f"cluster.local/ns/ns{i % 50}/sa/user{i % 300}"]}}],
                                "to": [{"operation": {"paths": [f"/api/v1/items/{i}"], "methods": ["GET", "HEAD"]}}]}]},
        })
    return yaml.safe_dump_all(docs)


def _parse(text: str, loader: type) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in yaml.load_all(text, Loader=loader))
    assert count == COUNT + 1
    return time.perf_counter() - start


def run(quick: bool = False) -> None:
    """Time one full load of 10,000 policies and the YAML parse with each loader."""
    from policy.config import documents
    from policy.runtime.plugins import build_plugin_host
    from policy.runtime.service import PolicyService

    header("rbac: loading 10,000 AuthorizationPolicies", __doc__.split("\n\n")[1].replace("\n", " "))
    text = policy_text(COUNT)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "policy.yaml").write_text(text)

        async def load() -> float:
            service = PolicyService(tmp, build_plugin_host(autoload=False), watch_interval=0)
            start = time.perf_counter()
            service.load()
            elapsed = time.perf_counter() - start
            await service.stop()
            return elapsed

        loads = [asyncio.run(load()) for _ in range(1 if quick else 3)]
    best = min(loads)
    print(f"  whole load (read, parse, compile, index), loader {documents._LOADER.__name__}: "
          f"best {best:.2f}s of {len(loads)} (target < 3s): {'ok' if best < 3 else 'OVER TARGET'}")
    fast = _parse(text, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    print(f"  YAML parse only, {getattr(yaml, 'CSafeLoader', yaml.SafeLoader).__name__}: {fast:.2f}s")
    if not quick:
        slow = _parse(text, yaml.SafeLoader)
        print(f"  YAML parse only, SafeLoader (pure Python): {slow:.2f}s ({slow / fast:.1f}x)")
