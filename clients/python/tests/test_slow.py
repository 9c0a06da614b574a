"""A strategy that stalls in its own code: the server closes it as a slow
consumer (4008); it reconnects and resumes, and nothing is lost or doubled."""

from __future__ import annotations

import asyncio

import marketcast
from conftest import poll

PAD = "x" * 2000  # ~2 KB a message: the backlog passes the budget in a few MB


async def test_a_stalled_handler_is_closed_4008_then_resumes_with_nothing_lost(make_server):
    srv = make_server(config="delivery:\n  max_pending_bytes: 65536\n")
    release = asyncio.Event()
    seqs: list[int] = []
    closes: list[marketcast.Closed] = []
    resumed: list[marketcast.Resume] = []
    failed: list[marketcast.Resume] = []
    flow: list[bool | None] = []

    async def handle(order: marketcast.OrderUpdate) -> None:
        await release.wait()  # the strategy is busy elsewhere
        seqs.append(order.sequence)

    # A small client buffer, so the stall reaches the server soon whether or
    # not the server knows flow control.
    c = marketcast.Client(srv.url, token=srv.token("slow"), initial_delay=0.05, max_delay=0.5, max_buffered=64)
    c.on("order_update", handle)
    c.on("close", lambda cl: (closes.append(cl), flow.append(c.flow_control_active)))
    c.on("resumed", resumed.append)
    c.on("resume_failed", failed.append)
    published = 0
    try:
        await c.connect()
        await c.subscribe("orders")
        pub = srv.publisher()
        for _ in range(60):  # bounded: ~12 MB at most, within history (16 MiB, 10,000 messages)
            batch = [marketcast.order_update("slow", {"order_id": f"O{published + i + 1}", "pad": PAD})
                     for i in range(100)]
            await asyncio.to_thread(pub.publish, batch)
            published += len(batch)
            if srv.stats()["slow_consumer_closes"] > 0:
                break
        assert srv.stats()["slow_consumer_closes"] == 1, "the server never closed the stalled client"
        release.set()
        await poll(lambda: len(seqs) >= published, f"all {published} orders", timeout=120)
        await poll(lambda: resumed, "the resume")
        assert seqs == list(range(1, published + 1)), "every order once, in order"
        assert failed == []
        assert all(r.recovered for r in resumed)
        # A server that knows flow control writes its 4008 at once; one that
        # does not is stuck behind the full socket and drops the connection
        # (1006) once its write timeout passes.
        assert closes[0].code in (marketcast.Close.SLOW_CONSUMER, marketcast.Close.ABNORMAL)
        if flow and flow[0]:
            assert closes[0].code == marketcast.Close.SLOW_CONSUMER
    finally:
        await c.close()


async def test_a_strategy_taking_10ms_a_message_sees_fresh_prices(make_server):
    """The simulator at 20 ticks/s on each of 40 symbols (800 a second); the
    strategy's handler takes 10 ms of CPU a message (100 a second, the event
    loop blocked meanwhile). With flow control the server keeps the newest
    tick per symbol while the strategy is busy, so after 25 s the newest
    tick it handled is still less than a second old, never a backlog."""
    import time
    from datetime import datetime, timezone

    import pytest

    srv = make_server(rate=20, symbol_count=40)
    handled: list[marketcast.Tick] = []

    def strategy(t: marketcast.Tick) -> None:
        time.sleep(0.010)  # a CPU-bound strategy: nothing else runs meanwhile
        handled.append(t)

    c = marketcast.Client(srv.url, token=srv.token("quant"))
    c.on("market_data", strategy)
    try:
        await c.connect()
        symbols = await asyncio.to_thread(_symbols, srv.base)
        assert len(symbols) == 40
        await c.subscribe("market_data", symbols=symbols, fields=["last_price"])
        if not c.flow_control_active:
            pytest.skip("this server does not support flow control yet (the slow branch brings it)")
        start = time.monotonic()
        await poll(lambda: time.monotonic() - start >= 25, "25 s of ticks", timeout=120, interval=0.5)
        newest = max(t.timestamp for t in handled[-50:])
        age = (datetime.now(timezone.utc) - newest).total_seconds()
        assert age < 1.0, f"the newest tick handled is {age:.1f} s old after {len(handled)} handled"
    finally:
        await c.close()


def _symbols(base: str) -> list[str]:
    import json
    import urllib.request
    with urllib.request.urlopen(base + "/api/v1/symbols", timeout=10) as r:
        return json.loads(r.read())["symbols"]


async def test_flow_control_falls_back_with_one_log_line_on_a_server_without_it(server, caplog):
    """A server that does not know credit answers it with an error: the
    client says so once for the connection and goes on without flow control
    (data flows as before); a server that knows it answers nothing."""
    import logging
    caplog.set_level(logging.WARNING, logger="marketcast")
    async with marketcast.Client(server.url, token=server.token("fc")) as c:
        ticks: list[marketcast.Tick] = []
        c.on("market_data", ticks.append)
        await c.subscribe("market_data", symbols=["SHFE.rb2405"])  # answered after the credit: its verdict is in
        await poll(lambda: len(ticks) >= 3, "ticks")
        lines = [r.getMessage() for r in caplog.records if "flow control" in r.getMessage()]
        if c.flow_control_active:
            assert lines == []
        else:
            assert c.flow_control_active is False
            assert len(lines) == 1 and "UNKNOWN_TYPE" in lines[0], lines
