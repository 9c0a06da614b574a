// Issue 19's busy terminal in a browser: headless Chromium runs the
// JavaScript client as served by the server (/js/marketcast.js), the
// simulator sends 20 ticks/s × 40 symbols (800/s), and the page's handler
// keeps the main thread busy 10 ms per message (100/s) for 25 seconds. A
// browser reads the socket eagerly into its own queue, so without flow
// control that queue grows by ~700 messages a second and every tick is
// older than the last. With it (the client's default) the server never
// pushes more than the page granted. Asserted: the credit window is never
// exceeded, the connection stays up, the page's heap stays bounded.
// Reported (a timing): the newest tick's age.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startServer, until, DEADLINE } from '../../clients/js/testutil/server.js';

const executablePath = process.env.CHROMIUM || ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find(existsSync);
const RUN = 25000;
const HANDLER_MS = 10;

test('a busy browser tab sees fresh ticks, within the credit window', { timeout: 4 * DEADLINE }, async (t) => {
  assert.ok(executablePath, 'Debian chromium is required: make test installs it when it can (web/test/setup.sh)');
  const srv = await startServer({ symbolCount: 40 });
  const browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(srv.base + '/api/v1/symbols'); // any page of the server's origin
    const cdp = await page.context().newCDPSession(page);
    const heap = async () => (await cdp.send('Runtime.getHeapUsage')).usedSize;

    await page.evaluate(async ({ token, handlerMs }) => {
      const { MarketcastClient, FLOW } = await import('/js/marketcast.js');
      const symbols = (await (await fetch('/api/v1/symbols')).json()).symbols;
      const s = { symbols: symbols.length, first: 0, ticks: 0, over: 0, maxOutstanding: 0, lastAt: 0, worstAge: 0, closes: [] };
      window.slow = s;
      const c = new MarketcastClient({ url: `ws://${location.host}/ws`, token });
      window.client = c;
      c.on('close', (ev) => s.closes.push(ev.code));
      c.on('market_data', (data, msg) => {
        const f = c.flowState();
        if (f.received > f.granted) s.over++;
        s.maxOutstanding = Math.max(s.maxOutstanding, f.granted - f.handled);
        const now = Date.now();
        if (!s.first) s.first = now;
        s.ticks++;
        s.lastAt = Math.max(s.lastAt, Date.parse(msg.timestamp));
        if (now - s.first > 5000) s.worstAge = Math.max(s.worstAge, now - s.lastAt);
        const end = performance.now() + handlerMs; // the terminal's work: a busy main thread
        while (performance.now() < end);
      });
      await c.connect();
      await c.subscribe('market_data', { symbols });
      s.window = FLOW.INITIAL_CREDIT;
    }, { token: srv.token('1'), handlerMs: HANDLER_MS });

    const state = () => page.evaluate(() => ({ ...window.slow, flow: window.client.flowState(), state: window.client.state }));
    await until(async () => (await state()).first > 0, 'the first tick');
    const first = (await state()).first;
    let heapAt5 = 0;
    await until(async () => {
      if (!heapAt5 && Date.now() - first >= 5000) heapAt5 = await heap();
      return Date.now() - first >= RUN;
    }, `${RUN} ms of ticks`, RUN + DEADLINE);
    const heapEnd = await heap();
    const s = await state();
    const age = Date.now() - s.lastAt;
    t.diagnostic(`chromium, ${HANDLER_MS} ms handler on the main thread, 40 symbols × 20 ticks/s, ${RUN / 1000} s: handled ${s.ticks} ticks; ` +
      `newest tick ${age} ms old at the end, at most ${s.worstAge} ms after 5 s; credit granted ${s.flow.granted}, ` +
      `at most ${s.maxOutstanding} unhandled; measured ${s.flow.handleMs.toFixed(1)} ms per message; ` +
      `JS heap ${(heapAt5 / 2 ** 20).toFixed(1)} MiB at 5 s, ${(heapEnd / 2 ** 20).toFixed(1)} MiB at the end`);

    assert.equal(s.symbols, 40);
    assert.equal(s.state, 'open');
    assert.deepEqual(s.closes, [], 'the connection closed');
    assert.equal(s.over, 0, 'the server pushed past the credit granted');
    assert.ok(s.maxOutstanding <= s.window, `${s.maxOutstanding} messages granted and unhandled at once; want at most ${s.window}`);
    assert.ok(s.ticks < (RUN / 1000) * 800 / 2, `handled ${s.ticks} ticks: the server conflated nothing`);
    assert.ok(heapEnd < heapAt5 + 16 * 2 ** 20, `the page's heap grew from ${heapAt5} to ${heapEnd} bytes`);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await srv.stop();
  }
});
