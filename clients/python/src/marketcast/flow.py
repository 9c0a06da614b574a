"""Flow control: credits sized by how fast the application handles messages.

The protocol (docs/PROTOCOL.md, "Flow control"): ``{"type":"credit","n":N}``
grants the server N more pushed messages. While a connection has no credit
the server keeps market data conflated (the newest per subscription) and
reliable messages queued in order, so a slow application gets fresh prices
instead of a backlog. This module decides how much to grant; the client
sends it.
"""

from __future__ import annotations

#: The first grant on every connection.
INITIAL_CREDIT = 32
#: Bounds of every later grant.
MIN_CREDIT = 8
MAX_CREDIT = 1000
#: A grant covers about this much of the application's handling time.
TARGET_SECONDS = 0.25
#: Weight of the newest measurement in the moving average.
_ALPHA = 0.2


class CreditWindow:
    """How many pushed messages to grant, and when.

    Grant :data:`INITIAL_CREDIT` when a connection opens. Then keep the
    credit outstanding (granted on this connection and not yet handled: the
    handler returned, the consumer took it) near a window of what the
    application gets through in about :data:`TARGET_SECONDS` at its measured
    handling time, at least :data:`MIN_CREDIT` and at most
    :data:`MAX_CREDIT`: whenever it falls to half the window or less, grant
    the difference back up to the window. (Granting a whole window each time
    half of the last grant was handled would grow the outstanding credit by
    half a window a round, without bound, and the backlog with it.) The
    measured time outlives connections: it is the application's speed, not
    the server's.
    """

    def __init__(self) -> None:
        self.seconds_per_message: float | None = None
        self.granted = 0
        self.handled = 0

    def open(self) -> int:
        """A new connection: the first grant."""
        self.granted = INITIAL_CREDIT
        self.handled = 0
        return INITIAL_CREDIT

    def size(self) -> int:
        """The window for the measured handling time."""
        t = self.seconds_per_message
        if not t or t <= 0:
            return MAX_CREDIT
        return max(MIN_CREDIT, min(MAX_CREDIT, int(TARGET_SECONDS / t)))

    def measure(self, seconds: float) -> None:
        """Records how long the application took over one message."""
        seconds = max(0.0, seconds)
        t = self.seconds_per_message
        self.seconds_per_message = seconds if t is None else t + _ALPHA * (seconds - t)

    def handled_one(self) -> int:
        """Counts one handled message; returns the credit to grant now, or 0."""
        self.handled += 1
        if not self.granted:
            return 0
        window = self.size()
        outstanding = self.granted - self.handled
        if outstanding * 2 <= window:
            n = window - outstanding
            self.granted += n
            return n
        return 0
