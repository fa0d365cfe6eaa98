"""Small statistics and table printing shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` by nearest rank."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))
    return ordered[index]


def summarize_us(samples: Sequence[float]) -> str:
    """``median X µs, p99 Y µs`` for samples in seconds."""
    return f"median {statistics.median(samples) * 1e6:8.2f} µs   p99 {percentile(samples, 0.99) * 1e6:8.2f} µs"


def time_calls(fn: Callable[[], object], count: int, max_seconds: float = 10.0, batch: int = 50) -> list[float]:
    """Per-call seconds of ``fn``, measured in batches (timer overhead amortized), bounded in count and time."""
    samples: list[float] = []
    deadline = time.monotonic() + max_seconds
    done = 0
    perf = time.perf_counter
    while done < count and time.monotonic() < deadline:
        start = perf()
        for _ in range(batch):
            fn()
        samples.append((perf() - start) / batch)
        done += batch
    return samples


def header(title: str, what: str) -> None:
    """Print a benchmark's title and a sentence on what it measures."""
    print(f"\n=== {title} ===")
    print(what)
