"""The root of the exception tree, below every layer so each layer's errors can join it.

:class:`PolicyError` is defined here (and re-exported as :class:`policy.PolicyError`)
because the vocabulary and expression layers sit below the SDK and their errors derive
from it too; see :mod:`policy.sdk.errors` for the whole tree.
"""

from __future__ import annotations


class PolicyError(Exception):
    """Base class of the errors this package raises on purpose."""


__all__ = ["PolicyError"]
