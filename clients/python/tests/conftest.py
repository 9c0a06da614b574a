"""Test helpers: the real marketcast binary on a free loopback port, tokens
signed with its secret, a TCP proxy whose connections a test can cut, and
a poll that waits with a generous deadline (never a timing assertion).

Tests written as ``async def`` run in a fresh event loop each (no plugin
needed: python3-pytest alone), under a hang guard.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE.parent / "src"))

import marketcast  # noqa: E402

BIN = os.environ.get("MARKETCAST_BIN") or str(ROOT / "bin" / "marketcast")
SECRET = "python-client-test-secret-0123456789"
DEV_SECRET = "marketcast-development-secret-do-not-use-in-production"
#: Each test's hang guard: a test that has not finished by then failed.
TEST_DEADLINE = float(os.environ.get("MARKETCAST_TEST_DEADLINE", "240"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _deadline_poll(pred: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


async def poll(pred: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.02) -> Any:
    """Waits until pred() is truthy (a generous deadline: a hang guard, not a
    measurement) and returns its value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if inspect.isawaitable(v):
            v = await v
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(interval)


class Server:
    """The real binary with a config of the test's own, on a free port."""

    def __init__(self, port: int | None = None, config: str = "", dev: bool = False, backfill: str = "0s",
                 rate: int = 20, symbol_count: int = 0, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.dev = dev
        self.config = config
        self.backfill = backfill
        self.rate = rate
        self.symbol_count = symbol_count
        self.extra_env = env or {}
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.secret = DEV_SECRET if dev else SECRET
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: str | None = None

    def start(self) -> Server:
        self.dir = tempfile.mkdtemp(prefix="mc-py-")
        cfg = Path(self.dir, "config.yaml")
        # No simulated past by default: a test starts with a quiet server. The
        # simulator is named: a production server runs no feed.kind auto.
        cfg.write_text(f"dev_mode: {str(self.dev).lower()}\nfeed:\n  kind: sim\n  sim:\n    rate: {self.rate}\n"
                       f"    backfill: {self.backfill}\n    symbol_count: {self.symbol_count}\nlog:\n  level: warn\n" + self.config)
        env = {**os.environ, "MARKETCAST_LISTEN": f"127.0.0.1:{self.port}", **self.extra_env}
        env.pop("MARKETCAST_JWT_SECRET", None)
        if not self.dev:
            env["MARKETCAST_JWT_SECRET"] = SECRET
        self.log = open(Path(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen([BIN, "-config", str(cfg)], env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log_text()}")
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        try:
            _deadline_poll(ready, 60, f"server ready on {self.base}")
        except BaseException:
            self.stop()
            raise
        return self

    def log_text(self) -> str:
        try:
            return Path(self.dir or "", "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def signal_stop(self) -> None:
        """Sends SIGTERM (the drain) and returns at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        code = None
        if self.proc is not None:
            self.signal_stop()
            try:
                code = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
            self.proc = None
        if getattr(self, "log", None) is not None:
            self.log.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)  # tests leave nothing behind
            self.dir = None
        return code

    async def astop(self) -> int | None:
        return await asyncio.to_thread(self.stop)

    def token(self, user: str, permissions: tuple[str, ...] = ("read:market_data", "read:signals"),
              ttl: float = 3600) -> str:
        return marketcast.sign_token(self.secret, user, permissions, ttl)

    def publisher(self, **kw: Any) -> marketcast.Publisher:
        return marketcast.Publisher(self.base, token=self.token("backend", ("publish",)), **kw)

    async def publish(self, *messages: dict[str, Any]) -> list[marketcast.PublishResult]:
        pub = self.publisher()
        return await asyncio.to_thread(pub.publish, list(messages) if len(messages) != 1 else messages[0])

    def stats(self) -> dict[str, Any]:
        import json
        with urllib.request.urlopen(self.base + "/ws/stats", timeout=5) as r:
            return json.loads(r.read())


@pytest.fixture(scope="session")
def server() -> Any:
    """One quiet server the tests that do not restart it share."""
    srv = Server().start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server() -> Any:
    """Starts servers of the test's own; stops every one at the end."""
    started: list[Server] = []

    def make(**kw: Any) -> Server:
        srv = Server(**kw).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


class Proxy:
    """A TCP proxy in front of a server: ``cut()`` drops every connection
    through it at once, as a network failure would (no close frame)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.silenced: set[asyncio.StreamWriter] = set()
        self.accepted = 0

    async def start(self) -> Proxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cw.transport.abort()
            return
        self.writers |= {cw, sw}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    if w in self.silenced:
                        continue  # a network path that went dead: bytes vanish, nothing closes
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                w.transport.abort()

        await asyncio.gather(pipe(cr, sw), pipe(sr, cw))
        self.writers -= {cw, sw}

    def silence(self) -> None:
        """The connections through it stop carrying anything, in both
        directions, but stay open: only a heartbeat can tell."""
        self.silenced |= self.writers

    def cut(self) -> None:
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: Any) -> Any:
    """Runs ``async def`` tests in their own event loop, under a hang guard."""
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    async def guarded() -> None:
        await asyncio.wait_for(fn(**args), TEST_DEADLINE)

    asyncio.run(guarded())
    return True


__all__ = ["BIN", "Proxy", "Server", "free_port", "poll", "Awaitable"]
