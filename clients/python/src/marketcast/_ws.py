"""The few calls the client makes on the ``websockets`` library, for every
version it supports: 10.4 (Debian 12's python3-websockets), whose client is
what later versions call "legacy", and 13 or newer, whose new asyncio client
(``websockets.asyncio.client``) is the one ``websockets.connect`` names
from 14 on. Both are called with the arguments they share."""

from __future__ import annotations

import importlib
from typing import Any

from websockets.exceptions import ConnectionClosed

try:  # websockets >= 13
    _client: Any = importlib.import_module("websockets.asyncio.client")
    NEW_ASYNCIO = True
except ImportError:  # websockets 10.x-12.x
    _client = importlib.import_module("websockets.legacy.client")
    NEW_ASYNCIO = False
_connect = _client.connect

__all__ = ["ConnectionClosed", "connect", "close", "abort", "NEW_ASYNCIO"]

# The server's largest pushed frame is a message of up to 64 KiB of data
# plus its envelope; a long depth or a wide tick stays far below this.
MAX_FRAME = 4 * 1024 * 1024


async def connect(url: str, *, open_timeout: float, compression: bool) -> Any:
    # ping_interval=None: the client sends the protocol's JSON ping itself,
    # and the library's own pings would count against the rate limit twice.
    return await _connect(
        url,
        open_timeout=open_timeout,
        ping_interval=None,
        close_timeout=5,
        max_size=MAX_FRAME,
        compression="deflate" if compression else None,
    )


async def close(ws: Any, code: int, reason: str) -> None:
    await ws.close(code, reason)


def abort(ws: Any) -> None:
    """Drops the TCP connection at once (no closing handshake)."""
    transport = getattr(ws, "transport", None)
    if transport is not None:
        transport.abort()
