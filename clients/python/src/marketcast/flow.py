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

    Grant :data:`INITIAL_CREDIT` when a connection opens; then, whenever
    half of the last grant has been handled (the handler returned, the
    consumer took it), grant again what the application gets through in
    about :data:`TARGET_SECONDS` at its measured handling time, at least
    :data:`MIN_CREDIT` and at most :data:`MAX_CREDIT`. The measured time
    outlives connections: it is the application's speed, not the server's.
    """

    def __init__(self) -> None:
        self.seconds_per_message: float | None = None
        self.last_grant = 0
        self.handled = 0

    def open(self) -> int:
        """A new connection: the first grant."""
        self.last_grant = INITIAL_CREDIT
        self.handled = 0
        return INITIAL_CREDIT

    def size(self) -> int:
        """The next grant for the measured handling time."""
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
        if self.last_grant and self.handled * 2 >= self.last_grant:
            n = self.size()
            self.last_grant = n
            self.handled = 0
            return n
        return 0
