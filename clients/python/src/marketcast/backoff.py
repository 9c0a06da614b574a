"""Reconnect delays."""

from __future__ import annotations

import random as _random
from typing import Callable


def backoff_delay(attempt: int, *, initial_delay: float = 0.5, max_delay: float = 30.0, factor: float = 2.0,
                  random: Callable[[], float] = _random.random) -> float:
    """The delay before reconnect attempt ``attempt`` (0-based), in seconds:
    exponential growth capped at ``max_delay``, with "equal jitter" (half
    fixed, half random) so clients that lost the same server do not come
    back in lockstep. The same rule as the JavaScript client's."""
    base = min(max_delay, initial_delay * factor ** attempt)
    return base / 2 + random() * (base / 2)
