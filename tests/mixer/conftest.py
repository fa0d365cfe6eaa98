"""Fixtures for Mixer fidelity tests: load Mixer documents with the built-in adapters on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from policy.config import load_config, parse_config
from policy.runtime.dispatch import Dispatcher
from policy.runtime.plugins import build_plugin_host
from policy.testing import FakeClock

FIXTURES = Path(__file__).parent / "fixtures"


def host_with(clock: FakeClock | None = None) -> Any:
    """A plugin host with the built-in adapters; handlers read ``clock`` when given."""
    host = build_plugin_host(autoload=False)
    if clock is not None:
        host.build_extras["clock"] = clock.clock
    return host


@pytest.fixture
def mixer_clock() -> FakeClock:
    """The fake clock handlers built by ``load_mixer`` read."""
    return FakeClock()


@pytest.fixture
async def load_mixer(tmp_path: Path, mixer_clock: FakeClock) -> AsyncIterator[Callable[..., Dispatcher]]:
    """``load_mixer(text_or_path)`` → a Dispatcher over the loaded snapshot (closed at the end)."""
    snapshots = []

    async def _load(source: str | Path) -> Dispatcher:
        path = source if isinstance(source, Path) else tmp_path / "policy.yaml"
        if not isinstance(source, Path):
            path.write_text(source)
        snapshot = load_config(path, host_with(mixer_clock))
        await snapshot.start()
        snapshots.append(snapshot)
        return Dispatcher(snapshot)

    yield _load
    for snapshot in snapshots:
        await snapshot.close()


@pytest.fixture
def parse_mixer(tmp_path: Path) -> Callable[[str], Any]:
    """``parse_mixer(text)`` → the validated config model (raises ConfigError as ``policy validate`` does)."""
    def _parse(text: str) -> Any:
        path = tmp_path / "policy.yaml"
        path.write_text(text)
        return parse_config(path, host_with())
    return _parse
