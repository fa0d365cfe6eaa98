"""Load a unary gRPC method with a fixed request and measure throughput and latency.

The load generator is ``h2load`` (nghttp2, a C HTTP/2 client) when installed: it
sends real gRPC frames (length-prefixed protobuf, ``te: trailers``) much faster
than a Python client could, so the server, not the client, is what is measured.
Without it, a grpc.aio client in a separate process is used, which saturates
sooner; the printed line says which client ran.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._stats import percentile


@dataclass
class LoadResult:
    """One load run's outcome."""

    client: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self, label: str) -> str:
        """A printable row."""
        return (f"{label:<34} {self.rps:9.0f} req/s   p50 {self.p50_ms:7.3f} ms   p99 {self.p99_ms:7.3f} ms"
                f"   ({self.requests} requests, {self.errors} errors, {self.client})")


def grpc_frame(message: bytes) -> bytes:
    """The gRPC length-prefixed frame of one uncompressed message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load_available() -> bool:
    """True when h2load is on PATH."""
    return shutil.which("h2load") is not None


def run_h2load(address: str, method_path: str, request: bytes, *, requests: int, concurrency: int,
               rate: int | None = None, max_seconds: float = 30.0, connections: int = 1) -> LoadResult:
    """Drive ``method_path`` on a TCP or ``unix:`` address with h2load; per-request times from its log.

    ``concurrency`` is the streams in flight per connection (``connections`` of them) without ``rate``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp, "body")
        body.write_bytes(grpc_frame(request))
        log = Path(tmp, "log")
        cmd = ["h2load", "-n", str(requests), "-d", str(body), "--log-file", str(log),
               "-H", "content-type: application/grpc", "-H", "te: trailers"]
        if rate:
            # A fixed request rate: `rate` new connections per second, each sending one request.
            cmd += ["-c", str(max(1, min(concurrency, requests))), "--rate", str(rate), "-m", "1"]
        else:
            cmd += ["-c", str(connections), "-m", str(concurrency)]
        if address.startswith("unix:"):
            cmd += ["--base-uri", address, f"http://localhost{method_path}"]
        else:
            cmd.append(f"http://{address}{method_path}")
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max_seconds + 30)
        elapsed = time.monotonic() - start
        if proc.returncode != 0:
            raise RuntimeError(f"h2load failed: {proc.stderr.strip() or proc.stdout[-500:]}")
        durations, errors = [], 0
        starts, ends = [], []
        for line in log.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            started_us, status, took_us = int(parts[0]), int(parts[1]), int(parts[2])
            if status != 200:
                errors += 1
            durations.append(took_us / 1000.0)
            starts.append(started_us)
            ends.append(started_us + took_us)
        span = (max(ends) - min(starts)) / 1e6 if starts else elapsed
        return LoadResult("h2load", len(durations), span, statistics.median(durations) if durations else 0.0,
                          percentile(durations, 0.99) if durations else 0.0, errors)


_PY_CLIENT = r'''
import asyncio, sys, time, grpc
address, method, count, concurrency, max_seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
payload = sys.stdin.buffer.read()
async def main():
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        await call(payload)
        lat, errors, left = [], 0, [count]
        deadline = time.monotonic() + max_seconds
        async def worker():
            nonlocal errors
            while left[0] > 0 and time.monotonic() < deadline:
                left[0] -= 1
                t = time.perf_counter()
                try:
                    await call(payload)
                except grpc.RpcError:
                    errors += 1
                lat.append(time.perf_counter() - t)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        span = time.perf_counter() - t0
        print(len(lat), span, errors, *sorted(lat))
asyncio.run(main())
'''


def run_python_client(address: str, method_path: str, request: bytes, *, requests: int, concurrency: int,
                      max_seconds: float = 30.0) -> LoadResult:
    """Drive the method with a grpc.aio client in a child process."""
    proc = subprocess.run([sys.executable, "-c", _PY_CLIENT, address, method_path, str(requests),
                           str(concurrency), str(max_seconds)], input=request, capture_output=True,
                          timeout=max_seconds + 30, env={**os.environ})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-2000:])
    fields = proc.stdout.split()
    count, span, errors = int(fields[0]), float(fields[1]), int(fields[2])
    lat = [float(x) * 1000 for x in fields[3:]]
    return LoadResult("python grpc.aio client", count, span, statistics.median(lat), percentile(lat, 0.99), errors)


def run_load(address: str, method_path: str, request: bytes, *, requests: int, concurrency: int,
             rate: int | None = None, max_seconds: float = 30.0) -> LoadResult:
    """h2load when available, else the Python client."""
    if h2load_available():
        return run_h2load(address, method_path, request, requests=requests, concurrency=concurrency,
                          rate=rate, max_seconds=max_seconds)
    return run_python_client(address, method_path, request, requests=requests, concurrency=concurrency,
                             max_seconds=max_seconds)
