"""Fixtures of the report tests: real receivers on loopback, and a way to send reports over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from tests.reports._receivers import ForwardReceiver, StatsdListener, start_statsd_listener


@pytest.fixture
async def statsd_listener() -> AsyncIterator[StatsdListener]:
    """A UDP socket on 127.0.0.1 collecting statsd lines."""
    listener = await start_statsd_listener()
    yield listener
    listener.close()


@pytest.fixture
async def forward_receiver() -> AsyncIterator[ForwardReceiver]:
    """A fluentd forward-protocol server on 127.0.0.1."""
    receiver = await ForwardReceiver().start()
    yield receiver
    await receiver.close()


async def send_reports(running: Any, batches: Sequence[Sequence[Mapping[str, Any]]]) -> None:
    """Send each batch of attribute sets as one native ``Report`` over gRPC to ``running`` (a RunningServer)."""
    from policy.servers.native_codec import attributes_to_proto
    from policy.v1 import policy_pb2

    stub = running.native()
    for batch in batches:
        await stub.Report(policy_pb2.ReportRequest(attributes=[attributes_to_proto(a) for a in batch]), timeout=5)


def handler_of(running: Any, name: str) -> Any:
    """The handler called ``name`` (or ``name.<namespace>``) in ``running``'s config in force."""
    handlers = running.service.snapshot.handlers
    (entry,) = [e for key, e in handlers.items() if key == name or key.startswith(f"{name}.")]
    return entry.handler
