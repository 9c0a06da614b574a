// Issue 19's busy strategy in Node: the simulator at 20 ticks/s × 40
// symbols (800 ticks/s), a handler that takes 10 ms per message (100/s),
// 25 seconds. With flow control (the default) the server never pushes more
// than the client granted, so what waits for the slow handler waits on the
// server, conflated to the newest tick, and the newest tick the handler
// sees stays fresh. Asserted: the credit window is never exceeded, the
// connection stays up, memory stays bounded. Reported (a timing, so not a
// pass/fail figure on a busy machine): the newest tick's age.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MarketcastClient, FLOW, grantSize } from '../marketcast.js';
import { startServer, token, until, DEADLINE } from '../testutil/server.js';

const RUN = 25000;
const HANDLER_MS = 10;

test('a busy handler sees fresh ticks, within the credit window', { timeout: 4 * DEADLINE }, async (t) => {
  const srv = await startServer({ symbolCount: 40 });
  try {
    const symbols = (await (await fetch(srv.base + '/api/v1/symbols')).json()).symbols;
    assert.equal(symbols.length, 40);
    const c = new MarketcastClient({ url: srv.url, token: token('1') });
    const closes = [];
    c.on('close', (ev) => closes.push(ev.code));
    await c.connect();

    let first = 0;
    let ticks = 0;
    let over = 0; // messages past the credit granted
    let maxOutstanding = 0;
    let lastAt = 0; // the newest tick's engine time
    let worstAge = 0; // the oldest newest-tick after the first 5 s
    const heap = [];
    c.on('market_data', (data, msg) => {
      const f = c.flowState();
      if (f.received > f.granted) over++;
      maxOutstanding = Math.max(maxOutstanding, f.granted - f.handled);
      const now = Date.now();
      if (!first) first = now;
      ticks++;
      lastAt = Math.max(lastAt, Date.parse(msg.timestamp));
      if (now - first > 5000) worstAge = Math.max(worstAge, now - lastAt);
      const end = performance.now() + HANDLER_MS; // the strategy's work: a busy main thread
      while (performance.now() < end);
    });
    await c.subscribe('market_data', { symbols });
    await until(() => first > 0, 'the first tick');
    for (let s = 0; Date.now() - first < RUN; s++) {
      await until(() => Date.now() - first >= Math.min(RUN, (s + 1) * 1000), `second ${s + 1}`);
      heap.push(process.memoryUsage().heapUsed);
    }
    const age = Date.now() - lastAt;
    const f = c.flowState();
    t.diagnostic(`node, ${HANDLER_MS} ms handler, 40 symbols × 20 ticks/s, ${RUN / 1000} s: handled ${ticks} ticks; ` +
      `newest tick ${age} ms old at the end, at most ${worstAge} ms after 5 s; credit granted ${f.granted}, ` +
      `at most ${maxOutstanding} unhandled; measured ${f.handleMs.toFixed(1)} ms per message; ` +
      `heap ${(heap[4] / 2 ** 20).toFixed(1)} MiB at 5 s, ${(heap.at(-1) / 2 ** 20).toFixed(1)} MiB at the end`);

    assert.equal(c.state, 'open');
    assert.deepEqual(closes, [], 'the connection closed');
    assert.equal(over, 0, 'the server pushed past the credit granted');
    // In flight: never more than the first grant or the window the
    // handler's time sets (25 messages at 10 ms), never a backlog.
    const window = Math.max(FLOW.INITIAL_CREDIT, grantSize(HANDLER_MS));
    assert.ok(maxOutstanding <= window, `${maxOutstanding} messages granted and unhandled at once; want at most ${window}`);
    assert.ok(ticks < (RUN / 1000) * 800 / 2, `handled ${ticks} ticks: the server conflated nothing`);
    assert.ok(heap.at(-1) < heap[4] + 64 * 2 ** 20, 'the heap grew by more than 64 MiB');
    c.close();
  } finally {
    await srv.stop();
  }
});
