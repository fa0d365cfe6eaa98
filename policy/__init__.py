"""sidecar-policy: a sidecar-local policy and authorization service with Mixer's adapter model.

Adapter authors import everything they need from here::

    from policy import Adapter, Handler, CheckResult, hookimpl, param
"""

from __future__ import annotations

from policy.sdk import *  # noqa: F401,F403  (the SDK is the package's public surface)
from policy.sdk import __all__ as _sdk_all

__version__ = "0.1.0"
__all__ = [*_sdk_all, "__version__"]
