"""Publishing from a back end: ``POST /api/v1/publish``.

:class:`Publisher` is plain synchronous code on the standard library's HTTP
client, so a Celery task, a script or a thread can call it; :class:`AsyncPublisher`
is the same for asyncio code (a FastAPI handler): it runs the HTTP call in a
worker thread and never blocks the event loop. No third-party HTTP library:
this module has no dependency at all.

Every logical publish gets one idempotency key (generated, or yours), sent
with each reliable message of it; retries of that publish — the
publisher's own, or yours with the same key — are stored once.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from .protocol import RELIABLE_CHANNELS

Msg = Mapping[str, Any]
TokenSource = Union[str, Callable[[], str]]

PUBLISH_PATH = "/api/v1/publish"


@dataclass(frozen=True)
class PublishResult:
    """Where one message landed: its topic, its sequence and, on a reliable
    topic, the epoch (run) that sequence belongs to."""

    topic: str
    sequence: int | None
    epoch: str | None = None


class PublishError(Exception):
    """A publish that did not happen (or not wholly). ``retryable`` says
    whether the same call may succeed later; ``published`` how many
    messages of a batch were stored before a failure part-way (retrying the
    batch with the same idempotency key stores the rest once)."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 server_message: str | None = None, idempotency_key: str | None = None,
                 published: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.server_message = server_message
        self.idempotency_key = idempotency_key
        self.published = published


class PublishRejected(PublishError):
    """The server refused the messages (400, 413): fix them; sending the same
    body again fails the same way. Nothing of the batch was published."""


class PublishUnauthorized(PublishError):
    """401 (no or invalid token) or 403 (the token lacks permission
    ``publish``): fix the token; retrying with it fails the same way."""


class PublishUnavailable(PublishError):
    """The server could not publish now: it is draining (503), its cluster
    broker (NATS) is unreachable (503 in cluster mode), it failed inside
    (500), or it could not be reached or did not answer in time. Retry
    later with the same idempotency key (``err.idempotency_key``): what
    was stored already is not stored again."""

    retryable = True


def _json_default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)  # a decimal string, exact: never through a float
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    raise TypeError(f"cannot publish a {type(v).__name__} in JSON")


# ---- messages ---------------------------------------------------------------------


def order_update(user_id: str | int, data: Msg) -> dict[str, Any]:
    """An ``order_update`` to one user (channel ``orders``)."""
    return {"channel": "orders", "user_id": user_id, "data": dict(data)}


def position_update(user_id: str | int, data: Msg) -> dict[str, Any]:
    return {"channel": "positions", "user_id": user_id, "data": dict(data)}


def account_update(user_id: str | int, data: Msg) -> dict[str, Any]:
    return {"channel": "account", "user_id": user_id, "data": dict(data)}


def notification(data: Msg, user_id: str | int | None = None, type: str | None = None) -> dict[str, Any]:
    """A risk alert to one user, or with no ``user_id`` a system notice to
    every user; ``type`` names another notification type."""
    m: dict[str, Any] = {"channel": "notifications", "data": dict(data)}
    if user_id is not None:
        m["user_id"] = user_id
    if type is not None:
        m["type"] = type
    return m


def strategy_signal(strategy_id: str, data: Msg) -> dict[str, Any]:
    return {"channel": "strategy_signals", "strategy_id": strategy_id, "data": dict(data)}


def tick(symbol: str, data: Msg) -> dict[str, Any]:
    """Market data: a tick. At volume, a collector publishes on NATS instead
    (docs/FEED.md)."""
    return {"channel": "tick", "symbol": symbol, "data": dict(data)}


def depth(symbol: str, bids: Sequence[Sequence[Any]], asks: Sequence[Sequence[Any]], **extra: Any) -> dict[str, Any]:
    return {"channel": "depth", "symbol": symbol,
            "data": {"bids": [list(b) for b in bids], "asks": [list(a) for a in asks], **extra}}


def kline(interval: str, symbol: str, data: Msg) -> dict[str, Any]:
    """A bar on ``kline_<interval>``; ``"closed": True`` in data makes it final."""
    return {"channel": f"kline_{interval}", "symbol": symbol, "data": dict(data)}


# ---- the publisher ------------------------------------------------------------------------

_BEFORE = re.compile(r"\((\d+) before it were\)")


def new_idempotency_key() -> str:
    """A fresh key for one logical publish."""
    return "mc-" + uuid.uuid4().hex


def _body(messages: Msg | Iterable[Msg], key: str) -> tuple[bytes, int, bool]:
    single = isinstance(messages, Mapping)
    items = [dict(messages)] if single else [dict(m) for m in messages]  # type: ignore[arg-type]
    if not items:
        raise PublishRejected("nothing to publish: pass a message or a non-empty list of them")
    for i, m in enumerate(items):
        ch = m.get("channel")
        if not isinstance(ch, str):
            raise PublishRejected(f"message {i}: no channel")
        # The key applies to reliable messages only (market data is state:
        # sending it twice changes nothing). Message i of a batch gets key/i,
        # so a retried batch maps onto itself message by message.
        if ch in RELIABLE_CHANNELS and "idempotency_key" not in m:
            m["idempotency_key"] = key if single else f"{key}/{i}"
    payload = items[0] if single else items
    return json.dumps(payload, default=_json_default, ensure_ascii=False, separators=(",", ":")).encode(), len(items), single


def _results(body: bytes) -> list[PublishResult]:
    doc = json.loads(body)
    return [PublishResult(r.get("topic", ""), r.get("sequence"), r.get("epoch")) for r in doc.get("results", [])]


def _error(status: int, body: bytes, key: str) -> PublishError:
    code = msg = None
    try:
        err = json.loads(body).get("error", {})
        code, msg = err.get("code"), err.get("message")
    except (ValueError, AttributeError):
        msg = body[:200].decode("utf-8", "replace")
    published = None
    if msg:
        m = _BEFORE.search(msg)
        if m:
            published = int(m.group(1))
    kw: dict[str, Any] = dict(status=status, code=code, server_message=msg, idempotency_key=key, published=published)
    said = f"{status} {code or ''}: {msg or ''}".strip()
    if status in (400, 404, 405, 413):
        return PublishRejected(f"marketcast refused the publish ({said}); fix the message: "
                               "sending it again fails the same way", **kw)
    if status == 401:
        return PublishUnauthorized(f"marketcast needs a valid token with permission publish ({said})", **kw)
    if status == 403:
        return PublishUnauthorized(f"the token lacks permission publish ({said}); mint one with it "
                                   "(marketcast token -permissions publish)", **kw)
    if status == 503:
        return PublishUnavailable(f"marketcast cannot publish now ({said}): it is draining, or in cluster mode "
                                  "its NATS broker is unreachable; retry later with the same idempotency key", **kw)
    if status >= 500:
        return PublishUnavailable(f"marketcast failed to publish ({said}); retry later with the same "
                                  "idempotency key", **kw)
    return PublishError(f"unexpected answer from marketcast ({said})", **kw)


class Publisher:
    """Publishes to marketcast over HTTP, synchronously (a Celery task, a script).

    ``url`` is the server's base URL (``http://marketcast:8000``); ``token``
    a JWT with permission ``publish``, or a function returning one (called
    for every request). A publish that fails with a retryable error is
    retried ``retries`` times, ``retry_delay`` apart and doubling, with the
    same idempotency key; then :class:`PublishUnavailable` is raised, whose
    ``idempotency_key`` a later retry should reuse. Thread-safe: one
    publisher may serve every task of a worker.
    """

    def __init__(self, url: str = "http://localhost:8000", *, token: TokenSource, timeout: float = 5.0,
                 retries: int = 2, retry_delay: float = 0.2) -> None:
        self.url = url.rstrip("/") + PUBLISH_PATH
        self._token = token
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay

    def _bearer(self) -> str:
        tok = self._token() if callable(self._token) else self._token
        return tok[7:] if tok.startswith("Bearer ") else tok

    def _post(self, body: bytes, key: str) -> list[PublishResult]:
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Authorization": "Bearer " + self._bearer(), "Content-Type": "application/json",
        })
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as res:
                return _results(res.read())
        except urllib.error.HTTPError as err:
            raise _error(err.code, err.read(), key) from None
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            reason = getattr(err, "reason", err)
            raise PublishUnavailable(f"cannot reach marketcast at {self.url} ({reason}); retry later with the "
                                     "same idempotency key", idempotency_key=key) from None

    def publish(self, messages: Msg | Iterable[Msg], *, idempotency_key: str | None = None) -> list[PublishResult]:
        """Publishes one message, or a batch (all or nothing), and returns
        where each landed. Pass ``idempotency_key`` when the caller itself
        may retry (a Celery task: its task id), so every attempt is the same
        logical publish."""
        key = idempotency_key or new_idempotency_key()
        body, _, _ = _body(messages, key)
        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            try:
                return self._post(body, key)
            except PublishError as err:
                if not err.retryable or attempt == self.retries:
                    raise
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def order_update(self, user_id: str | int, data: Msg, **kw: Any) -> PublishResult:
        return self.publish(order_update(user_id, data), **kw)[0]

    def position_update(self, user_id: str | int, data: Msg, **kw: Any) -> PublishResult:
        return self.publish(position_update(user_id, data), **kw)[0]

    def account_update(self, user_id: str | int, data: Msg, **kw: Any) -> PublishResult:
        return self.publish(account_update(user_id, data), **kw)[0]

    def notify(self, data: Msg, user_id: str | int | None = None, type: str | None = None, **kw: Any) -> PublishResult:
        return self.publish(notification(data, user_id, type), **kw)[0]

    def strategy_signal(self, strategy_id: str, data: Msg, **kw: Any) -> PublishResult:
        return self.publish(strategy_signal(strategy_id, data), **kw)[0]

    def tick(self, symbol: str, data: Msg, **kw: Any) -> PublishResult:
        return self.publish(tick(symbol, data), **kw)[0]


class AsyncPublisher:
    """:class:`Publisher` for asyncio code: the same methods, awaitable. The
    HTTP call runs in a worker thread (``asyncio.to_thread``), and retries
    wait with ``asyncio.sleep``."""

    def __init__(self, url: str = "http://localhost:8000", *, token: TokenSource, timeout: float = 5.0,
                 retries: int = 2, retry_delay: float = 0.2) -> None:
        self._sync = Publisher(url, token=token, timeout=timeout, retries=0)
        self.retries = retries
        self.retry_delay = retry_delay

    async def publish(self, messages: Msg | Iterable[Msg], *, idempotency_key: str | None = None) -> list[PublishResult]:
        key = idempotency_key or new_idempotency_key()
        body, _, _ = _body(messages, key)
        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            try:
                return await asyncio.to_thread(self._sync._post, body, key)
            except PublishError as err:
                if not err.retryable or attempt == self.retries:
                    raise
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def order_update(self, user_id: str | int, data: Msg, **kw: Any) -> PublishResult:
        return (await self.publish(order_update(user_id, data), **kw))[0]

    async def position_update(self, user_id: str | int, data: Msg, **kw: Any) -> PublishResult:
        return (await self.publish(position_update(user_id, data), **kw))[0]

    async def account_update(self, user_id: str | int, data: Msg, **kw: Any) -> PublishResult:
        return (await self.publish(account_update(user_id, data), **kw))[0]

    async def notify(self, data: Msg, user_id: str | int | None = None, type: str | None = None,
                     **kw: Any) -> PublishResult:
        return (await self.publish(notification(data, user_id, type), **kw))[0]

    async def strategy_signal(self, strategy_id: str, data: Msg, **kw: Any) -> PublishResult:
        return (await self.publish(strategy_signal(strategy_id, data), **kw))[0]

    async def tick(self, symbol: str, data: Msg, **kw: Any) -> PublishResult:
        return (await self.publish(tick(symbol, data), **kw))[0]
