"""Errors: what the server answered, or what went wrong on the way."""

from __future__ import annotations

from typing import Any


class MarketcastError(Exception):
    """An error answered by the server (``code`` is the protocol's error
    code: UNKNOWN_SYMBOL, FORBIDDEN, AUTH_FAILED…), or one of the client's
    own: CONNECT_FAILED, CLOSED, TIMEOUT, NOT_CONNECTED, RECONNECT_FAILED."""

    def __init__(self, code: str, message: str = "", details: Any = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message or code
        self.details = details
