"""A test adapter whose build blocks until the test releases it: a stand-in for a slow compile."""

from __future__ import annotations

import threading
from typing import Any

from policy import Adapter, BuildContext, CheckResult, Handler, NoParams, hookimpl

#: Set by the adapter's build when it starts; the build then waits for ``RELEASE``.
ENTERED = threading.Event()
RELEASE = threading.Event()


class GateHandler(Handler):
    """Allows every check."""

    def check(self, instance: Any) -> CheckResult:
        """Allow, cacheable for a minute."""
        return CheckResult.allow(60.0, 1000)


class Gate(Adapter):
    """Builds a handler only when the test says so (tests only)."""

    name = "gate"
    description = "Blocks in build() until released (tests only)."
    templates = ("checknothing",)
    Params = NoParams

    @classmethod
    def build(cls, params: Any, context: BuildContext) -> Handler:
        """Signal ``ENTERED`` and wait (bounded) for ``RELEASE``."""
        ENTERED.set()
        if not RELEASE.wait(timeout=20):
            raise TimeoutError("the test never released the gate")
        return GateHandler()


@hookimpl
def policy_register_adapters(registry: Any) -> None:
    """Register the gate adapter."""
    registry.add(Gate)
