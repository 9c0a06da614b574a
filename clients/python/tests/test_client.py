"""The asyncio client against the real binary."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import marketcast
from conftest import Proxy, poll


async def test_authenticates_and_reports_the_user(server):
    async with marketcast.Client(server.url, token=server.token("7")) as c:
        assert c.user is not None
        assert c.user.user_id == "7"
        assert "read:market_data" in c.user.permissions
        assert c.user.expires_at is not None
        assert c.state == "open"
    assert c.state == "closed"


async def test_a_bad_token_raises_the_server_code_and_does_not_reconnect(server):
    c = marketcast.Client(server.url, token="not-a-token", initial_delay=0.05)
    reconnecting = []
    c.on("reconnecting", reconnecting.append)
    with pytest.raises(marketcast.MarketcastError) as err:
        await c.connect()
    assert err.value.code == "AUTH_FAILED"
    await c.wait_closed()
    assert reconnecting == []
    assert c.state == "closed"
    await c.close()


async def test_market_data_typed_with_projection(server):
    async with marketcast.Client(server.url, token=server.token("1")) as c:
        ticks = c.messages("market_data")
        res = await c.subscribe("market_data", symbols=["SHFE.rb2405"], fields=["last_price", "bid", "ask"])
        assert res["symbols"] == ["SHFE.rb2405"]
        assert res["fields"] == ["ask_price", "bid_price", "last_price"]
        got: list[marketcast.Tick] = []
        async for t in ticks:
            got.append(t)
            if sum(1 for g in got if not g.snapshot) >= 3:
                break
        ticks.close()
        assert got[0].snapshot
        for t in got:
            assert isinstance(t, marketcast.Tick)
            assert t.symbol == "SHFE.rb2405" and t.channel == "tick"
            assert sorted(t.data) == ["ask_price", "bid_price", "last_price"]
            assert isinstance(t.last_price, Decimal) and isinstance(t.bid_price, Decimal)
            assert t.last_price == Decimal(t.data["last_price"])  # exact: never through a float
            assert t.volume is None and t.open_interest is None  # not asked for
            assert t.timestamp is not None and t.timestamp.tzinfo is not None
        await c.unsubscribe("market_data", symbols=["SHFE.rb2405"])


async def test_callbacks_depth_and_kline_history(server):
    base = "2026-11-27T01:%02d:00Z"
    bar = lambda i, closed: {"open": "10.0", "high": "11.0", "low": "9.0", "close": "10.5", "volume": "3",  # noqa: E731
                             "turnover": "31.5", "start_time": base % i, "end_time": base % (i + 1), "closed": closed}
    await server.publish(*[marketcast.kline("1m", "X.pychart", bar(i, True)) for i in range(3)])
    await server.publish(marketcast.kline("1m", "X.pychart", bar(3, False)))
    async with marketcast.Client(server.url, token=server.token("1")) as c:
        bars: list[marketcast.Kline] = []
        books: list[marketcast.Depth] = []
        c.on("kline", bars.append)
        c.on("depth", books.append)
        await c.subscribe("kline_1m", symbols=["X.pychart"], history=2)
        await c.subscribe("depth", symbols=["SHFE.rb2405"])
        await poll(lambda: len(bars) >= 3 and books, "bars and a book")
        assert [(b.start_time.minute, b.closed, b.snapshot) for b in bars[:3]] == [(1, True, True), (2, True, True),
                                                                                    (3, False, True)]
        assert bars[0].interval == "1m" and bars[0].close == Decimal("10.5")
        assert books[0].bids and isinstance(books[0].bids[0][0], Decimal)
        assert books[0].bids[0][0] < books[0].asks[0][0]


async def test_server_errors_raise_with_their_code(server):
    async with marketcast.Client(server.url, token=server.token("1")) as c:
        for channel, kw, code in [("market_data", {"symbols": ["NOPE.x1"]}, "UNKNOWN_SYMBOL"),
                                  ("kline_2m", {"symbols": ["SHFE.rb2405"]}, "UNKNOWN_CHANNEL"),
                                  ("orders", {"user_id": "2"}, "FORBIDDEN")]:
            with pytest.raises(marketcast.MarketcastError) as err:
                await c.subscribe(channel, **kw)
            assert err.value.code == code


async def test_private_resume_after_a_dropped_connection_loses_nothing(server):
    """The network drops (a proxy cuts the TCP connection, no close frame):
    the client reconnects, resumes orders and the broadcast stream with since
    and epoch, and gets what was published meanwhile, once each, in order."""
    proxy = await Proxy(server.port).start()
    c = marketcast.Client(proxy.url, token=server.token("u-drop"), initial_delay=0.05, max_delay=0.3)
    orders: list[str] = []
    notices: list[str] = []
    resumed: list[marketcast.Resume] = []
    failed: list[marketcast.Resume] = []
    closes: list[marketcast.Closed] = []
    c.on("order_update", lambda o: orders.append(f"{o.sequence}:{o.order_id}"))
    c.on("notifications", lambda n: notices.append(f"{'all' if n.broadcast else 'me'}:{n.sequence}:{n.title}"))
    c.on("resumed", resumed.append)
    c.on("resume_failed", failed.append)
    c.on("close", closes.append)
    try:
        await c.connect()
        await c.subscribe("orders")
        await c.subscribe("notifications")
        await server.publish(marketcast.order_update("u-drop", {"order_id": "A1"}))
        await server.publish(marketcast.notification({"title": "n1"}))
        await poll(lambda: len(orders) == 1 and any(n.startswith("all") for n in notices), "first messages")
        broadcast_seen = len([n for n in notices if n.startswith("all")])
        proxy.cut()
        await poll(lambda: closes, "the close")
        assert closes[0].code == marketcast.Close.ABNORMAL
        for i in (2, 3, 4):
            await server.publish(marketcast.order_update("u-drop", {"order_id": f"A{i}"}))
        await server.publish(marketcast.notification({"title": "n2"}))
        await poll(lambda: {r.topic for r in resumed} >= {"orders", "notifications:*"}, "resumed")
        await poll(lambda: len(orders) == 4, "the replay")
        await server.publish(marketcast.order_update("u-drop", {"order_id": "A5"}))
        await poll(lambda: len(orders) == 5, "live after the replay")
        assert orders == ["1:A1", "2:A2", "3:A3", "4:A4", "5:A5"]
        everyone = [n.split(":", 1)[1] for n in notices if n.startswith("all")]
        assert everyone[broadcast_seen - 1:] == [everyone[broadcast_seen - 1], f"{int(everyone[broadcast_seen - 1].split(':')[0]) + 1}:n2"]
        assert all(r.recovered for r in resumed)
        assert failed == []
    finally:
        await c.close()
        await proxy.close()


async def test_a_silent_network_is_found_by_the_heartbeat_and_the_resume_loses_nothing(server):
    """The path to the server goes dead without a FIN or RST (a NAT entry
    expired, a cable pulled): no pong comes, the client drops the connection
    itself, reconnects and resumes."""
    proxy = await Proxy(server.port).start()
    c = marketcast.Client(proxy.url, token=server.token("u-silent"), heartbeat_interval=0.5, heartbeat_timeout=1,
                          initial_delay=0.05, max_delay=0.3)
    orders: list[str] = []
    closes: list[marketcast.Closed] = []
    resumed: list[marketcast.Resume] = []
    c.on("order_update", lambda o: orders.append(o.order_id))
    c.on("close", closes.append)
    c.on("resumed", resumed.append)
    try:
        await c.connect()
        await c.subscribe("orders")
        await server.publish(marketcast.order_update("u-silent", {"order_id": "S1"}))
        await poll(lambda: orders, "the first order")
        proxy.silence()
        await server.publish(marketcast.order_update("u-silent", {"order_id": "S2"}))
        await poll(lambda: closes, "the heartbeat's verdict")
        assert closes[0].code == marketcast.Close.ABNORMAL
        await poll(lambda: resumed, "the resume")
        await poll(lambda: len(orders) == 2, "the order sent into the silence")
        assert orders == ["S1", "S2"] and resumed[0].recovered
    finally:
        await c.close()
        await proxy.close()


async def test_private_resume_after_a_server_restart_is_not_recovered(make_server):
    """SIGTERM drains (1001); the restarted server has no history: the client
    reconnects, resubscribes, says resume_failed (a new epoch) and follows
    the new run; market data flows again."""
    srv = make_server()
    port = srv.port
    c = marketcast.Client(srv.url, token=srv.token("5"), initial_delay=0.05, max_delay=0.5)
    orders: list[marketcast.OrderUpdate] = []
    ticks: list[marketcast.Tick] = []
    failed: list[marketcast.Resume] = []
    closes: list[marketcast.Closed] = []
    reconnecting: list[marketcast.Reconnecting] = []
    c.on("order_update", orders.append)
    c.on("market_data", ticks.append)
    c.on("resume_failed", failed.append)
    c.on("close", closes.append)
    c.on("reconnecting", reconnecting.append)
    try:
        await c.connect()
        await c.subscribe("market_data", symbols=["SHFE.hc2405"])
        await c.subscribe("orders")
        await srv.publish(marketcast.order_update("5", {"order_id": "before"}))
        await poll(lambda: orders, "the first order")
        first_epoch = orders[0].epoch
        await srv.astop()
        await poll(lambda: closes, "the close")
        assert closes[0].code == marketcast.Close.GOING_AWAY
        await poll(lambda: reconnecting, "reconnecting")
        srv2 = make_server(port=port)
        await poll(lambda: failed, "resume_failed")
        rf = failed[0]
        assert (rf.channel, rf.since, rf.epoch, rf.reason, rf.recovered) == ("orders", 1, first_epoch, "epoch", False)
        assert rf.current_epoch != first_epoch
        n = len(ticks)
        await poll(lambda: len(ticks) > n + 1, "ticks after the restart")
        await srv2.publish(marketcast.order_update("5", {"order_id": "after"}))
        await poll(lambda: len(orders) == 2, "an order of the new run")
        # The new run's first message starts its real epoch (the answer's was
        # a placeholder: the topic was empty), and tracking follows it.
        assert orders[1].order_id == "after" and orders[1].sequence == 1 and orders[1].epoch != first_epoch
        assert c.position("orders") == marketcast.Position(1, orders[1].epoch)
        assert len(failed) == 1
    finally:
        await c.close()


async def test_refreshes_the_token_before_it_expires_and_keeps_the_connection(server):
    c = marketcast.Client(server.url, token_provider=lambda: server.token("9", ttl=4), refresh_before_expiry=3)
    auths: list[marketcast.AuthInfo] = []
    closes: list[marketcast.Closed] = []
    c.on("auth", auths.append)
    c.on("close", closes.append)
    try:
        await c.connect()
        await poll(lambda: len(auths) >= 3, "two refreshes")
        assert closes == []
        assert auths[-1].expires_at > auths[0].expires_at
    finally:
        await c.close()


async def test_an_expired_token_reconnects_with_a_fresh_one_and_resumes(server):
    """Without refresh the server closes with 4002; the client asks its
    provider again, reconnects and resumes: every order once, in order."""
    async def provider() -> str:
        return server.token("u42", ttl=2)

    c = marketcast.Client(server.url, token_provider=provider, refresh_before_expiry=-60, initial_delay=0.05,
                          max_delay=0.3)
    seqs: list[int] = []
    closes: list[marketcast.Closed] = []
    resumed: list[marketcast.Resume] = []
    c.on("order_update", lambda o: seqs.append(o.sequence))
    c.on("close", closes.append)
    c.on("resumed", resumed.append)
    try:
        await c.connect()
        await c.subscribe("orders")
        for i in range(1, 4):
            await server.publish(marketcast.order_update("u42", {"order_id": f"O{i}"}))
        await poll(lambda: closes, "the expiry")
        assert closes[0].code == marketcast.Close.TOKEN_EXPIRED
        for i in range(4, 7):
            await server.publish(marketcast.order_update("u42", {"order_id": f"O{i}"}))
        await poll(lambda: resumed, "the resume")
        assert resumed[0].since == 3
        await poll(lambda: len(seqs) >= 6, "the replay")
        assert seqs[:6] == [1, 2, 3, 4, 5, 6]
    finally:
        await c.close()


async def test_reconnect_attempts_follow_the_backoff_while_the_server_is_down():
    from conftest import free_port
    port = free_port()  # nothing listens there
    c = marketcast.Client(f"ws://127.0.0.1:{port}/ws", token="t", initial_delay=0.04, max_delay=0.2, max_attempts=5,
                          random=lambda: 1.0)
    delays: list[float] = []
    c.on("reconnecting", lambda r: delays.append(round(r.delay, 3)))
    with pytest.raises(marketcast.MarketcastError) as err:
        await c.connect()
    assert err.value.code == "RECONNECT_FAILED"
    assert delays == [0.04, 0.08, 0.16, 0.2, 0.2]
    await c.close()


async def test_iterating_the_client_and_a_dropped_stream_do_not_hold_up_the_others(server):
    async with marketcast.Client(server.url, token=server.token("1")) as c:
        seen: list[str] = []
        await c.subscribe("market_data", symbols=["SHFE.rb2405", "SHFE.hc2405"])
        async for msg in c:  # the snapshots waited for a consumer
            seen.append(msg.symbol)
            if len(seen) >= 2:
                break
        assert sorted(seen[:2]) == ["SHFE.hc2405", "SHFE.rb2405"]
        # The stream above was dropped unclosed; another consumer still gets
        # every message.
        later: list[marketcast.Message] = []
        c.on("market_data", later.append)
        await poll(lambda: len(later) >= 5, "ticks after the dropped stream")


def test_backoff_grows_exponentially_with_equal_jitter_and_a_cap():
    for n in range(10):
        base = min(2.0, 0.1 * 2 ** n)
        assert marketcast.backoff_delay(n, initial_delay=0.1, max_delay=2.0, random=lambda: 0.0) == pytest.approx(base / 2)
        assert marketcast.backoff_delay(n, initial_delay=0.1, max_delay=2.0, random=lambda: 1.0) == pytest.approx(base)
    assert len({marketcast.backoff_delay(4) for _ in range(50)}) > 25


def test_detects_gaps_duplicates_and_new_runs_on_private_topics_not_on_market_data():
    c = marketcast.Client("ws://unused")
    gaps, dups, runs = [], [], []
    c.on("gap", gaps.append)
    c.on("duplicate", dups.append)
    c.on("resume_failed", runs.append)
    order = lambda s, e="E1": {"type": "order_update", "channel": "orders", "data": {}, "sequence": s, "epoch": e}  # noqa: E731
    tick = lambda s: {"type": "market_data", "channel": "tick", "symbol": "X", "data": {}, "sequence": s}  # noqa: E731
    delivered = [c._track(order(s)) for s in (1, 2, 4, 4)]
    for s in (1, 5, 9):
        c._track(tick(s))
    assert delivered == [True, True, True, False]  # a duplicate is reported and not delivered twice
    assert gaps == [marketcast.Gap("orders", 3, 4)]
    assert dups == [marketcast.Duplicate("orders", 4, 4)]
    assert c.position("orders").sequence == 4 and c.position("tick:X").sequence == 9
    c._track(order(7, "E2"))  # a new run: what E1 still owed may be lost
    assert len(runs) == 1 and runs[0].reason == "epoch"
    assert c.position("orders") == marketcast.Position(7, "E2")
    assert len(gaps) == 1
    c._track({"type": "system_notice", "channel": "notifications", "broadcast": True, "data": {}, "sequence": 1, "epoch": "B"})
    c._track({"type": "risk_alert", "channel": "notifications", "data": {}, "sequence": 1, "epoch": "U"})
    assert c.position("notifications:*").sequence == 1 and c.position("notifications").sequence == 1


async def test_close_ends_streams_and_stops_every_task(server):
    before = asyncio.all_tasks()
    c = marketcast.Client(server.url, token=server.token("1"))
    await c.connect()
    stream = c.messages()
    await c.subscribe("market_data", symbols=["SHFE.rb2405"])
    got = []

    async def consume() -> None:
        async for m in stream:
            got.append(m)

    task = asyncio.ensure_future(consume())
    await poll(lambda: got, "a tick")
    await c.close()
    await asyncio.wait_for(task, 30)  # the stream ended
    assert c.state == "closed"
    assert asyncio.all_tasks() - before == set()


async def test_a_failing_token_provider_is_reported_and_retried_after_a_reconnect(server):
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("identity provider down")
        return server.token("tp", ttl=2)

    c = marketcast.Client(server.url, token_provider=provider, refresh_before_expiry=-60, initial_delay=0.05,
                          max_delay=0.2)
    errors: list[marketcast.MarketcastError] = []
    auths: list[marketcast.AuthInfo] = []
    c.on("error", errors.append)
    c.on("auth", auths.append)
    try:
        await c.connect()
        # The 2-second token expires (4002); the next provider call fails,
        # is reported, and the one after that connects again.
        await poll(lambda: len(auths) >= 2, "a connection after the failed provider call")
        assert [e.code for e in errors if e.code == "TOKEN_PROVIDER_FAILED"] == ["TOKEN_PROVIDER_FAILED"]
        assert "identity provider down" in str(errors[0])
    finally:
        await c.close()
