"""``policy serve --workers N``: throughput of 2 workers vs 1 on cached ext_authz checks, and CPU per request.

Both servers run at once on their own TCP port (``--workers 1`` and ``--workers 2``);
rounds alternate between them. The load is h2load with 8 HTTP/2 connections of 8
streams each (64 in flight): SO_REUSEPORT spreads connections, not requests, across
workers, as it spreads an Envoy's per-worker connections. On this machine the load
generator shares the cores with the servers, so 2 workers cannot double throughput;
the goal is >= 1.5x with server CPU per request (all workers summed) within 10% of one
worker's. It prints the ceiling the cores one worker and its load leave free put on that,
and where each request's CPU goes: the event loops (main threads) against grpc's own
threads, with the involuntary context switches that tell the cores are oversubscribed.
"""

from __future__ import annotations

import os
import resource
import statistics
from pathlib import Path

from benchmarks._grpc_load import h2load_available, run_h2load
from benchmarks._procs import cpu_seconds, free_port, policy_server, process_tree
from benchmarks._stats import header
from benchmarks._summary import record
from benchmarks.bench_envoy import CORE, METHOD, typical_request


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its child processes (the workers)."""
    return sum(map(cpu_seconds, process_tree(pid)))


def _threads(pid: int) -> dict[str, list[float]]:
    """Per kind of thread of ``pid``'s tree, summed over the supervisor and its workers: [CPU seconds,
    involuntary context switches] of the main threads (the event loops) and of the others (grpc.aio's
    poller, grpc's event engine, report threads)."""
    kinds: dict[str, list[float]] = {"loop": [0.0, 0.0], "other": [0.0, 0.0]}
    for process in process_tree(pid):
        for task in Path(f"/proc/{process}/task").iterdir():
            try:
                cpu, status = cpu_seconds(process, int(task.name)), (task / "status").read_text()
            except FileNotFoundError:  # a thread that just ended
                continue
            kind = kinds["loop" if task.name == str(process) else "other"]
            kind[0] += cpu
            kind[1] += int(status.split("nonvoluntary_ctxt_switches:", 1)[1].split()[0])
    return kinds


def _client_cpu() -> float:
    """CPU seconds of this process's finished children (each h2load run, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(quick: bool = False) -> None:
    """Run the workers benchmark."""
    rounds, count = (3, 6_000) if quick else (7, 20_000)
    header("serve --workers", f"cached ext_authz checks on TCP, 8 connections x 8 streams, {rounds} alternating "
           "rounds; CPU is the supervisor's and its workers' together.")
    if not h2load_available():
        print("  skipped: needs h2load (8 connections); the Python client would be the bottleneck")
        record("2 workers >= 1.5x one worker's throughput", "not run (no h2load)", None)
        return
    request = typical_request()
    servers = {}
    stack = []
    try:
        for workers in (1, 2):
            address = f"127.0.0.1:{free_port()}"
            manager = policy_server(CORE, [address], "--workers", str(workers))
            proc = manager.__enter__()
            stack.append(manager)
            servers[workers] = (address, proc)
        rps: dict[int, list[float]] = {1: [], 2: []}
        cpu: dict[int, list[float]] = {1: [], 2: []}
        busy: dict[int, list[float]] = {1: [], 2: []}  # cores the servers kept busy
        # Per request: CPU µs of the event loops, of the other threads, involuntary context switches.
        split: dict[int, list[tuple[float, float, float]]] = {1: [], 2: []}
        client: dict[int, list[float]] = {1: [], 2: []}  # cores h2load kept busy
        for address, _ in servers.values():  # warm up every worker (and its cache)
            run_h2load(address, METHOD, request, requests=4000, concurrency=8, connections=8)
        for round_ in range(rounds):
            for workers in (1, 2) if round_ % 2 == 0 else (2, 1):  # neither always runs first
                address, proc = servers[workers]
                before, client_before, threads_before = _tree_cpu(proc.pid), _client_cpu(), _threads(proc.pid)
                result = run_h2load(address, METHOD, request, requests=count, concurrency=8, connections=8)
                used = _tree_cpu(proc.pid) - before
                threads, per = _threads(proc.pid), 1 / max(1, result.requests)
                split[workers].append(((threads["loop"][0] - threads_before["loop"][0]) * per * 1e6,
                                       (threads["other"][0] - threads_before["other"][0]) * per * 1e6,
                                       (threads["loop"][1] + threads["other"][1] - threads_before["loop"][1]
                                        - threads_before["other"][1]) * per))
                cpu[workers].append(used / max(1, result.requests) * 1e6)
                rps[workers].append(result.rps)
                busy[workers].append(used / result.seconds)
                client[workers].append((_client_cpu() - client_before) / result.seconds)
    finally:
        for manager in reversed(stack):
            manager.__exit__(None, None, None)
    for workers in (1, 2):
        print(f"  --workers {workers}: {statistics.median(rps[workers]):7.0f} req/s   CPU"
              f" {statistics.median(cpu[workers]):.0f} µs/request   cores busy: server"
              f" {statistics.median(busy[workers]):.2f}, h2load {statistics.median(client[workers]):.2f} of"
              f" {os.cpu_count()}   (rounds {', '.join(f'{r:.0f}' for r in rps[workers])} req/s)")
        loop, others, switches = (statistics.median(part) for part in zip(*split[workers]))
        print(f"      per request: event loops {loop:.0f} µs CPU, other threads (grpc's poller and event engine)"
              f" {others:.0f} µs, {switches:.2f} involuntary context switches")
    # What 2 workers could reach here at one worker's CPU per request: the cores one worker and its
    # load leave free (grpc's poller thread keeps a worker above one core).
    one_server, one_client = statistics.median(busy[1]), statistics.median(client[1])
    ceiling = (os.cpu_count() or 1) / (one_server + one_client)
    print(f"  one worker and its load keep {one_server + one_client:.2f} of {os.cpu_count()} cores busy: at"
          f" one worker's CPU per request, 2 workers could reach at most {ceiling:.2f}x its throughput here")
    speedups = sorted(b / a for a, b in zip(rps[1], rps[2]))
    cpu_ratios = sorted(b / a for a, b in zip(cpu[1], cpu[2]))
    speedup, cpu_ratio = statistics.median(speedups), statistics.median(cpu_ratios)
    print(f"  2 workers / 1: throughput {speedup:.2f}x (rounds {', '.join(f'{r:.2f}' for r in speedups)}),"
          f" CPU per request {cpu_ratio:.2f}x (rounds {', '.join(f'{r:.2f}' for r in cpu_ratios)})")
    record("2 workers >= 1.5x one worker's throughput [tcp]",
           f"{speedup:.2f}x (rounds {speedups[0]:.2f}-{speedups[-1]:.2f})", speedup >= 1.5)
    record("2 workers: CPU/request within 10% of one worker's",
           f"{cpu_ratio:.2f}x (rounds {cpu_ratios[0]:.2f}-{cpu_ratios[-1]:.2f})", cpu_ratio <= 1.10)
