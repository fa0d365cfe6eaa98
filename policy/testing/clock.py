"""A fake clock for adapter tests: time moves only when the test says so."""

from __future__ import annotations

from policy.sdk import Clock


class FakeClock:
    """Wall and monotonic time that move together, only on :meth:`advance`.

    Hand ``fake.clock`` to ``BuildContext(clock=...)`` so an adapter's windows,
    TTLs and refreshes follow the test instead of the machine.
    """

    def __init__(self, now: float = 1_700_000_000.0, monotonic: float = 1000.0) -> None:
        self.wall = now
        self.mono = monotonic

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        self.wall += seconds
        self.mono += seconds

    @property
    def clock(self) -> Clock:
        """The SDK :class:`~policy.Clock` reading this fake."""
        return Clock(now=lambda: self.wall, monotonic=lambda: self.mono)
