"""Reports: what reporting costs a check, when every check's decision is reported.

"Off" serves the core config (an IP whitelist and two header/path rules) and
reports nothing. "On, 1 instance" adds ``--decision-log`` and one report rule
sending each decision to a prometheus counter. "On, 4 instances" sends each
decision to three handlers: prometheus (a counter and a histogram on the metrics
endpoint), statsd (UDP to a socket this benchmark drains) and stdio (a JSON line
per decision in a file). All run as ``policy serve`` processes driven by the same
h2load load, running at once and loaded in alternating rounds; the ratios of their
CPU per check are the cost.
The in-process part times the pieces without gRPC around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks._grpc_load import LoadResult, run_load
from benchmarks._procs import cpu_seconds, free_port, policy_server
from benchmarks._requests import typical_attributes
from benchmarks._stats import header, summarize_us
from benchmarks._summary import record

CORE = (Path(__file__).parent / "configs" / "core" / "policy.yaml").read_text()

REPORTS = """
  - name: prom
    adapter: prometheus
    params:
      metrics:
        - {{instanceName: decisions, kind: COUNTER, name: decisions_total, labelNames: [code, method]}}
        - {{instanceName: sizes, kind: DISTRIBUTION, name: request_bytes, labelNames: [method],
           buckets: {{exponentialBuckets: {{numFiniteBuckets: 8, growthFactor: 4, scale: 16}}}}}}
  - name: stats
    adapter: statsd
    params:
      address: "127.0.0.1:{statsd_port}"
      prefix: policy
      metrics: {{decisions: {{type: COUNTER, nameTemplate: "decisions.{{{{.code}}}}"}}}}
  - name: decision-file
    adapter: stdio
    params: {{logStream: FILE, outputPath: "{log}"}}
"""

REPORT_INSTANCES = """
  - name: decisions
    template: metric
    params:
      value: "1"
      dimensions: {code: check.error_code, method: request.method | ""}
  - name: sizes
    template: metric
    params:
      value: request.size | 0
      dimensions: {method: request.method | ""}
  - name: decision-line
    template: logentry
    params:
      severity: 'conditional(check.error_code == 0, "info", "warning")'
      variables:
        id: check.decision_id
        code: check.error_code
        rules: check.rules
        path: request.path | ""
        user: request.headers["x-user"] | ""
"""

ALL_ACTIONS = ("{handler: prom, instances: [decisions, sizes]}", "{handler: stats, instances: [decisions]}",
               "{handler: decision-file, instances: [decision-line]}")
ONE_ACTION = ("{handler: prom, instances: [decisions]}",)
_WARM_UP = 500  # checks each server answers before it is measured


def _config_with_reports(statsd_port: int, log: Path, actions: tuple[str, ...] = ALL_ACTIONS) -> str:
    rules = ('\n  - name: decision-log\n    match: context.reporter.kind == "decision"\n    actions:\n'
             + "".join(f"      - {action}\n" for action in actions))
    text = CORE.replace("instances:\n", "instances:" + REPORT_INSTANCES, 1)
    text = text.replace("rules:\n", "rules:" + rules, 1)
    return text.replace("handlers:\n", "handlers:" + REPORTS.format(statsd_port=statsd_port, log=log), 1)


class _UdpSink:
    """A UDP socket on loopback, drained by a thread, counting lines."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self.lines += self.sock.recv(65536).count(b"\n") + 1
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _report_counts(metrics: str) -> tuple[float, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as response:
        text = response.read().decode()
    delivered = dropped = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "policy_report_delivered_total":
                delivered += sample.value
            elif sample.name == "policy_report_dropped_total":
                dropped += sample.value
    return delivered, dropped


def bench_in_process(quick: bool) -> None:
    """µs per cached in-process check: on the request path alone, and with report delivery included."""
    from policy.attributes import AttributeBag
    from policy.runtime.service import PolicyService

    header("reports: in-process",
           "Cached checks of the same request (new request.id each time), awaited in a loop. Request path: "
           "Dispatcher.check (no telemetry), PolicyService.check (counted and timed), and with the decision log "
           "on for 4 report instances: the check copies its attributes and defers the record; building it and "
           "its instances runs later in batches (between rounds here, untimed). With delivery: wall time of 500 "
           "checks plus building, queueing and delivering their reports, per check: the figure to compare.")

    async def run() -> None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-reports-"))
        sink = _UdpSink()
        configs = {}
        for label, actions in (("1", ONE_ACTION), ("4", ALL_ACTIONS)):
            configs[label] = tmp / label
            configs[label].mkdir()
            (configs[label] / "policy.yaml").write_text(_config_with_reports(sink.port, tmp / "decisions.jsonl",
                                                                              actions))
        count = 3_000 if quick else 30_000
        bags = [AttributeBag(typical_attributes(f"req-{i}")) for i in range(1000)]
        perf = time.perf_counter
        path: dict[str, list[float]] = {"dispatcher": [], "service": [], "service + decision log (4)": []}
        for label in path:
            service = PolicyService(configs["4"], watch_interval=0, decision_log=label.endswith("(4)"))
            await service.start()
            check = service.dispatcher.check if label == "dispatcher" else service.check
            await check(bags[0])
            deadline = time.monotonic() + 20
            for start in range(0, count, 500):
                for i in range(start, start + 500):
                    began = perf()
                    await check(bags[i % 1000])
                    path[label].append(perf() - began)
                await service.reports.drain(timeout=30)
                if time.monotonic() > deadline:
                    break
            await service.stop()
        base = statistics.median(path["dispatcher"])
        for label, samples in path.items():
            print(f"  request path, {label:<27} {summarize_us(samples)}   x{statistics.median(samples) / base:.2f}")
        delivered: dict[str, list[float]] = {"reports off": [], "1 report per check": [], "4 reports per check": []}
        for label in delivered:
            on = not label.endswith("off")
            service = PolicyService(configs["1" if label.startswith("1") else "4"], watch_interval=0, decision_log=on)
            await service.start()
            await service.check(bags[0])
            deadline = time.monotonic() + 20
            for _ in range(max(1, count // 500)):
                began = perf()
                for i in range(500):
                    await service.check(bags[i])
                    if i % 32 == 31:
                        await asyncio.sleep(0)  # let the report workers run, as a server's loop would
                await service.reports.drain(timeout=30)
                delivered[label].append((perf() - began) / 500)
                if time.monotonic() > deadline:
                    break
            await service.stop()
        base = statistics.median(delivered["reports off"])
        for label, samples in delivered.items():
            print(f"  with delivery, {label:<26} {summarize_us(samples)}   x{statistics.median(samples) / base:.2f}"
                  f"   (+{(statistics.median(samples) - base) * 1e6:.1f} µs per check)")
        sink.close()

    asyncio.run(run())


def _serve(stack: contextlib.ExitStack, config: Path, decision_log: bool, per_check: int,
           request: bytes) -> tuple[str, str, int]:
    """Start ``policy serve`` on ``config`` in ``stack`` and warm it up (500 checks, their reports delivered);
    returns its address, metrics address and pid."""
    address, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    options = ["--metrics-listen", metrics, *(["--decision-log"] if decision_log else [])]
    proc = stack.enter_context(policy_server(config, [address], *options, ready=(metrics,)))
    run_load(address, "/policy.v1.Policy/Check", request, requests=_WARM_UP, concurrency=16)
    deadline = time.monotonic() + 30
    while per_check and sum(_report_counts(metrics)) < per_check * _WARM_UP and time.monotonic() < deadline:
        time.sleep(0.05)
    return address, metrics, proc.pid


def _measure(server: tuple[str, str, int], request: bytes, count: int, expected: int
             ) -> tuple[LoadResult, float, float, float]:
    """Load a running server; returns the load result, its CPU µs per check until ``expected`` reports (all
    it was sent so far) were delivered or dropped, and the reports delivered and dropped."""
    address, metrics, pid = server
    cpu = cpu_seconds(pid)
    result = run_load(address, "/policy.v1.Policy/Check", request, requests=count, concurrency=64)
    deadline = time.monotonic() + 30
    delivered, dropped = _report_counts(metrics)
    while delivered + dropped < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        delivered, dropped = _report_counts(metrics)
    cpu = cpu_seconds(pid) - cpu
    return result, cpu / max(1, result.requests) * 1e6, delivered, dropped


def bench_grpc(quick: bool) -> None:
    """Native Check throughput and server CPU per check with reports off, on with 1 instance, on with 4."""
    from policy.servers.native_codec import attributes_to_proto
    from policy.v1 import policy_pb2

    header("reports: native gRPC Check, reports off vs on",
           "policy serve on the core config. 'on, 1': --decision-log and a rule sending every decision to a "
           "prometheus counter. 'on, 4': every decision to prometheus (counter + histogram), statsd (UDP) and stdio "
           "(a JSON line in a file). h2load, 64 requests in flight on one connection, the same cached request; "
           "the four servers run at once and take turns, round after round, each round starting with the next "
           "one. Besides h2load's throughput, the server's own CPU time per check (all threads, /proc, until every "
           "report of the run was delivered) is shown: on a shared machine it is the steadier measure of what "
           "reporting costs.")
    attributes = typical_attributes()
    attributes["source.ip"] = ipaddress.ip_address("10.1.2.3")
    request = policy_pb2.CheckRequest(attributes=attributes_to_proto(attributes)).SerializeToString()
    count = 5_000 if quick else 30_000
    rounds = 1 if quick else 5
    tmp = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    sink = _UdpSink()
    log = tmp / "decisions.jsonl"
    variants = {"reports off": (CORE, False, 0),
                "decision log, no report rule": (CORE, True, 0),
                "reports on, 1 per check": (_config_with_reports(sink.port, log, ONE_ACTION), True, 1),
                "reports on, 4 per check": (_config_with_reports(sink.port, log, ALL_ACTIONS), True, 4)}
    results: dict[str, list[tuple[LoadResult, float]]] = {name: [] for name in variants}
    try:
        with contextlib.ExitStack() as stack:
            servers = {}
            for index, (name, (text, decision_log, per_check)) in enumerate(variants.items()):
                (tmp / str(index)).mkdir()
                (tmp / str(index) / "policy.yaml").write_text(text)
                servers[name] = _serve(stack, tmp / str(index), decision_log, per_check, request)
            sent = dict.fromkeys(variants, _WARM_UP)
            names = list(variants)
            for round_ in range(rounds):
                # Each round starts with a different server, so none always runs first.
                for name in names[round_ % 4:] + names[:round_ % 4]:
                    per_check = variants[name][2]
                    sent[name] += count
                    result, cpu_us, delivered, dropped = _measure(servers[name], request, count,
                                                                  per_check * sent[name])
                    results[name].append((result, cpu_us))
                    extra = (f", reports delivered {delivered:.0f} of {per_check * sent[name]},"
                             f" dropped {dropped:.0f}") if per_check else ""
                    print(f"  {result.line(f'round {round_ + 1}: {name}')}\n      server CPU {cpu_us:.1f} µs per"
                          f" check{extra}")
    finally:
        sink.close()
    written = log.read_text().count("\n") if log.exists() else 0
    print(f"  decision lines written by stdio: {written}; statsd lines received: {sink.lines}")
    off = results["reports off"]
    for name, runs in results.items():
        rps = statistics.median(r.rps for r, _ in runs)
        p50 = statistics.median(r.p50_ms for r, _ in runs)
        p99 = statistics.median(r.p99_ms for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"  {name:<24} median {rps:6.0f} req/s, p50 {p50:.3f} ms, p99 {p99:.3f} ms, CPU {cpu:.1f} µs/check")
        if runs is not off:
            throughput = [b.rps / a.rps for (a, _), (b, _) in zip(off, runs)]
            cpu_ratio = [b / a for (_, a), (_, b) in zip(off, runs)]
            print(f"      throughput on/off per round {', '.join(f'{r:.2f}' for r in throughput)}"
                  f" (median {statistics.median(throughput):.2f}); CPU per check on/off per round"
                  f" {', '.join(f'{r:.2f}' for r in cpu_ratio)} (median {statistics.median(cpu_ratio):.2f})")
    print("  (targets, CPU per check on/off: 1 instance <= 1.10, 4 instances <= 1.30, decision log <= 1.15)")
    limits = {"reports on, 1 per check": ("1 report instance per check", 1.10),
              "reports on, 4 per check": ("4 report instances per check", 1.30),
              "decision log, no report rule": ("the decision log, no report rule (record skipped)", 1.15)}
    for name, (goal, limit) in limits.items():
        ratios = sorted(b / a for (_, a), (_, b) in zip(off, results[name]))
        ratio = statistics.median(ratios)
        record(f"reports: {goal}: CPU/check <= {limit:.2f}x off [native]",
               f"{ratio:.2f}x (rounds {ratios[0]:.2f}-{ratios[-1]:.2f})", ratio <= limit)


def run(quick: bool = False) -> None:
    """Run the report benchmarks."""
    bench_in_process(quick)
    bench_grpc(quick)
