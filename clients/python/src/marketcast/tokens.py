"""Tokens for scripts, tests and back ends that hold the server's HS256 secret.

In production tokens come from your identity provider or your back end
(the seed's FastAPI app signs them with PyJWT already). These two helpers
cover the rest: a back end that shares ``auth.jwt_secret`` with the server,
and a development server's ``/dev/token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
import urllib.request
from typing import Iterable


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sign_token(secret: str, user: str | int, permissions: Iterable[str] = ("read:market_data", "read:signals"),
               ttl: float = 3600) -> str:
    """An HS256 JWT for ``user`` (its ``sub``) with ``permissions``, valid
    for ``ttl`` seconds: what ``marketcast token`` signs."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"sub": str(user), "permissions": list(permissions), "iat": now, "exp": now + int(ttl)}
    signing_input = _b64(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(sig)


def dev_token(base_url: str = "http://localhost:8000", user: str | int = "1",
              permissions: Iterable[str] | None = None, timeout: float = 5) -> str:
    """A token from a development server's ``GET /dev/token`` (``make run``).
    Servers not in development mode have no such endpoint."""
    q = {"user": str(user)}
    if permissions is not None:
        q["permissions"] = ",".join(permissions)
    url = base_url.rstrip("/") + "/dev/token?" + urllib.parse.urlencode(q)
    with urllib.request.urlopen(url, timeout=timeout) as res:
        return str(json.loads(res.read())["token"])
