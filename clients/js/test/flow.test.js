// Flow control and delivery options against the real server: the client
// grants credit as its handlers finish messages, the server pushes no more
// than granted, and a subscribe passes interval_ms and conflate through.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { MarketcastClient, FLOW, grantSize } from '../marketcast.js';
import { startServer, token, until, waitFor } from '../testutil/server.js';

test('grantSize: what the handlers get through in FLOW.GRANT_MILLIS, within bounds', () => {
  assert.equal(grantSize(10), 25);
  assert.equal(grantSize(1000), FLOW.MIN_GRANT);
  assert.equal(grantSize(0.001), FLOW.MAX_GRANT);
  assert.equal(grantSize(null), FLOW.MAX_GRANT);
  assert.equal(grantSize(0), FLOW.MAX_GRANT);
});

describe('flow control', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test('is on by default: the server pushes no more than the client granted', async () => {
    const c = new MarketcastClient({ url: srv.url, token: token('1') });
    await c.connect();
    let over = 0;
    let ticks = 0;
    c.on('market_data', () => {
      const f = c.flowState();
      if (f.received > f.granted) over++;
      ticks++;
      const end = performance.now() + 5; // a handler that takes 5 ms
      while (performance.now() < end);
    });
    await c.subscribe('market_data', { symbols: ['SHFE.rb2405', 'SHFE.hc2405'] });
    await until(() => ticks >= 100, '100 ticks');
    const f = c.flowState();
    assert.equal(f.enabled, true);
    assert.equal(over, 0, 'messages beyond the credit granted');
    assert.ok(f.granted > FLOW.INITIAL_CREDIT, `granted ${f.granted}: credit is renewed as messages are handled`);
    assert.ok(f.handleMs >= 4, `measured ${f.handleMs} ms per message for a 5 ms handler`);
    c.close();
  });

  test('flowControl: false grants nothing and gets everything', async () => {
    const c = new MarketcastClient({ url: srv.url, token: token('1'), flowControl: false });
    await c.connect();
    let ticks = 0;
    c.on('market_data', () => { ticks++; });
    await c.subscribe('market_data', { symbols: ['SHFE.rb2405'] });
    await until(() => ticks >= FLOW.INITIAL_CREDIT + 10, 'more ticks than a first grant');
    const f = c.flowState();
    assert.equal(f.enabled, false);
    assert.equal(f.granted, 0);
    c.close();
  });

  test('a reconnect grants afresh', async () => {
    const c = new MarketcastClient({ url: srv.url, token: token('1'), initialDelay: 50, maxDelay: 100 });
    await c.connect();
    let ticks = 0;
    c.on('market_data', () => { ticks++; });
    await c.subscribe('market_data', { symbols: ['SHFE.rb2405'] });
    await until(() => ticks >= 5, 'ticks');
    const reconnected = waitFor(c, 'reconnected');
    c.ws.close(4000, 'test: drop the connection');
    await reconnected;
    const before = ticks;
    await until(() => ticks >= before + FLOW.INITIAL_CREDIT + 5, 'ticks after the reconnect, past the first grant');
    assert.ok(c.flowState().granted >= FLOW.INITIAL_CREDIT);
    c.close();
  });
});

describe('delivery options on subscribe', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test('interval_ms and conflate are sent and answered', async () => {
    const c = new MarketcastClient({ url: srv.url, token: token('1') });
    await c.connect();
    const a = await c.subscribe('market_data', { symbols: ['SHFE.rb2405'], interval_ms: 500 });
    assert.equal(a.interval_ms, 500);
    const b = await c.subscribe('depth', { symbols: ['SHFE.rb2405'], interval_ms: 100 });
    assert.equal(b.interval_ms, 100);
    const d = await c.subscribe('market_data', { symbols: ['SHFE.hc2405'], conflate: false });
    assert.equal(d.conflate, false);
    await assert.rejects(c.subscribe('orders', { interval_ms: 100 }), { code: 'INVALID_REQUEST' });
    await assert.rejects(c.subscribe('depth', { symbols: ['SHFE.rb2405'], conflate: false }), { code: 'INVALID_REQUEST' });
    c.close();
  });
});
