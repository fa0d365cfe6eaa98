"""The scripted adapters the runtime tests configure: the shared ones of :mod:`tests.scripted`.

Kept as the module these tests pass to ``extra_plugins`` (and import handler classes from).
"""

from __future__ import annotations

from tests.scripted import (  # noqa: F401  (re-exported for the tests; the hook makes this module a plugin)
    AsyncScript,
    AsyncScriptHandler,
    Counter,
    CounterHandler,
    CounterParams,
    Script,
    ScriptHandler,
    ScriptParams,
    policy_register_adapters,
)
