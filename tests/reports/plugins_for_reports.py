"""Report adapters that misbehave on purpose, registered as an ordinary plugin module (tests only).

``blocking``, ``hanging`` and ``raising`` are the shared scripted ones (:mod:`tests.scripted`);
``slowfile``  a sync ``report`` that writes one line per instance to a file, slowly
              (loaded by a ``policy serve`` subprocess through an entry point).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy import Adapter, AdapterRegistrar, BuildContext, Handler, hookimpl, param
from tests.scripted import (  # noqa: F401  (re-exported for the tests)
    HangingHandler,
    RaisingHandler,
    RecorderHandler,
    register_all,
)


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


class SlowFile(Adapter[SlowFileParams]):
    name = "slowfile"
    description = "Appends log entries to a file, slowly (tests only)."
    templates = ("logentry",)
    Params = SlowFileParams

    @classmethod
    def build(cls, params: SlowFileParams, context: BuildContext) -> Handler:
        return SlowFileHandler(params, context.config_dir)


@hookimpl
def policy_register_adapters(registry: AdapterRegistrar) -> None:
    register_all(registry)
    registry.add(SlowFile)
