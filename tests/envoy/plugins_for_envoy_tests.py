"""The scripted adapters the Envoy API tests configure: the shared ones of :mod:`tests.scripted`.

``recorder`` keeps the report instances it is given (and can be held back to play a
slow backend); ``shaper`` answers checks with exactly the status, HTTP status, body,
headers and metadata its params say, so every response field can be driven.
"""

from __future__ import annotations

from tests.scripted import (  # noqa: F401  (re-exported for the tests; the hook makes this module a plugin)
    Recorder,
    RecorderHandler,
    RecorderParams,
    Shaper,
    ShaperHandler,
    ShaperParams,
    policy_register_adapters,
)
