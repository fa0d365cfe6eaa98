"""The requests the benchmarks send (typed attributes), shared so every comparison uses the same one."""

from __future__ import annotations

import datetime as dt
import ipaddress


def typical_attributes(request_id: str = "req-1") -> dict:
    """A typical inbound HTTP request's attributes (15 of them)."""
    return {
        "source.ip": ipaddress.ip_address("10.1.2.3"),
        "source.principal": "spiffe://cluster.local/ns/shop/sa/frontend",
        "source.namespace": "shop",
        "destination.ip": ipaddress.ip_address("10.4.5.6"),
        "destination.port": 8080,
        "destination.namespace": "shop",
        "destination.service.host": "books.shop.svc.cluster.local",
        "request.method": "GET",
        "request.path": "/api/books/42",
        "request.host": "books.shop",
        "request.scheme": "http",
        "request.id": request_id,
        "request.time": dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc),
        "request.headers": {"x-user": "alice", "user-agent": "bench/1.0", "accept": "application/json"},
        "context.protocol": "http",
    }
