"""OPA: our opa adapter against a bare regopy evaluation of the same policy and input.

The policy is an OPA-Envoy-style authorizer (``package envoy.authz``: method, a glob on
the path, the parsed query, a header looked up in a data document); the request is a
typical ext_authz request (GET with query and six headers).

Timed, per decision, side by side (one batch of 10 calls of each in turn, so load from
other processes falls on all alike):

* ``bare regopy, query()``: ``set_input(dict)`` then ``query("x = data.envoy.authz.allow")``,
  the interpreter's plain query API (it compiles the query every time);
* ``bare regopy, bundle``: ``set_input(dict)`` then ``query_bundle_entrypoint`` on a bundle
  built for the decision, the fastest way regopy offers; the input dict is prebuilt;
* ``bundle, our converter``: the same, with the input handed over by the adapter's converter
  (direct C calls) instead of regopy's ``Input`` (a Python wrapper per value);
* ``opa adapter, uncached``: the handler's ``check(instance)``: the OPA-Envoy input built
  from the requestcontext instance, handed to the engine, the entry point queried, the
  decision turned into a CheckResult;
* ``opa adapter, ext_authz``: the same check on the instance an ext_authz ``CheckRequest`` of the
  same request gives: input.attributes looked up in the request by the paths the policy
  reaches (protobuf's JSON mapping, as OPA-Envoy's);
* ``opa adapter, cached``: the host's in-process check with ``validDuration: 30s``,
  answered from the decision cache (instance building and evaluation skipped);
* after a policy file change: the next check (which never compiles) and the recompile
  the handler's watcher runs in a worker thread.

Targets: uncached at most 20% over the bare bundle evaluation; cached at least 20x
faster than it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchmarks._stats import header, percentile, summarize_us

POLICY = textwrap.dedent("""
    package envoy.authz

    import rego.v1

    import input.attributes.request.http

    default allow := false

    allow if {
        http.method == "GET"
        glob.match("/api/books/*", ["/"], http.path)
        input.parsed_query.lang == ["en"]
        data.users[http.headers["x-user"]].role in {"reader", "admin"}
    }

    allow if {
        http.method == "POST"
        input.parsed_path == ["api", "books"]
        data.users[http.headers["x-user"]].role == "admin"
    }
""")

DATA = {"users": {"alice": {"role": "admin"}, "bob": {"role": "reader"}, "carol": {"role": "none"}}}

HEADERS = {":authority": "books.shop", ":method": "GET", ":path": "/api/books/42?lang=en",
           "x-user": "bob", "user-agent": "bench/1.0", "accept": "application/json"}


def attributes() -> dict[str, Any]:
    """The request as the ext_authz server translates it."""
    return {
        "source.ip": ipaddress.ip_address("10.1.2.3"), "destination.ip": ipaddress.ip_address("10.4.5.6"),
        "destination.port": 8080, "source.principal": "spiffe://cluster.local/ns/shop/sa/frontend",
        "destination.namespace": "shop", "request.method": "GET", "request.path": "/api/books/42?lang=en",
        "request.url_path": "/api/books/42", "request.host": "books.shop", "request.scheme": "http",
        "request.headers": dict(HEADERS), "context.protocol": "http",
    }


def check_request() -> Any:
    """The same request as an ext_authz v3 ``CheckRequest``."""
    from envoy.service.auth.v3 import external_auth_pb2
    from google.protobuf import json_format

    return json_format.ParseDict({"attributes": {
        "source": {"address": {"socketAddress": {"address": "10.1.2.3", "portValue": 51000}},
                   "principal": "spiffe://cluster.local/ns/shop/sa/frontend"},
        "destination": {"address": {"socketAddress": {"address": "10.4.5.6", "portValue": 8080}}},
        "request": {"time": "2026-01-01T00:00:00Z", "http": {
            "id": "1", "method": "GET", "path": "/api/books/42?lang=en", "host": "books.shop", "scheme": "http",
            "protocol": "HTTP/1.1", "headers": {k: v for k, v in HEADERS.items()}}}}},
        external_auth_pb2.CheckRequest())


def interleaved(fns: dict[str, Any], batches: int, max_seconds: float, batch: int = 10) -> dict[str, list[float]]:
    """Per-call seconds of each function, one batch of each in turn, so load from other processes
    falls on every contender alike; bounded in batches and time."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    perf = time.perf_counter
    deadline = time.monotonic() + max_seconds
    for _ in range(batches):
        for name, fn in fns.items():
            start = perf()
            for _ in range(batch):
                fn()
            samples[name].append((perf() - start) / batch)
        if time.monotonic() > deadline:
            break
    return samples


def run(quick: bool = False) -> None:
    """Time bare regopy and the adapter, uncached and cached; print medians, p99 and ratios."""
    import json

    from regopy import Interpreter, LogLevel

    from adapters.opa import OpaAdapter
    from adapters.opa._engine import to_native
    from adapters.opa._input import build_input
    from policy import BuildContext, parse_params
    from policy.attributes import AttributeBag, RecordingBag
    from policy.runtime.plugins import build_plugin_host
    from policy.runtime.service import PolicyService

    header("opa adapter vs bare regopy", __doc__.split("\n\n")[1].replace("\n", " "))
    count = 3_000 if quick else 30_000
    budget = 5.0 if quick else 15.0
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as files:
        # Policy and data live outside the config directory, whose .json files are config.
        Path(files, "data.json").write_text(json.dumps(DATA))
        Path(files, "policy.rego").write_text(POLICY)
        Path(tmp, "policy.yaml").write_text(textwrap.dedent(f"""
            handlers:
              - name: opa
                adapter: opa
                params: {{policyFiles: [{files}/policy.rego], dataFiles: [{files}/data.json], validDuration: 30s,
                         validUseCount: 1000000}}
            instances:
              - {{name: request, template: requestcontext, params: {{}}}}
            rules:
              - name: opa
                actions: [{{handler: opa, instances: [request]}}]
        """))
        service = PolicyService(tmp, build_plugin_host(autoload=False), watch_interval=0)
        service.load()
        handler = service.snapshot.handlers["opa"].handler
        instance = service.snapshot.instances["request"].build(RecordingBag(AttributeBag(attributes())))
        document = build_input(instance)
        from policy.servers.ext_authz import request_bag

        ext_request = check_request()
        ext_instance = lambda: service.snapshot.instances["request"].build(request_bag(ext_request))  # noqa: E731
        assert build_input(ext_instance(), reach=handler.compiled.input_reach)["attributes"]["request"]["http"][
            "headers"]["x-user"] == "bob"
        built = [ext_instance() for _ in range(count + 10)]  # translated beforehand: only the check is timed

        bare = Interpreter()
        bare.log_level = LogLevel.NONE
        bare.add_module("policy.rego", POLICY)
        bare.add_data(DATA)
        bundle = bare.build(None, ["envoy/authz/allow"])

        def bare_query() -> Any:
            bare.set_input(document)
            return bare.query("x = data.envoy.authz.allow")

        def bare_bundle() -> Any:
            bare.set_input(document)
            return bare.query_bundle_entrypoint(bundle, "envoy/authz/allow")

        def bare_native() -> Any:
            bare.set_input(to_native(document))
            return bare.query_bundle_entrypoint(bundle, "envoy/authz/allow")

        assert bare_query().results[0].bindings["x"] is True
        assert bare_bundle().results[0].expressions[0] is True
        assert handler.check(instance).status.ok
        other = parse_params(OpaAdapter.Params, {"policies": [POLICY.replace('"bob"', '"x"')]})
        assert OpaAdapter.build(other, BuildContext(handler="check")).check(instance).status.ok is False

        samples = interleaved({
            "bare regopy, query()": bare_query,
            "bare regopy, bundle": bare_bundle,
            "bundle, our converter": bare_native,
            "opa adapter, uncached": lambda: handler.check(instance),
            "opa adapter, ext_authz": lambda: handler.check(built.pop()),
        }, count // 10, budget * 2)

        async def cached() -> list[float]:
            bag = AttributeBag(attributes())
            first = await service.check(bag)
            assert first.allowed and not first.cache_hit
            out: list[float] = []
            perf = time.perf_counter
            deadline = time.monotonic() + budget
            for i in range(count):
                request = AttributeBag({**attributes(), "request.id": f"req-{i}"})
                start = perf()
                decision = await service.check(request)
                out.append(perf() - start)
                assert decision.cache_hit and decision.allowed
                if time.monotonic() > deadline:
                    break
            await service.stop()
            return out

        samples["opa adapter, cached"] = asyncio.run(cached())
        reload_samples = asyncio.run(_after_a_change(handler, instance, Path(files, "policy.rego"),
                                                     5 if quick else 20))
    for label, values in samples.items():
        print(f"  {label:<23} {summarize_us(values)}   ({len(values)} samples)")
    median = {k: statistics.median(v) for k, v in samples.items()}
    base = median["bare regopy, bundle"]
    overhead = median["opa adapter, uncached"] / base - 1
    p99 = percentile(samples["opa adapter, uncached"], 0.99) / percentile(samples["bare regopy, bundle"], 0.99) - 1
    print(f"  uncached overhead over bare bundle evaluation: median {overhead:+.0%}, p99 {p99:+.0%} "
          f"(target <= +20%); over bare query(): {median['opa adapter, uncached'] / median['bare regopy, query()'] - 1:+.0%}")
    ext = median["opa adapter, ext_authz"] / base - 1
    print(f"  ext_authz input (OPA-Envoy's attributes by path) over bare bundle evaluation: median {ext:+.0%}")
    own = median["opa adapter, uncached"] / median["bundle, our converter"] - 1
    print(f"  the adapter's own work (input from the instance, decision to result) over the same evaluation"
          f" with its input converter: {own:+.0%}")
    print(f"  cached speed-up over bare bundle evaluation: {base / median['opa adapter, cached']:.0f}x "
          f"(target >= 20x); over bare query(): {median['bare regopy, query()'] / median['opa adapter, cached']:.0f}x")
    checks, compiles = reload_samples
    print(f"  a policy file change: the next check {summarize_us(checks)} (it never compiles);"
          f" the compile, in a worker thread off the request path, {summarize_us(compiles)}")


async def _after_a_change(handler: Any, instance: Any, policy: Path, rounds: int) -> tuple[list[float], list[float]]:
    """Per round: change the policy file, time the next check, then the background recompile."""
    import os

    checks: list[float] = []
    compiles: list[float] = []
    perf = time.perf_counter
    for i in range(rounds):
        policy.write_text(POLICY + f"\n# change {i}\n")
        stat = policy.stat()
        os.utime(policy, ns=(stat.st_atime_ns, stat.st_mtime_ns + (i + 1) * 10_000_000))
        start = perf()
        assert handler.check(instance).status.ok
        checks.append(perf() - start)
        start = perf()
        assert await handler.reload_if_changed()
        compiles.append(perf() - start)
    return checks, compiles
