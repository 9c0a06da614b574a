"""marketcast: an asyncio client and a publisher for the marketcast server.

>>> import marketcast
>>> client = marketcast.Client("ws://localhost:8000/ws", token="…")     # receive
>>> publisher = marketcast.Publisher("http://localhost:8000", token="…")  # publish

See the package README for a strategy loop, a Celery task and a notebook.
"""

from .backoff import backoff_delay
from .client import (AuthInfo, Client, Closed, Duplicate, Gap, MessageStream, Position, Reconnecting, Resume,
                     topic_key)
from .errors import MarketcastError
from .messages import (AccountUpdate, Depth, Kline, Message, Notification, OrderUpdate, PositionUpdate,
                       StrategySignal, Tick)
from .protocol import CHANNELS, RELIABLE_CHANNELS, Close, ErrorCode, Permission, Type
from .publisher import (AsyncPublisher, PublishError, Publisher, PublishRejected, PublishResult,
                        PublishUnauthorized, PublishUnavailable, account_update, depth, kline, new_idempotency_key,
                        notification, order_update, position_update, strategy_signal, tick)
from .tokens import dev_token, sign_token

__version__ = "0.1.0"

__all__ = [
    "AccountUpdate", "AsyncPublisher", "AuthInfo", "CHANNELS", "Client", "Close", "Closed", "Depth", "Duplicate",
    "ErrorCode", "Gap", "Kline", "MarketcastError", "Message", "MessageStream", "Notification", "OrderUpdate",
    "Permission", "Position", "PositionUpdate", "PublishError", "PublishRejected", "PublishResult",
    "PublishUnauthorized", "PublishUnavailable", "Publisher", "RELIABLE_CHANNELS", "Reconnecting", "Resume",
    "StrategySignal", "Tick", "Type", "account_update", "backoff_delay", "depth", "dev_token", "kline",
    "new_idempotency_key", "notification", "order_update", "position_update", "sign_token", "strategy_signal",
    "tick", "topic_key",
]
