"""The documentation's examples run verbatim, and the Chinese quick start
stays in step with the English README."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import marketcast
from conftest import HERE, ROOT, Server, poll

PACKAGE_README = HERE.parent / "README.md"
README = ROOT / "README.md"
ZH_README = ROOT / "docs" / "zh" / "README.md"
MIGRATING = ROOT / "docs" / "MIGRATING-FROM-SEED.md"
JS_README = ROOT / "clients" / "js" / "README.md"

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)

# Celery is not installable here (no PyPI), and what the example tests is the
# publisher, not Celery: this stand-in runs a task at once, as Celery does
# with task_always_eager, with the request id and retry() a bound task has.
CELERY_STAND_IN = '''
import uuid


class _Request:
    def __init__(self):
        self.id = uuid.uuid4().hex


class _Task:
    def __init__(self, fn, bind):
        self.fn, self.bind, self.request = fn, bind, _Request()

    def __call__(self, *args, **kwargs):
        return self.fn(self, *args, **kwargs) if self.bind else self.fn(*args, **kwargs)

    def delay(self, *args, **kwargs):
        self.request = _Request()
        result = self(*args, **kwargs)
        print("task result", result)
        return result

    def retry(self, exc=None, countdown=None):
        return exc


class Celery:
    def __init__(self, main=None, **kwargs):
        self.main = main

    def task(self, fn=None, bind=False, **options):
        if callable(fn):  # @app.task
            return _Task(fn, False)
        return lambda fn: _Task(fn, bind)  # @app.task(...)
'''

# How a notebook runs a cell: top-level await in the kernel's event loop.
NOTEBOOK_RUNNER = '''
import ast, asyncio, sys
code = compile(sys.stdin.read(), "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
async def main():
    await eval(code, {"__name__": "__main__"})
asyncio.run(main())
'''


def blocks(path: Path, lang: str | None = None) -> list[str]:
    return [body for tag, body in FENCE.findall(path.read_text()) if lang is None or tag == lang]


def python_blocks() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in (PACKAGE_README, README):
        for b in blocks(path, "python"):
            found.setdefault(b, str(path.relative_to(ROOT)))
    return found


def run(code: str, srv: Server, *, stdin_runner: str | None = None, extra_path: str | None = None,
        env: dict[str, str] | None = None) -> str:
    code = code.replace("localhost:8000", f"127.0.0.1:{srv.port}").replace("marketcast:8000", f"127.0.0.1:{srv.port}")
    path = [str(HERE.parent / "src")] + ([extra_path] if extra_path else [])
    e = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    argv = [sys.executable, "-c", stdin_runner] if stdin_runner else [sys.executable, "-"]
    p = subprocess.run(argv, input=code, capture_output=True, text=True, env=e, timeout=120)
    assert p.returncode == 0, f"the example failed:\n{code}\n--- output:\n{p.stdout}{p.stderr}"
    return p.stdout


def test_readme_examples_run_verbatim(make_server):
    examples = python_blocks()
    strategy = [b for b in examples if "async def main" in b]
    celery = [b for b in examples if "from celery import Celery" in b]
    notebook = [b for b in examples if b.startswith("import asyncio") and "await mc.connect()" in b]
    assert strategy and celery and notebook, "the README lost an example"
    assert len(strategy) + len(celery) + len(notebook) == len(examples), "an example no test runs"

    srv = make_server(dev=True, backfill="1h")  # as make run: development mode, a chart's worth of bars
    for code in strategy:
        out = run(code, srv)
        assert re.search(r"^SHFE\.(rb|hc)2405 \d+\.\d+ -?\d+\.\d+$", out, re.M), out

    with tempfile.TemporaryDirectory(prefix="mc-py-celery-") as tmp:
        Path(tmp, "celery").mkdir()
        Path(tmp, "celery", "__init__.py").write_text(CELERY_STAND_IN)
        publish_token = marketcast.sign_token(srv.secret, "backend", ["publish"])
        for code in celery:
            out = run(code, srv, extra_path=tmp, env={"MARKETCAST_PUBLISH_TOKEN": publish_token})
            assert re.search(r"^task result \d+$", out, re.M), out

    async def published_order() -> list[marketcast.OrderUpdate]:
        async with marketcast.Client(srv.url, token=srv.token("1")) as c:
            got: list[marketcast.OrderUpdate] = []
            c.on("order_update", got.append)
            await c.subscribe("orders", since=0)  # the whole run: the task's order
            await poll(lambda: got, "the task's order")
            return got

    assert asyncio.run(published_order())[0].order_id == "ORD_20231201_001"

    for code in notebook:
        out = run(code, srv, stdin_runner=NOTEBOOK_RUNNER)
        m = re.search(r"^(\d+) bars; last price \d+\.\d+$", out, re.M)
        assert m and int(m.group(1)) >= 50, out


def test_the_migration_guides_celery_tasks_publish_the_seeds_payloads(make_server):
    """MIGRATING-FROM-SEED.md's tasks, run with the seed's own data: an order
    update and the seed publisher's tick (its zone-less timestamp replaced
    as the guide says)."""
    code = next(b for b in blocks(MIGRATING, "python") if "from celery import Celery" in b)
    code += """
send_order_update.delay("1", {"order_id": "ORD_20231201_001", "symbol": "SHFE.rb2405", "side": "BUY",
                              "quantity": "1.0", "price": "4000.0", "status": "FILLED"})
broadcast_market_data.delay("SHFE.rb2405", {"last_price": "4000.0", "bid_price": "3999.0", "ask_price": "4001.0",
                                            "volume": "1000", "timestamp": "2023-12-01T10:30:00.123456"})
"""
    srv = make_server()
    with tempfile.TemporaryDirectory(prefix="mc-py-celery-") as tmp:
        Path(tmp, "celery").mkdir()
        Path(tmp, "celery", "__init__.py").write_text(CELERY_STAND_IN)
        out = run(code, srv, extra_path=tmp, env={"MARKETCAST_PUBLISH_TOKEN": srv.token("backend", ("publish",))})
    assert out.count("task result None") == 2, out


def test_the_chinese_quick_start_has_the_english_readmes_commands():
    """docs/zh/README.md translates README.md's prose; its code blocks —
    every command and example — are README.md's, the same and in the same
    order, so a reader of either runs the same thing. The few it adds (Vue,
    the notebook) are the English docs' own, verbatim."""
    en, zh = blocks(README), blocks(ZH_README)
    missing = [b for b in en if b not in zh]
    assert not missing, "copy these README.md blocks into docs/zh/README.md:\n" + "\n---\n".join(missing)
    assert [b for b in zh if b in en] == en, "docs/zh/README.md has README.md's blocks in another order"
    elsewhere = {b for doc in (PACKAGE_README, JS_README, MIGRATING) for b in blocks(doc)}
    extra = [b for b in zh if b not in en and b not in elsewhere]
    assert not extra, "docs/zh/README.md has blocks no English doc has:\n" + "\n---\n".join(extra)
