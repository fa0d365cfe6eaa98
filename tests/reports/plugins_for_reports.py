"""Report adapters that misbehave on purpose, registered as an ordinary plugin module (tests only).

``blocking``  a sync ``report`` that blocks its thread until the test releases it.
``hanging``   an async ``report`` that never returns (the pipeline's timeout cancels it).
``raising``   a ``report`` that raises.
``slowfile``  a sync ``report`` that writes one line per instance to a file, slowly
              (loaded by a ``policy serve`` subprocess through an entry point).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy import Adapter, BuildContext, Handler, NoParams, hookimpl, param


class BlockingHandler(Handler):
    """Blocks in ``report`` until ``release`` is set; counts what it finally takes."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.received = 0

    def report(self, instances: Sequence[Any]) -> None:
        self.entered.set()
        if not self.release.wait(timeout=60):
            raise TimeoutError("the test never released the blocking adapter")
        self.received += len(instances)

    async def close(self) -> None:
        self.release.set()


class HangingHandler(Handler):
    """An async report that never finishes on its own."""

    def __init__(self) -> None:
        self.calls = 0

    async def report(self, instances: Sequence[Any]) -> None:
        self.calls += 1
        await asyncio.Event().wait()


class RaisingHandler(Handler):
    """A report that always raises."""

    def __init__(self) -> None:
        self.calls = 0

    def report(self, instances: Sequence[Any]) -> None:
        self.calls += 1
        raise RuntimeError("the backend is on fire")


@dataclass(frozen=True)
class SlowFileParams:
    path: str = param(doc="File to append lines to.")
    delay_ms: float = param(2.0, doc="Milliseconds spent per instance.")


class SlowFileHandler(Handler):
    """Writes each log entry's variables as a JSON line, taking ``delayMs`` per instance."""

    def __init__(self, params: SlowFileParams, directory: Path) -> None:
        path = Path(params.path)
        self._file = (path if path.is_absolute() else directory / path).open("a", encoding="utf-8")
        self._delay = params.delay_ms / 1000

    def report(self, instances: Sequence[Any]) -> None:
        for instance in instances:
            time.sleep(self._delay)
            self._file.write(json.dumps(dict(instance.variables), default=str) + "\n")
        self._file.flush()

    async def close(self) -> None:
        self._file.close()


def _adapter(adapter_name: str, handler: type[Handler]) -> type[Adapter]:
    class _Adapter(Adapter):
        name = adapter_name
        description = f"{handler.__doc__} (tests only)"
        templates = ("logentry", "metric", "reportnothing")
        Params = NoParams

        @classmethod
        def build(cls, params: Any, context: BuildContext) -> Handler:
            return handler()

    _Adapter.__name__ = f"{handler.__name__}Adapter"
    return _Adapter


class SlowFile(Adapter):
    name = "slowfile"
    description = "Appends log entries to a file, slowly (tests only)."
    templates = ("logentry",)
    Params = SlowFileParams

    @classmethod
    def build(cls, params: SlowFileParams, context: BuildContext) -> Handler:
        return SlowFileHandler(params, context.config_dir)


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    registry.add(_adapter("blocking", BlockingHandler))
    registry.add(_adapter("hanging", HangingHandler))
    registry.add(_adapter("raising", RaisingHandler))
    registry.add(SlowFile)
