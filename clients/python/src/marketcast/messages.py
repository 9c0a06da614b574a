"""Typed messages: what the server pushes, as dataclasses.

Prices, volumes and money arrive as decimal strings and become
:class:`~decimal.Decimal` (never a float); times become aware
:class:`~datetime.datetime` in UTC. Every message keeps its ``data`` as sent
(JSON numbers in it parsed as ``Decimal`` too), so keys a back end or a
collector adds are never lost. A value that does not parse leaves its typed
field ``None``; ``data`` still holds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from .protocol import CHANNELS, TICK_FIELDS, Type


def decimal_or_none(v: Any) -> Decimal | None:
    """A decimal string (or number) as a Decimal; None when absent or not a number."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, Decimal):
        return v
    try:
        d = Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def time_or_none(v: Any) -> datetime | None:
    """An RFC 3339 / ISO 8601 time. A zone-less one stays naive: the sender
    alone knows its zone, so it is not guessed here."""
    if not isinstance(v, str) or not v:
        return None
    s = v[:-1] + "+00:00" if v.endswith(("Z", "z")) else v
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        return None
    return t.astimezone(timezone.utc) if t.tzinfo else t


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)


def loads(raw: str | bytes) -> Any:
    """Decodes a frame: JSON numbers become Decimal, never float."""
    return json.loads(raw, parse_float=Decimal)


@dataclass(frozen=True, kw_only=True)
class Message:
    """A pushed message: the envelope and its data as sent."""

    type: str
    channel: str
    data: Mapping[str, Any]
    #: When the engine accepted the event (UTC).
    timestamp: datetime | None = None
    #: Per topic, from 1, strictly increasing (market data may skip).
    sequence: int | None = None
    #: The run of a reliable topic's sequence this message belongs to.
    epoch: str | None = None
    #: True on the state sent at subscribe time.
    snapshot: bool = False

    @property
    def topic(self) -> str:
        """The sequence-tracking key, as the client's positions use it
        ('orders', 'tick:SHFE.rb2405', 'notifications:*')."""
        return self.channel


@dataclass(frozen=True, kw_only=True)
class Tick(Message):
    """A tick (``market_data`` on channel ``tick``). A projected
    subscription (``fields``) leaves the keys it did not ask ``None``."""

    symbol: str
    last_price: Decimal | None = None
    bid_price: Decimal | None = None
    ask_price: Decimal | None = None
    bid_volume: Decimal | None = None
    ask_volume: Decimal | None = None
    volume: Decimal | None = None
    turnover: Decimal | None = None
    open_interest: Decimal | None = None
    change: Decimal | None = None
    change_percent: Decimal | None = None
    #: Exchange time (the feed's).
    update_time: datetime | None = None
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    pre_settlement: Decimal | None = None
    upper_limit: Decimal | None = None
    lower_limit: Decimal | None = None
    average_price: Decimal | None = None

    @property
    def topic(self) -> str:
        return f"{self.channel}:{self.symbol}"


@dataclass(frozen=True, kw_only=True)
class Kline(Message):
    """A bar: ``closed`` once final; ``partial`` when the node began it mid-way."""

    symbol: str
    #: "1m", "5m", "15m", "30m", "1h" or "1d".
    interval: str
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal | None = None
    volume: Decimal | None = None
    turnover: Decimal | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    closed: bool = False
    partial: bool = False

    @property
    def topic(self) -> str:
        return f"{self.channel}:{self.symbol}"


@dataclass(frozen=True, kw_only=True)
class Depth(Message):
    """An order book: (price, volume) levels, best first."""

    symbol: str
    bids: tuple[tuple[Decimal, Decimal], ...] = ()
    asks: tuple[tuple[Decimal, Decimal], ...] = ()
    levels: int = 0
    update_time: datetime | None = None

    @property
    def topic(self) -> str:
        return f"{self.channel}:{self.symbol}"


@dataclass(frozen=True, kw_only=True)
class OrderUpdate(Message):
    """An order's state, with the seed's keys typed (others stay in ``data``)."""

    order_id: str | None = None
    symbol: str | None = None
    side: str | None = None
    status: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    filled_quantity: Decimal | None = None
    filled_price: Decimal | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class PositionUpdate(Message):
    symbol: str | None = None
    side: str | None = None
    quantity: Decimal | None = None
    avg_price: Decimal | None = None
    market_value: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class AccountUpdate(Message):
    total_assets: Decimal | None = None
    available_cash: Decimal | None = None
    frozen_cash: Decimal | None = None
    market_value: Decimal | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Notification(Message):
    """A risk alert, a system notice or a notification of a published type.
    ``broadcast`` marks a notice of the stream every user shares."""

    broadcast: bool = False
    level: str | None = None
    title: str | None = None
    message: str | None = None
    symbol: str | None = None

    @property
    def topic(self) -> str:
        return "notifications:*" if self.broadcast else self.channel


@dataclass(frozen=True, kw_only=True)
class StrategySignal(Message):
    strategy_id: str
    strategy_name: str | None = None
    symbol: str | None = None
    signal: str | None = None
    price: Decimal | None = None
    quantity: Decimal | None = None
    confidence: Decimal | None = None
    reason: str | None = None

    @property
    def topic(self) -> str:
        return f"{self.channel}:{self.strategy_id}"


_TICK_TIME_KEYS = {"update_time"}


def _envelope(m: Mapping[str, Any]) -> dict[str, Any]:
    data = m.get("data")
    seq = m.get("sequence")
    return {
        "type": str(m.get("type", "")),
        "channel": str(m.get("channel", "")),
        "data": data if isinstance(data, dict) else {},
        "timestamp": time_or_none(m.get("timestamp")),
        "sequence": int(seq) if isinstance(seq, (int, Decimal)) and not isinstance(seq, bool) else None,
        "epoch": _str_or_none(m.get("epoch")),
        "snapshot": m.get("snapshot") is True,
    }


def _levels(v: Any) -> tuple[tuple[Decimal, Decimal], ...]:
    out = []
    for lv in v if isinstance(v, list) else ():
        if isinstance(lv, list) and len(lv) >= 2:
            p, q = decimal_or_none(lv[0]), decimal_or_none(lv[1])
            if p is not None and q is not None:
                out.append((p, q))
    return tuple(out)


_PRIVATE_TYPES: dict[str, tuple[type[Message], set[str], set[str]]] = {
    Type.ORDER_UPDATE: (OrderUpdate, {"order_id", "symbol", "side", "status"},
                        {"quantity", "price", "filled_quantity", "filled_price"}),
    Type.POSITION_UPDATE: (PositionUpdate, {"symbol", "side"},
                           {"quantity", "avg_price", "market_value", "unrealized_pnl"}),
    Type.ACCOUNT_UPDATE: (AccountUpdate, set(),
                          {"total_assets", "available_cash", "frozen_cash", "market_value"}),
}


def parse(m: Mapping[str, Any]) -> Message:
    """The typed form of a decoded pushed message. Unknown push types come
    back as a plain :class:`Message`, so a newer server never breaks a client."""
    env = _envelope(m)
    d = env["data"]
    t = env["type"]
    if t == Type.MARKET_DATA:
        vals: dict[str, Any] = {}
        for k in TICK_FIELDS:
            if k in d:
                vals[k] = time_or_none(d[k]) if k in _TICK_TIME_KEYS else decimal_or_none(d[k])
        return Tick(symbol=str(m.get("symbol", "")), **env, **vals)
    if t == Type.KLINE:
        ch = env["channel"]
        return Kline(
            symbol=str(m.get("symbol", "")),
            interval=ch[len("kline_"):] if ch.startswith("kline_") else ch,
            open=decimal_or_none(d.get("open")), high=decimal_or_none(d.get("high")),
            low=decimal_or_none(d.get("low")), close=decimal_or_none(d.get("close")),
            volume=decimal_or_none(d.get("volume")), turnover=decimal_or_none(d.get("turnover")),
            start_time=time_or_none(d.get("start_time")), end_time=time_or_none(d.get("end_time")),
            closed=d.get("closed") is True, partial=d.get("partial") is True, **env)
    if t == Type.DEPTH:
        lv = d.get("levels")
        return Depth(symbol=str(m.get("symbol", "")), bids=_levels(d.get("bids")), asks=_levels(d.get("asks")),
                     levels=int(lv) if isinstance(lv, (int, Decimal)) else 0,
                     update_time=time_or_none(d.get("update_time")), **env)
    if t in _PRIVATE_TYPES:
        cls, strs, decs = _PRIVATE_TYPES[t]
        vals = {k: _str_or_none(d.get(k)) for k in strs}
        vals.update({k: decimal_or_none(d.get(k)) for k in decs})
        return cls(updated_at=time_or_none(d.get("updated_at")), **vals, **env)  # type: ignore[call-arg]
    if t == Type.STRATEGY_SIGNAL or env["channel"] == "signals":
        return StrategySignal(
            strategy_id=str(m.get("strategy_id") or d.get("strategy_id") or ""),
            strategy_name=_str_or_none(d.get("strategy_name")), symbol=_str_or_none(d.get("symbol")),
            signal=_str_or_none(d.get("signal")), price=decimal_or_none(d.get("price")),
            quantity=decimal_or_none(d.get("quantity")), confidence=decimal_or_none(d.get("confidence")),
            reason=_str_or_none(d.get("reason")), **env)
    if env["channel"] == CHANNELS["notifications"].push:
        return Notification(broadcast=m.get("broadcast") is True, level=_str_or_none(d.get("level")),
                            title=_str_or_none(d.get("title")), message=_str_or_none(d.get("message")),
                            symbol=_str_or_none(d.get("symbol")), **env)
    return Message(**env)
