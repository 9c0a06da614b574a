"""The asyncio client: connect, authenticate, subscribe, receive typed
messages; reconnect, resubscribe and resume on its own.

It behaves as the JavaScript client (clients/js) does and reports the same
events, and adds flow control: it grants the server credit as the
application handles messages, so a slow strategy gets the newest prices
instead of a backlog (docs/PROTOCOL.md).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random as _random
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Union

from . import _ws
from .backoff import backoff_delay
from .errors import MarketcastError
from .flow import CreditWindow
from .messages import Message, loads, parse, time_or_none
from .protocol import BROADCAST_ID, BROADCAST_KEY, CHANNELS, RELIABLE_CHANNELS, Answer, Close, ErrorCode, Request, push_channel

log = logging.getLogger("marketcast")

TokenProvider = Callable[[], Union[str, Awaitable[str]]]
Handler = Callable[[Any], Any]

#: Lifecycle events (the JavaScript client's names). Any other event name is
#: a message type ('market_data', 'order_update'…), a channel ('tick',
#: 'orders'…) or 'message' (every pushed message).
LIFECYCLE_EVENTS = frozenset({
    "open", "auth", "reconnected", "close", "reconnecting", "resumed", "resume_failed", "gap", "duplicate", "error",
})

# Where a subscription starts is not what is subscribed: a reconnect asks it
# again from the positions the client tracked.
_START_KEYS = ("since", "epoch", "broadcast_since", "broadcast_epoch")


@dataclass(frozen=True)
class AuthInfo:
    """A successful authentication."""

    user_id: str
    permissions: tuple[str, ...]
    expires_at: datetime | None


@dataclass(frozen=True)
class Closed:
    """A connection ended: its close code (1006: no close frame) and reason."""

    code: int
    reason: str


@dataclass(frozen=True)
class Reconnecting:
    attempt: int
    #: Seconds until the attempt.
    delay: float


@dataclass(frozen=True)
class Resume:
    """The outcome of a resume (events ``resumed`` and ``resume_failed``).
    On ``resume_failed`` refetch that state from your back end: ``reason``
    is ``"epoch"`` (the stream is a new run, after a server restart say) or
    ``"history"`` (the server no longer holds what was missed)."""

    channel: str
    topic: str
    since: int
    epoch: str | None
    recovered: bool
    current_epoch: str | None
    sequence: int | None
    reason: str | None = None


@dataclass(frozen=True)
class Gap:
    topic: str
    expected: int
    got: int


@dataclass(frozen=True)
class Duplicate:
    topic: str
    sequence: int
    last: int


@dataclass(frozen=True)
class Position:
    """The last message seen on a topic: its sequence and its run (epoch)."""

    sequence: int
    epoch: str | None


def topic_key(msg: dict[str, Any]) -> str:
    """The sequence-tracking key of a pushed message."""
    ch = str(msg.get("channel", ""))
    if msg.get("symbol"):
        return f"{ch}:{msg['symbol']}"
    if msg.get("strategy_id"):
        return f"{ch}:{msg['strategy_id']}"
    if msg.get("broadcast"):
        return f"{ch}:{BROADCAST_ID}"
    return ch


class _Delivery:
    """One pushed message on its way through the application: handled once
    every callback returned and every stream it went to moved past it."""

    __slots__ = ("gen", "remaining", "slowest", "counted")

    def __init__(self, gen: int) -> None:
        self.gen = gen
        self.remaining = 1  # the dispatcher's own share, released after delivery
        self.slowest = 0.0
        self.counted = False


_END = object()


class MessageStream:
    """An async iterator over pushed messages (all, or those whose type or
    channel is named). Create it before subscribing to see the snapshots;
    ``async with`` or :meth:`close` ends it. A stream that is dropped
    unclosed stops receiving as soon as it is garbage."""

    def __init__(self, client: Client, events: Iterable[str], max_buffered: int) -> None:
        self._events = frozenset(events)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._space = asyncio.Event()
        self._max = max_buffered
        self._closed = False
        self._current: tuple[_Delivery, float] | None = None
        self._client = client
        # What the stream held when it went away counts as handled, so
        # credit never waits for a consumer that is gone.
        self._finalizer = weakref.finalize(self, client._stream_gone, self._queue)
        client._add_stream(self)

    def matches(self, msg: Message) -> bool:
        return not self._events or msg.type in self._events or msg.channel in self._events

    def __aiter__(self) -> MessageStream:
        return self

    async def __anext__(self) -> Message:
        self._finish_current()
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        self._space.set()
        if item is _END:
            raise StopAsyncIteration
        delivery, msg = item
        self._current = (delivery, time.monotonic())
        return msg  # type: ignore[no-any-return]

    def _finish_current(self) -> None:
        if self._current is not None:
            delivery, took = self._current
            self._current = None
            self._client._done(delivery, time.monotonic() - took)

    async def __aenter__(self) -> MessageStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Ends the stream: it yields what it holds, then stops."""
        if self._closed:
            return
        self._closed = True
        self._finish_current()
        self._client._remove_stream(self)
        self._queue.put_nowait(_END)


async def _maybe_await(v: Any) -> Any:
    if inspect.isawaitable(v):
        return await v
    return v


class Client:
    """An asyncio marketcast client.

    ``token`` is a JWT; ``token_provider`` a function (plain or async)
    returning one, called for every connection and before the token
    expires (then the connection re-authenticates in place). Every
    abnormal close reconnects with exponential back-off and jitter,
    resubscribes, and resumes reliable channels from the last sequence and
    epoch seen — except a 4001 without a ``token_provider`` (the same token
    would fail again) and :meth:`close`.

    Receive with callbacks (:meth:`on`) or async iterators
    (:meth:`messages`, or ``async for msg in client``); both get typed
    messages (:mod:`marketcast.messages`). Pushed messages wait in the
    client until the application has a consumer for them.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        flow_control: bool = True,
        reconnect: bool = True,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        factor: float = 2.0,
        max_attempts: int | None = None,
        open_timeout: float = 10.0,
        auth_timeout: float = 5.0,
        request_timeout: float = 10.0,
        heartbeat_interval: float = 25.0,
        heartbeat_timeout: float = 10.0,
        refresh_before_expiry: float = 60.0,
        compression: bool = True,
        max_buffered: int = 4096,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not url:
            raise TypeError("marketcast: url is required")
        self.url = url
        self._token = token
        self._token_provider = token_provider
        self.flow_control = flow_control
        self.reconnect = reconnect
        self.initial_delay, self.max_delay, self.factor = initial_delay, max_delay, factor
        self.max_attempts = max_attempts
        self.open_timeout, self.auth_timeout, self.request_timeout = open_timeout, auth_timeout, request_timeout
        self.heartbeat_interval, self.heartbeat_timeout = heartbeat_interval, heartbeat_timeout
        self.refresh_before_expiry = refresh_before_expiry
        self.compression = compression
        self.max_buffered = max_buffered
        self._random = random

        #: idle | connecting | open | reconnecting | closed
        self.state = "idle"
        #: The current authentication, once authenticated.
        self.user: AuthInfo | None = None
        self._handlers: dict[str, list[Handler]] = {}
        self._subscriptions: dict[str, tuple[str, dict[str, Any]]] = {}
        self._positions: dict[str, Position] = {}
        self._pending: dict[int, tuple[asyncio.Future[dict[str, Any]], Callable[[dict[str, Any]], None] | None]] = {}
        self._next_id = 1
        self._ws: Any = None
        self._gen = 0
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._conn_tasks: list[asyncio.Task[Any]] = []
        self._bg: set[asyncio.Task[Any]] = set()
        self._connected: asyncio.Future[AuthInfo] | None = None
        self._inbox: asyncio.Queue[tuple[_Delivery, dict[str, Any]]] | None = None
        self._streams: weakref.WeakSet[MessageStream] = weakref.WeakSet()
        self._consumer: asyncio.Event | None = None
        self._reader_blocked = False
        self._credit = CreditWindow()
        self._credit_probe: int | None = None
        #: Flow control on the current connection: True (granting credit),
        #: False (off, or the server does not know it), None (not connected).
        self.flow_control_active: bool | None = None
        self.attempt = 0

    # ---- events ---------------------------------------------------------------

    def on(self, event: str, handler: Handler) -> Callable[[], None]:
        """Calls ``handler`` for an event; returns a function that removes it.

        Message events — a type (``market_data``, ``kline``, ``depth``,
        ``order_update``, ``position_update``, ``account_update``,
        ``risk_alert``, ``system_notice``, ``strategy_signal``), a channel
        (``tick``, ``kline_1m``, ``orders``, ``notifications``, ``signals``…)
        or ``message`` (all) — get the typed :class:`~marketcast.messages.Message`;
        an async handler is awaited before the next message is delivered.
        Lifecycle events get: ``open`` None, ``auth`` and ``reconnected``
        :class:`AuthInfo`, ``close`` :class:`Closed`, ``reconnecting``
        :class:`Reconnecting`, ``resumed`` and ``resume_failed``
        :class:`Resume`, ``gap`` :class:`Gap`, ``duplicate``
        :class:`Duplicate`, ``error`` a :class:`MarketcastError`.
        """
        self._handlers.setdefault(event, []).append(handler)
        if event not in LIFECYCLE_EVENTS and self._consumer is not None:
            self._consumer.set()
        return lambda: self.off(event, handler)

    def off(self, event: str, handler: Handler) -> None:
        hs = self._handlers.get(event)
        if hs and handler in hs:
            hs.remove(handler)

    def _emit(self, event: str, payload: Any = None) -> None:
        """Calls lifecycle handlers at once (an async one runs as a task)."""
        hs = self._handlers.get(event)
        if not hs:
            if event == "error":
                log.warning("marketcast: %s", payload)
            return
        for h in list(hs):
            try:
                r = h(payload)
                if inspect.isawaitable(r):
                    self._spawn(_maybe_await(r))
            except Exception as err:  # a handler's bug must not stop the client
                log.exception("marketcast: %s handler failed", event)
                if event != "error":
                    self._emit("error", MarketcastError("HANDLER_FAILED", f"{event} handler raised {err!r}"))

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return task

    # ---- consuming ------------------------------------------------------------

    def messages(self, *events: str) -> MessageStream:
        """An async iterator over pushed messages whose type or channel is
        one of ``events`` (all when none are named)."""
        return MessageStream(self, events, self.max_buffered)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self.messages()

    def _add_stream(self, s: MessageStream) -> None:
        self._streams.add(s)
        if self._consumer is not None:
            self._consumer.set()

    def _remove_stream(self, s: MessageStream) -> None:
        self._streams.discard(s)

    def _stream_gone(self, queue: asyncio.Queue[Any]) -> None:
        while not queue.empty():
            item = queue.get_nowait()
            if item is not _END:
                self._done(item[0], 0.0)

    def _has_data_consumer(self) -> bool:
        return bool(self._streams) or any(hs for ev, hs in self._handlers.items() if ev not in LIFECYCLE_EVENTS)

    async def _dispatch(self) -> None:
        """Delivers pushed messages in order: callbacks (awaited), then
        streams. A message waits while the application has no consumer."""
        assert self._inbox is not None and self._consumer is not None
        while True:
            delivery, raw = await self._inbox.get()
            while not self._has_data_consumer():
                self._consumer.clear()
                await self._consumer.wait()
            try:
                msg = parse(raw)
            except Exception:  # a payload this version cannot type: never stop delivering
                log.exception("marketcast: cannot read a %s message", raw.get("type"))
                self._done(delivery, None)
                continue
            names = [msg.type] + ([msg.channel] if msg.channel != msg.type else []) + ["message"]
            for name in names:
                for h in list(self._handlers.get(name, ())):
                    t0 = time.monotonic()
                    try:
                        await _maybe_await(h(msg))
                    except Exception as err:
                        log.exception("marketcast: %s handler failed", name)
                        self._emit("error", MarketcastError("HANDLER_FAILED", f"{name} handler raised {err!r}"))
                    delivery.slowest = max(delivery.slowest, time.monotonic() - t0)
            for s in list(self._streams):
                if s.matches(msg):
                    await self._offer(weakref.ref(s), delivery, msg)
            self._done(delivery, None)

    async def _offer(self, ref: weakref.ref[MessageStream], delivery: _Delivery, msg: Message) -> None:
        # Waits while the stream is full, without holding it: a stream its
        # consumer dropped is collected and stops holding up the others.
        while True:
            s = ref()
            if s is None or s._closed:
                return
            if s._queue.qsize() < s._max:
                delivery.remaining += 1
                s._queue.put_nowait((delivery, msg))
                return
            space = s._space
            space.clear()
            del s
            try:
                await asyncio.wait_for(space.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    def _done(self, delivery: _Delivery, seconds: float | None) -> None:
        if seconds is not None:
            delivery.slowest = max(delivery.slowest, seconds)
        delivery.remaining -= 1
        if delivery.remaining > 0 or delivery.counted:
            return
        delivery.counted = True
        if delivery.gen != self._gen or not self.flow_control_active:
            return
        self._credit.measure(delivery.slowest)
        n = self._credit.handled_one()
        if n:
            self._spawn(self._grant(n, probe=False))

    async def _grant(self, n: int, probe: bool) -> None:
        msg: dict[str, Any] = {"type": Request.CREDIT, "n": n}
        if probe:
            # Only the first grant of a connection carries an id: a server
            # that does not know credit answers it with an error we can
            # match; a server that does answers nothing.
            self._credit_probe = msg["id"] = self._take_id()
        try:
            await self._send(msg)
        except MarketcastError:
            pass  # the connection is gone; the next one grants afresh

    # ---- connection -------------------------------------------------------------

    async def connect(self) -> AuthInfo:
        """Connects and authenticates; returns the authentication.

        While the server cannot be reached it retries with the back-off
        (``reconnecting`` events) until ``max_attempts``. Raises
        :class:`MarketcastError`: AUTH_FAILED or TOKEN_EXPIRED when the
        token is refused, RECONNECT_FAILED when the attempts ran out.
        """
        if self._supervisor is not None and not self._supervisor.done():
            if self._connected is not None:
                return await asyncio.shield(self._connected)
        loop = asyncio.get_running_loop()
        self._closing = False
        self._connected = loop.create_future()
        if self._inbox is None:
            self._inbox = asyncio.Queue(self.max_buffered)
            self._consumer = asyncio.Event()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.ensure_future(self._dispatch())
        self.state = "connecting"
        self._supervisor = asyncio.ensure_future(self._supervise())
        return await asyncio.shield(self._connected)

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _get_token(self) -> str | None:
        if self._token_provider is not None:
            p = self._token_provider
            if inspect.iscoroutinefunction(p):
                tok = await p()
            else:
                # A plain function may block (an HTTP call): keep it off the loop.
                tok = await _maybe_await(await asyncio.to_thread(p))
            return str(tok) if tok else None
        return self._token

    def _fail_connect(self, err: MarketcastError) -> bool:
        """Reports err to a connect() still waiting; True if there was one."""
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(err)
            self._connected.exception()  # retrieved: connect() re-raises it
            return True
        return False

    async def _supervise(self) -> None:
        try:
            while not self._closing:
                code = await self._connection()
                if self._closing or code is None:
                    break
                if not self.reconnect and self._connected is not None and self._connected.done():
                    break
                if code == Close.AUTH_FAILED and self._token_provider is None:
                    self._emit("error", MarketcastError(ErrorCode.AUTH_FAILED,
                                                        "authentication failed; not reconnecting without token_provider"))
                    break
                if self.max_attempts is not None and self.attempt >= self.max_attempts:
                    err = MarketcastError("RECONNECT_FAILED", f"gave up after {self.attempt} attempts")
                    if not self._fail_connect(err):
                        self._emit("error", err)
                    break
                delay = backoff_delay(self.attempt, initial_delay=self.initial_delay, max_delay=self.max_delay,
                                      factor=self.factor, random=self._random)
                self.attempt += 1
                self.state = "reconnecting"
                self._emit("reconnecting", Reconnecting(self.attempt, delay))
                await asyncio.sleep(delay)
        finally:
            self.state = "closed"
            self._fail_connect(MarketcastError("CLOSED", "client closed"))

    async def _connection(self) -> int | None:
        """One connection, from opening to its end. Returns its close code,
        or None when the client must not reconnect."""
        try:
            ws = await _ws.connect(self.url, open_timeout=self.open_timeout, compression=self.compression)
        except Exception as err:  # refused, unreachable, handshake failed, timed out
            log.debug("marketcast: cannot connect to %s: %r", self.url, err)
            self._emit("close", Closed(Close.ABNORMAL, f"connection failed: {err}"))
            return Close.ABNORMAL
        self._gen += 1
        gen = self._gen
        self._ws = ws
        self._reader_blocked = False
        reader = asyncio.ensure_future(self._read(ws, gen))
        self._emit("open")
        first = self._connected is not None and not self._connected.done()
        try:
            auth = await self._authenticate()
        except MarketcastError as err:
            if err.code == "CLOSED":
                closed = await reader
                return self._end(ws, closed)
            await _ws.close(ws, Close.NORMAL, "authentication failed")
            closed = await reader
            self._end(ws, closed)
            if first:
                self._fail_connect(err)
                return None
            self._emit("error", err)
            if self._token_provider is None:
                return None
            return closed.code
        was_reconnect = self.attempt > 0 or self.state == "reconnecting" or not first
        self.state = "open"
        self.user = auth
        self.attempt = 0
        self._emit("auth", auth)
        if was_reconnect:
            self._emit("reconnected", auth)
        self.flow_control_active = None
        if self.flow_control:
            self.flow_control_active = True
            await self._grant(self._credit.open(), probe=True)
        else:
            self.flow_control_active = False
        self._conn_tasks = [
            asyncio.ensure_future(self._heartbeat(ws)),
            asyncio.ensure_future(self._refresh_loop()),
            asyncio.ensure_future(self._resubscribe()),
        ]
        if first and self._connected is not None and not self._connected.done():
            self._connected.set_result(auth)
        closed = await reader
        return self._end(ws, closed)

    def _end(self, ws: Any, closed: Closed) -> int:
        for t in self._conn_tasks:
            t.cancel()
        self._conn_tasks = []
        if self._ws is ws:
            self._ws = None
        self._credit_probe = None
        for mid, (fut, _) in list(self._pending.items()):
            if not fut.done():
                fut.set_exception(MarketcastError("CLOSED", f"connection closed ({closed.code})", {"code": closed.code}))
                fut.exception()
        self._pending.clear()
        if self.state == "open":
            self.state = "reconnecting"
        self._emit("close", closed)
        self.flow_control_active = None
        return closed.code

    async def _authenticate(self) -> AuthInfo:
        try:
            token = await self._get_token()
        except Exception as err:  # the application's provider: report it, never crash the client
            raise MarketcastError("TOKEN_PROVIDER_FAILED", f"token_provider raised {err!r}") from err
        if not token:
            raise MarketcastError(ErrorCode.NOT_AUTHENTICATED, "no token: pass token or token_provider")
        res = await self._request({"type": Request.AUTH, "data": {"token": token}}, self.auth_timeout)
        data = res.get("data") or {}
        if data.get("status") != "success":
            raise MarketcastError(data.get("code") or ErrorCode.AUTH_FAILED, data.get("message") or "authentication failed")
        return AuthInfo(str(data.get("user_id", "")), tuple(data.get("permissions") or ()),
                        time_or_none(data.get("expires_at")))

    async def refresh_token(self) -> AuthInfo:
        """Re-authenticates in place with a fresh token; subscriptions are kept."""
        auth = await self._authenticate()
        self.user = auth
        self._emit("auth", auth)
        return auth

    async def _refresh_loop(self) -> None:
        if self._token_provider is None:
            return
        while True:
            exp = self.user.expires_at if self.user else None
            if exp is None:
                return
            wait = (exp - datetime.now(timezone.utc)).total_seconds() - self.refresh_before_expiry
            await asyncio.sleep(max(0.0, wait))
            try:
                await self.refresh_token()
            except MarketcastError as err:
                # The server closes with 4002 at expiry; the reconnect then
                # asks for a token again.
                self._emit("error", err)
                return

    async def _heartbeat(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self._request({"type": Request.PING, "timestamp": _now()}, self.heartbeat_timeout)
            except MarketcastError as err:
                if err.code != "TIMEOUT":
                    return
                if self._reader_blocked:
                    continue  # the application is behind, not the network
                log.info("marketcast: no pong within %.0f s; dropping the connection", self.heartbeat_timeout)
                _ws.abort(ws)
                return

    async def close(self) -> None:
        """Closes with 1000, stops reconnecting and ends every stream.
        Messages not yet delivered are dropped."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            try:
                await asyncio.wait_for(_ws.close(ws, Close.NORMAL, "client closed"), 5)
            except (asyncio.TimeoutError, Exception):
                _ws.abort(ws)
        for task in (self._supervisor, self._dispatcher, *self._conn_tasks, *self._bg):
            if task is not None and not task.done():
                task.cancel()
        for task in (self._supervisor, self._dispatcher, *self._conn_tasks, *list(self._bg)):
            if task is not None:
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._dispatcher = None
        self._inbox = None
        self._consumer = None
        for s in list(self._streams):
            s.close()
        self.state = "closed"

    async def wait_closed(self) -> None:
        """Returns when the client has stopped: closed, or reconnecting gave up."""
        if self._supervisor is not None:
            try:
                await asyncio.shield(self._supervisor)
            except asyncio.CancelledError:
                if not self._supervisor.done():
                    raise

    # ---- reading --------------------------------------------------------------

    async def _read(self, ws: Any, gen: int) -> Closed:
        try:
            while True:
                raw = await ws.recv()
                try:
                    msg = loads(raw)
                except ValueError:
                    self._emit("error", MarketcastError(ErrorCode.INVALID_JSON, "server sent invalid JSON"))
                    continue
                if isinstance(msg, dict):
                    await self._receive(msg, gen)
        except _ws.ConnectionClosed as err:
            rcvd = err.rcvd
            return Closed(rcvd.code, rcvd.reason) if rcvd is not None else Closed(Close.ABNORMAL, "")
        except asyncio.CancelledError:
            raise
        except Exception as err:
            return Closed(Close.ABNORMAL, repr(err))

    async def _receive(self, msg: dict[str, Any], gen: int) -> None:
        mid = msg.get("id")
        mtype = msg.get("type")
        if mid is not None and mid == self._credit_probe:
            self._credit_probe = None
            if mtype == Answer.ERROR:
                d = msg.get("data") or {}
                self.flow_control_active = False
                log.warning("marketcast: the server does not support flow control (credit answered %s: %s); "
                            "this connection runs without it, so a slow handler backs up the connection "
                            "instead of getting the newest data", d.get("code"), d.get("message"))
            return
        if mid is not None and mid in self._pending:
            fut, on_answer = self._pending.pop(mid)
            if mtype == Answer.ERROR:
                d = msg.get("data") or {}
                if not fut.done():
                    fut.set_exception(MarketcastError(d.get("code", "ERROR"), d.get("message", "")))
                    fut.exception()
                return
            if on_answer is not None:
                on_answer(msg)  # here, before any later message is tracked
            if not fut.done():
                fut.set_result(msg)
            return
        if mtype == Answer.ERROR:
            d = msg.get("data") or {}
            self._emit("error", MarketcastError(d.get("code", "ERROR"), d.get("message", "")))
            return
        if mtype in (Answer.AUTH, Answer.SUBSCRIBE, Answer.UNSUBSCRIBE, Answer.PONG):
            return  # an answer whose request timed out
        seq = msg.get("sequence")
        if isinstance(seq, int) and not isinstance(seq, bool) and msg.get("channel"):
            if not self._track(msg):
                return
        assert self._inbox is not None
        delivery = _Delivery(gen)
        if self._inbox.full():
            self._reader_blocked = True
            try:
                await self._inbox.put((delivery, msg))
            finally:
                self._reader_blocked = False
        else:
            self._inbox.put_nowait((delivery, msg))

    def _track(self, msg: dict[str, Any]) -> bool:
        """Records a pushed message's position and reports, on reliable
        topics, gaps, duplicates and a change of run. Returns False for a
        duplicate on a reliable topic, which is then not delivered."""
        key = topic_key(msg)
        pos = self._positions.get(key)
        seq = msg["sequence"]
        epoch = msg.get("epoch")
        reliable = not msg.get("symbol")  # market topics conflate: skipped numbers are normal
        at = Position(seq, epoch)
        if pos is None or msg.get("snapshot"):
            self._positions[key] = at
            return True
        if reliable and epoch is not None and pos.epoch != epoch:
            # Another run of the stream. Before anything was seen it only
            # names the run that has now begun; after, what the old run
            # still owed may be lost.
            self._positions[key] = at
            if pos.sequence > 0:
                self._emit("resume_failed", Resume(msg.get("channel", ""), key, pos.sequence, pos.epoch, False,
                                                   epoch, seq, "epoch"))
            return True
        if seq <= pos.sequence:
            if reliable:
                self._emit("duplicate", Duplicate(key, seq, pos.sequence))
                return False
            self._positions[key] = at  # a restarted server: numbering starts again
            return True
        if reliable and seq > pos.sequence + 1:
            self._emit("gap", Gap(key, pos.sequence + 1, seq))
        self._positions[key] = at
        return True

    def position(self, key: str) -> Position | None:
        """The last position seen on a topic key ('orders', 'tick:SHFE.rb2405',
        'notifications:*' for the broadcast stream, 'signals:STR_1')."""
        return self._positions.get(key)

    # ---- requests ---------------------------------------------------------------

    def _take_id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    async def _send(self, msg: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            raise MarketcastError("NOT_CONNECTED", "not connected")
        try:
            await ws.send(json.dumps(msg, separators=(",", ":"), ensure_ascii=False))
        except _ws.ConnectionClosed as err:
            raise MarketcastError("NOT_CONNECTED", f"connection closed: {err}") from None

    async def _request(self, msg: dict[str, Any], timeout: float | None = None,
                       on_answer: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        mid = self._take_id()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[mid] = (fut, on_answer)
        try:
            await self._send({**msg, "id": mid})
            return await asyncio.wait_for(asyncio.shield(fut), timeout or self.request_timeout)
        except asyncio.TimeoutError:
            raise MarketcastError("TIMEOUT", f"no answer to {msg.get('type')} within {timeout or self.request_timeout} s") from None
        finally:
            self._pending.pop(mid, None)

    @staticmethod
    def _sub_key(channel: str, options: dict[str, Any]) -> str:
        o = {k: v for k, v in options.items() if k not in _START_KEYS and k != "history"}
        return channel + " " + json.dumps(o, sort_keys=True, default=str)

    async def subscribe(self, channel: str, *, symbols: Iterable[str] | None = None, fields: Iterable[str] | None = None,
                        history: int | None = None, interval_ms: int | None = None, conflate: bool | None = None,
                        user_id: str | int | None = None, strategy_id: str | None = None,
                        since: int | None = None, epoch: str | None = None, **extra: Any) -> dict[str, Any]:
        """Subscribes and returns the answer's data (``symbols``, ``fields``,
        ``epoch``, ``sequence``, ``recovered``…); raises
        :class:`MarketcastError` with the server's code (UNKNOWN_SYMBOL,
        FORBIDDEN…). The subscription is remembered and renewed after every
        reconnect, reliable channels resuming from the last position seen.

        Market channels: ``symbols``; ``fields`` (ticks: a projection);
        ``history`` (klines: closed bars first); ``interval_ms`` (at most one
        update per symbol per interval, the newest); ``conflate=False``
        (ticks: every tick, never replaced). Reliable channels: ``since``
        and ``epoch`` to start from a known position (``since=0``: the
        whole current run); ``strategy_id`` for signals. Put every symbol in
        one request: each request counts against the rate limit.
        """
        options: dict[str, Any] = {}
        if symbols is not None:
            options["symbols"] = [symbols] if isinstance(symbols, str) else list(symbols)
        if fields is not None:
            options["fields"] = [fields] if isinstance(fields, str) else list(fields)
        for k, v in (("history", history), ("interval_ms", interval_ms), ("conflate", conflate),
                     ("user_id", user_id), ("strategy_id", strategy_id)):
            if v is not None:
                options[k] = v
        options.update({k: v for k, v in extra.items() if v is not None})
        kept = {k: v for k, v in options.items() if k not in _START_KEYS}
        self._subscriptions[self._sub_key(channel, kept)] = (channel, kept)
        if self.state != "open":
            return {"status": "pending", "channel": channel}
        start = dict(options)
        if since is not None:
            start["since"] = since
            if epoch is not None:
                start["epoch"] = epoch
        return await self._send_subscribe(channel, start)

    async def _send_subscribe(self, channel: str, options: dict[str, Any]) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": Request.SUBSCRIBE, "channel": channel, **options}
        reliable = channel in RELIABLE_CHANNELS
        key = self._private_key(channel, options)
        broadcast = push_channel(channel) == "notifications"
        if reliable and "since" not in msg:
            # Resume where this client stands: the sequence and the run
            # (epoch) it was seen in, so a restarted stream cannot pass for
            # the old one.
            pos = self._positions.get(key)
            if pos is not None:
                msg["since"] = pos.sequence
                if pos.epoch is not None:
                    msg["epoch"] = pos.epoch
            bpos = self._positions.get(BROADCAST_KEY) if broadcast else None
            if bpos is not None:
                msg["broadcast_since"] = bpos.sequence
                if bpos.epoch is not None:
                    msg["broadcast_epoch"] = bpos.epoch

        def settle_answer(res: dict[str, Any]) -> None:
            d = res.get("data") or {}
            self._settle(channel, key, msg.get("since"), msg.get("epoch"), d.get("recovered"), d.get("epoch"), d.get("sequence"))
            b = d.get("broadcast")
            if isinstance(b, dict):
                self._settle(channel, BROADCAST_KEY, msg.get("broadcast_since"), msg.get("broadcast_epoch"),
                             b.get("recovered"), b.get("epoch"), b.get("sequence"))

        res = await self._request(msg, on_answer=settle_answer if reliable else None)
        return res.get("data") or {}

    def _settle(self, channel: str, topic: str, since: int | None, epoch: str | None, recovered: Any,
                current_epoch: str | None, sequence: Any) -> None:
        """Records where a reliable stream stands after a subscribe answer and
        reports a resume's outcome: ``resumed`` (the replay follows) or
        ``resume_failed`` (refetch that state; tracking restarts at the
        stream's current position)."""
        seq = int(sequence) if sequence is not None else 0
        if since is None:
            self._positions[topic] = Position(seq, current_epoch)
            return
        if recovered:
            self._emit("resumed", Resume(channel, topic, since, epoch, True, current_epoch, seq))
            return
        reason = "epoch" if epoch and epoch != current_epoch else "history"
        self._positions[topic] = Position(seq, current_epoch)
        self._emit("resume_failed", Resume(channel, topic, since, epoch, False, current_epoch, seq, reason))

    @staticmethod
    def _private_key(channel: str, options: dict[str, Any]) -> str:
        ch = push_channel(channel)
        info = CHANNELS.get(channel)
        return f"{ch}:{options.get('strategy_id')}" if info is not None and info.kind == "signals" else ch

    async def unsubscribe(self, channel: str, *, symbols: Iterable[str] | None = None, **options: Any) -> dict[str, Any]:
        """Ends a subscription (the same arguments as subscribe)."""
        if symbols is not None:
            options["symbols"] = [symbols] if isinstance(symbols, str) else list(symbols)
        options = {k: v for k, v in options.items() if v is not None}
        self._subscriptions.pop(self._sub_key(channel, options), None)
        if self.state != "open":
            return {"status": "success", "channel": channel}
        res = await self._request({"type": Request.UNSUBSCRIBE, "channel": channel,
                                   **{k: v for k, v in options.items() if k not in _START_KEYS and k != "history"}})
        return res.get("data") or {}

    async def _resubscribe(self) -> None:
        for channel, options in list(self._subscriptions.values()):
            try:
                await self._send_subscribe(channel, dict(options))
            except MarketcastError as err:
                if err.code in ("CLOSED", "NOT_CONNECTED"):
                    return
                self._emit("error", err)

    async def ping(self) -> float:
        """Round trip of a protocol ping, in seconds."""
        t0 = time.monotonic()
        await self._request({"type": Request.PING, "timestamp": _now()})
        return time.monotonic() - t0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
