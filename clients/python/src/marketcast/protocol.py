"""The wire vocabulary of marketcast (docs/PROTOCOL.md).

These names mirror the Go package ``protocol``, as the JavaScript client's
generated ``clients/js/protocol.js`` does; ``tests/test_protocol_names.py``
checks that the two stay equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Mapping


@dataclass(frozen=True)
class ChannelInfo:
    """What a subscribe channel pushes: the push channel and type, its kind
    (market, private, signals), whether it sends a snapshot at subscribe
    time, and whether it is reliable (numbered, never conflated, resumable
    with ``since`` and ``epoch``)."""

    push: str
    type: str
    kind: str
    snapshot: bool
    reliable: bool


def _market(push: str, type_: str) -> ChannelInfo:
    return ChannelInfo(push, type_, "market", True, False)


CHANNELS: Final[Mapping[str, ChannelInfo]] = {
    "account": ChannelInfo("account", "account_update", "private", True, True),
    "depth": _market("depth", "depth"),
    "kline_15m": _market("kline_15m", "kline"),
    "kline_1d": _market("kline_1d", "kline"),
    "kline_1h": _market("kline_1h", "kline"),
    "kline_1m": _market("kline_1m", "kline"),
    "kline_30m": _market("kline_30m", "kline"),
    "kline_5m": _market("kline_5m", "kline"),
    "market_data": _market("tick", "market_data"),
    "notifications": ChannelInfo("notifications", "risk_alert", "private", False, True),
    "orders": ChannelInfo("orders", "order_update", "private", False, True),
    "positions": ChannelInfo("positions", "position_update", "private", True, True),
    "signals": ChannelInfo("signals", "strategy_signal", "signals", False, True),
    "strategy_signals": ChannelInfo("signals", "strategy_signal", "signals", False, True),
    "tick": _market("tick", "market_data"),
}

#: Channels whose messages are never conflated: resumable with since and epoch.
RELIABLE_CHANNELS: Final = frozenset(name for name, c in CHANNELS.items() if c.reliable)

#: Kline channels by their interval name ("1m" … "1d").
KLINE_INTERVALS: Final = ("1m", "5m", "15m", "30m", "1h", "1d")


class Request:
    AUTH: Final = "auth"
    SUBSCRIBE: Final = "subscribe"
    UNSUBSCRIBE: Final = "unsubscribe"
    PING: Final = "ping"
    #: Flow control (the brief's credit protocol): grants N more pushed
    #: messages. Servers that predate it answer UNKNOWN_TYPE.
    CREDIT: Final = "credit"


class Answer:
    AUTH: Final = "auth_response"
    SUBSCRIBE: Final = "subscribe_response"
    UNSUBSCRIBE: Final = "unsubscribe_response"
    PONG: Final = "pong"
    ERROR: Final = "error"


class Type:
    """Push types."""

    MARKET_DATA: Final = "market_data"
    DEPTH: Final = "depth"
    KLINE: Final = "kline"
    ORDER_UPDATE: Final = "order_update"
    POSITION_UPDATE: Final = "position_update"
    ACCOUNT_UPDATE: Final = "account_update"
    RISK_ALERT: Final = "risk_alert"
    SYSTEM_NOTICE: Final = "system_notice"
    STRATEGY_SIGNAL: Final = "strategy_signal"


class Permission:
    READ_MARKET_DATA: Final = "read:market_data"
    READ_SIGNALS: Final = "read:signals"
    PUBLISH: Final = "publish"


class ErrorCode:
    INVALID_JSON: Final = "INVALID_JSON"
    INVALID_MESSAGE: Final = "INVALID_MESSAGE"
    UNKNOWN_TYPE: Final = "UNKNOWN_TYPE"
    UNKNOWN_CHANNEL: Final = "UNKNOWN_CHANNEL"
    UNKNOWN_SYMBOL: Final = "UNKNOWN_SYMBOL"
    UNKNOWN_FIELD: Final = "UNKNOWN_FIELD"
    NOT_AUTHENTICATED: Final = "NOT_AUTHENTICATED"
    FORBIDDEN: Final = "FORBIDDEN"
    RATE_LIMITED: Final = "RATE_LIMITED"
    TOO_MANY_SUBSCRIPTIONS: Final = "TOO_MANY_SUBSCRIPTIONS"
    AUTH_FAILED: Final = "AUTH_FAILED"
    TOKEN_EXPIRED: Final = "TOKEN_EXPIRED"
    UNAVAILABLE: Final = "UNAVAILABLE"
    INTERNAL: Final = "INTERNAL"
    INVALID_REQUEST: Final = "INVALID_REQUEST"
    OUTCOME_UNKNOWN: Final = "OUTCOME_UNKNOWN"


class Close:
    """WebSocket close codes (1006 is what a connection that ended without a
    close frame reports)."""

    NORMAL: Final = 1000
    GOING_AWAY: Final = 1001
    PROTOCOL: Final = 1002
    UNSUPPORTED: Final = 1003
    POLICY: Final = 1008
    ABNORMAL: Final = 1006
    TOO_LARGE: Final = 1009
    AUTH_FAILED: Final = 4001
    TOKEN_EXPIRED: Final = 4002
    SLOW_CONSUMER: Final = 4008
    RESUME_REQUIRED: Final = 4009
    RATE_LIMITED: Final = 4029


#: Tick data keys a subscription's ``fields`` may select.
TICK_FIELDS: Final = (
    "last_price", "bid_price", "ask_price", "bid_volume", "ask_volume", "volume", "turnover",
    "open_interest", "change", "change_percent", "update_time", "open", "high", "low",
    "pre_settlement", "upper_limit", "lower_limit", "average_price",
)

#: Short names of tick keys.
FIELD_ALIASES: Final[Mapping[str, str]] = {"ask": "ask_price", "bid": "bid_price"}

#: The identity of the broadcast notifications topic.
BROADCAST_ID: Final = "*"

#: The sequence-tracking key of the broadcast notifications stream.
BROADCAST_KEY: Final = f"notifications:{BROADCAST_ID}"


def push_channel(channel: str) -> str:
    """The channel a subscribe channel's messages arrive on."""
    info = CHANNELS.get(channel)
    return info.push if info else channel
