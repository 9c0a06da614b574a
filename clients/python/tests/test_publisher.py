"""The publisher against the real binary: batches, idempotency, errors."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from decimal import Decimal

import pytest

import marketcast
from conftest import BIN, Server, free_port, poll


async def test_a_batch_is_published_whole_and_each_message_says_where_it_landed(server):
    pub = server.publisher()
    async with marketcast.Client(server.url, token=server.token("b1")) as c:
        got: list[marketcast.Message] = []
        c.on("message", got.append)
        await c.subscribe("orders")
        await c.subscribe("positions")
        await c.subscribe("notifications")
        results = await asyncio.to_thread(pub.publish, [
            marketcast.order_update("b1", {"order_id": "ORD_1", "status": "FILLED", "price": Decimal("4000.0")}),
            marketcast.position_update("b1", {"symbol": "SHFE.rb2405", "quantity": "5.0", "avg_price": "3980.0"}),
            marketcast.notification({"level": "WARNING", "title": "持仓风险提醒"}, user_id="b1"),
            marketcast.tick("X.pypub", {"last_price": "10.5"}),
        ])
        assert [r.topic for r in results] == ["orders:b1", "positions:b1", "notifications:b1", "tick:X.pypub"]
        assert all(r.sequence for r in results)
        assert results[0].epoch and results[3].epoch is None  # market data has no epoch
        await poll(lambda: len(got) >= 3, "the three private messages")
        order = next(m for m in got if isinstance(m, marketcast.OrderUpdate))
        assert order.price == Decimal("4000.0") and order.data["price"] == "4000.0"  # a decimal string, exact
        assert any(isinstance(m, marketcast.PositionUpdate) and m.avg_price == Decimal("3980.0") for m in got)
        assert any(isinstance(m, marketcast.Notification) and m.title == "持仓风险提醒" for m in got)


async def test_a_retried_publish_with_the_same_key_is_stored_once(server):
    pub = server.publisher()
    async with marketcast.Client(server.url, token=server.token("idem")) as c:
        orders: list[marketcast.OrderUpdate] = []
        c.on("order_update", orders.append)
        await c.subscribe("orders")
        first = await asyncio.to_thread(pub.order_update, "idem", {"order_id": "A"}, idempotency_key="task-1")
        again = await asyncio.to_thread(pub.order_update, "idem", {"order_id": "A"}, idempotency_key="task-1")
        assert again == first
        batch = [marketcast.order_update("idem", {"order_id": o}) for o in ("B", "C")]
        r1 = await asyncio.to_thread(pub.publish, batch, idempotency_key="task-2")
        r2 = await asyncio.to_thread(pub.publish, batch, idempotency_key="task-2")
        assert r1 == r2
        last = await asyncio.to_thread(pub.order_update, "idem", {"order_id": "D"})  # a new key each call
        await poll(lambda: orders and orders[-1].order_id == "D", "the last order")
        assert [o.order_id for o in orders] == ["A", "B", "C", "D"]
        assert last.sequence == 4


def test_errors_say_what_to_do(server):
    pub = server.publisher()
    with pytest.raises(marketcast.PublishRejected) as err:
        pub.publish([marketcast.order_update("1", {"a": 1}), {"channel": "orders", "data": {"a": 2}}])
    e = err.value
    assert (e.status, e.code, e.retryable) == (400, "INVALID_MESSAGE", False)
    assert "message 1" in e.server_message and "user_id" in e.server_message
    assert "fix the message" in str(e)

    with pytest.raises(marketcast.PublishRejected) as err:
        pub.tick("X.nolast", {"volume": "1"})  # a tick needs last_price
    assert "last_price" in err.value.server_message

    with pytest.raises(marketcast.PublishRejected) as err:
        pub.publish([marketcast.order_update("1", {"pad": "x" * 60000}) for _ in range(80)])  # > 4 MiB
    assert err.value.status == 413

    with pytest.raises(marketcast.PublishUnauthorized) as err:
        marketcast.Publisher(server.base, token="not-a-token").order_update("1", {})
    assert err.value.status == 401 and not err.value.retryable

    reader = marketcast.Publisher(server.base, token=server.token("1"))  # no publish permission
    with pytest.raises(marketcast.PublishUnauthorized) as err:
        reader.order_update("1", {})
    assert err.value.status == 403 and "permission publish" in str(err.value)


def test_an_unreachable_server_is_retryable_and_keeps_the_key():
    pub = marketcast.Publisher(f"http://127.0.0.1:{free_port()}", token="t", retries=2, retry_delay=0.01)
    with pytest.raises(marketcast.PublishUnavailable) as err:
        pub.order_update("1", {"order_id": "X"}, idempotency_key="celery-task-7")
    assert err.value.retryable and err.value.idempotency_key == "celery-task-7"
    assert "retry later with the same idempotency key" in str(err.value)


async def test_the_async_publisher(server):
    pub = marketcast.AsyncPublisher(server.base, token=server.token("backend", ("publish",)))
    async with marketcast.Client(server.url, token=server.token("STR_1"), ) as c:
        sigs: list[marketcast.StrategySignal] = []
        c.on("strategy_signal", sigs.append)
        await c.subscribe("strategy_signals", strategy_id="STR_20231201_001")
        r = await pub.strategy_signal("STR_20231201_001", {"signal": "BUY", "price": "4000.0", "confidence": 0.85})
        assert r.topic == "signals:STR_20231201_001"
        await poll(lambda: sigs, "the signal")
        assert sigs[0].confidence == Decimal("0.85") and sigs[0].strategy_id == "STR_20231201_001"
        with pytest.raises(marketcast.PublishRejected):
            await pub.publish({"channel": "nope", "data": {}})


async def test_503_in_cluster_mode_when_nats_is_down_then_the_retry_publishes_once(make_server):
    """A node of a cluster whose NATS server went away answers 503 at once;
    the publisher says to retry, and the retry with the same key, once NATS
    is back, publishes once."""
    nats_port = free_port()
    store = None
    import tempfile
    store = tempfile.mkdtemp(prefix="mc-py-nats-")

    def start_nats() -> subprocess.Popen[bytes]:
        return subprocess.Popen([BIN, "nats", "-listen", f"127.0.0.1:{nats_port}", "-store", store],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def nats_listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", nats_port), timeout=1).close()
            return True
        except OSError:
            return False

    nats = start_nats()
    try:
        # A node exits when NATS is not there at its start.
        await poll(nats_listening, "NATS listening")
        srv: Server = make_server(env={"MARKETCAST_NATS_URL": f"nats://127.0.0.1:{nats_port}", "MARKETCAST_FEED": "none"})
        pub = srv.publisher(retries=0)
        ok = await asyncio.to_thread(pub.order_update, "c1", {"order_id": "before"})
        nats.terminate()
        nats.wait(30)
        with pytest.raises(marketcast.PublishUnavailable) as err:
            # The node notices the lost connection within moments; until then
            # a publish may still go out on the dying connection.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.to_thread(pub.order_update, "c1", {"order_id": "during"}, idempotency_key="k-during")
                await asyncio.sleep(0.05)
        e = err.value
        assert e.status == 503 and e.retryable and e.idempotency_key == "k-during"
        assert "NATS" in str(e) and "retry" in str(e)
        nats = start_nats()  # the same store: the streams come back
        retry = marketcast.Publisher(srv.base, token=srv.token("backend", ("publish",)), retries=50, retry_delay=0.1)
        r = await asyncio.to_thread(retry.order_update, "c1", {"order_id": "during"}, idempotency_key="k-during")
        again = await asyncio.to_thread(retry.order_update, "c1", {"order_id": "during"}, idempotency_key="k-during")
        assert r == again and r.sequence == ok.sequence + 1
    finally:
        nats.terminate()
        nats.wait(30)
        import shutil
        shutil.rmtree(store, ignore_errors=True)
