"""What needs no server: the names, the credit window, typed messages."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from datetime import datetime, timezone
from decimal import Decimal

import marketcast
from conftest import BIN, ROOT, SECRET
from marketcast import flow, protocol
from marketcast.messages import parse, time_or_none


def _js_object(src: str, name: str) -> dict[str, str]:
    body = re.search(r"export const %s = Object\.freeze\(\{(.*?)\n\}\);" % name, src, re.S).group(1)
    return dict(re.findall(r"(\w+): '?([\w:]+)'?", body))


def test_names_match_the_generated_javascript_protocol():
    """clients/js/protocol.js is generated from the Go package protocol; the
    Python names must say the same."""
    src = (ROOT / "clients" / "js" / "protocol.js").read_text()
    rows = re.findall(r"  (\w+): Object\.freeze\(\{ push: '(\w+)', type: '(\w+)', kind: '(\w+)', "
                      r"snapshot: (true|false), reliable: (true|false) \}\)", src)
    channels = {r[0]: r[1:] for r in rows}
    assert channels, "no channels found in protocol.js"
    mine = {k: (c.push, c.type, c.kind, str(c.snapshot).lower(), str(c.reliable).lower())
            for k, c in protocol.CHANNELS.items()}
    assert mine == channels
    for js_name, cls, extra in [("REQUEST", protocol.Request, {"CREDIT"}), ("ANSWER", protocol.Answer, set()),
                                ("TYPE", protocol.Type, set()), ("PERMISSION", protocol.Permission, set()),
                                ("ERROR", protocol.ErrorCode, set()), ("CLOSE", protocol.Close, {"ABNORMAL"})]:
        js = _js_object(src, js_name)
        py = {k: str(v) for k, v in vars(cls).items() if k.isupper()}
        assert {k: v for k, v in py.items() if k in js} == js, js_name
        # What Python has beyond: flow control's request (until the server's
        # protocol package names it) and the close code of a dropped connection.
        assert set(py) - set(js) <= extra, js_name
    fields = re.search(r"TICK_FIELDS = Object\.freeze\(\[(.*?)\]\)", src).group(1)
    assert list(protocol.TICK_FIELDS) == re.findall(r"'(\w+)'", fields)
    assert dict(protocol.FIELD_ALIASES) == dict(re.findall(r"(\w+): '(\w+)'", re.search(
        r"FIELD_ALIASES = Object\.freeze\(\{(.*?)\}\)", src).group(1)))
    assert protocol.BROADCAST_ID == re.search(r"BROADCAST_ID = '(.)'", src).group(1)


def test_credit_grants_follow_the_measured_handling_time():
    w = flow.CreditWindow()
    assert w.open() == 32
    # Fast handlers: the window is the largest; the first handled message
    # tops the 31 outstanding up to it, then nothing until half is handled.
    grants = []
    for _ in range(600):
        w.measure(0.0001)
        grants.append(w.handled_one())
    assert grants[0] == 1000 - 31 and grants[1:500] == [0] * 499 and grants[500] == 500
    # A handler that takes 10 ms: about 250 ms of work a window.
    for _ in range(200):
        w.measure(0.010)
    assert w.size() == 25
    # A very slow one still gets the minimum; the window always moves.
    for _ in range(200):
        w.measure(1.0)
    assert w.size() == 8
    # A new connection starts at the initial grant, keeping the measurement,
    # and tops up to the window once half of it is outstanding.
    assert w.open() == 32 and w.size() == 8
    n, handled = 0, 0
    while not n:
        n = w.handled_one()
        handled += 1
    assert handled == 28 and n == 4
    # What is outstanding never passes the window again.
    for _ in range(1000):
        w.handled_one()
        assert w.granted - w.handled <= 8


def test_typed_messages_keep_decimals_exact_and_every_key():
    raw = json.dumps({"type": "market_data", "channel": "tick", "symbol": "SHFE.rb2405", "sequence": 7,
                      "timestamp": "2026-12-04T08:38:18.791Z",
                      "data": {"last_price": "4000.10", "volume": "1000", "update_time": "2026-12-04T08:38:18.500Z",
                               "my_key": "x"}})
    t = parse(marketcast.messages.loads(raw))
    assert isinstance(t, marketcast.Tick)
    assert t.last_price == Decimal("4000.10") and str(t.last_price) == "4000.10"
    assert t.update_time == datetime(2026, 12, 4, 8, 38, 18, 500000, tzinfo=timezone.utc)
    assert t.data["my_key"] == "x" and t.bid_price is None and t.topic == "tick:SHFE.rb2405"
    sig = parse(marketcast.messages.loads('{"type":"strategy_signal","channel":"signals","strategy_id":"S1",'
                                         '"data":{"confidence":0.85,"price":"bad"},"sequence":1,"epoch":"E"}'))
    assert isinstance(sig, marketcast.StrategySignal)
    assert sig.confidence == Decimal("0.85") and sig.price is None and sig.data["price"] == "bad"
    n = parse({"type": "margin_call", "channel": "notifications", "broadcast": True, "data": {"title": "t"},
               "sequence": 2, "epoch": "B"})
    assert isinstance(n, marketcast.Notification) and n.broadcast and n.topic == "notifications:*"
    assert type(parse({"type": "something_new", "channel": "new", "data": {}})) is marketcast.Message
    # A zone-less time is not guessed at.
    assert time_or_none("2026-12-04T08:38:18").tzinfo is None


def test_the_token_helper_signs_what_the_server_accepts_as_the_binary_does(server):
    mine = marketcast.sign_token(SECRET, "7", ["publish"], 60)
    claims = json.loads(base64.urlsafe_b64decode(mine.split(".")[1] + "=="))
    assert claims["sub"] == "7" and claims["permissions"] == ["publish"] and claims["exp"] - claims["iat"] == 60
    theirs = subprocess.run([BIN, "token", "-user", "7", "-permissions", "publish"], capture_output=True, text=True,
                            env={**os.environ, "MARKETCAST_JWT_SECRET": SECRET, "MARKETCAST_DEV_MODE": "false"},
                            check=True).stdout.strip()
    for tok in (mine, theirs):
        assert marketcast.Publisher(server.base, token=tok).tick("X.tok", {"last_price": "1"}).topic == "tick:X.tok"
