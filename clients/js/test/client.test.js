import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { MarketcastClient, MarketcastError, backoffDelay } from '../marketcast.js';
import { startServer, token, publish, waitFor, until, freePort } from '../testutil/server.js';

describe('against a running server', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test('authenticates and reports the user', async () => {
    const c = new MarketcastClient({ url: srv.url, token: token('7') });
    const auth = await c.connect();
    assert.equal(auth.status, 'success');
    assert.equal(auth.user_id, '7');
    assert.ok(auth.permissions.includes('read:market_data'));
    assert.equal(c.state, 'open');
    c.close();
  });

  test('a bad token rejects with the server code and does not reconnect', async () => {
    const c = new MarketcastClient({ url: srv.url, token: 'not-a-token' });
    let reconnecting = 0;
    c.on('reconnecting', () => reconnecting++);
    const closed = waitFor(c, 'close');
    await assert.rejects(c.connect(), (err) => err instanceof MarketcastError && err.code === 'AUTH_FAILED');
    await closed; // the client has decided what to do after the close
    assert.equal(reconnecting, 0);
    assert.equal(c.state, 'closed');
  });

  test('market data: answer, snapshot, then live ticks with projection', async () => {
    const c = new MarketcastClient({ url: srv.url, token: token('1') });
    await c.connect();
    const ticks = [];
    c.on('market_data', (data, msg) => ticks.push(msg));
    const res = await c.subscribe('market_data', { symbols: ['SHFE.rb2405'], fields: ['last_price', 'bid', 'ask'] });
    assert.deepEqual(res.symbols, ['SHFE.rb2405']);
    assert.deepEqual(res.fields, ['ask_price', 'bid_price', 'last_price']);
    await until(() => ticks.filter((t) => !t.snapshot).length >= 3, 'three live ticks');
    assert.equal(ticks[0].snapshot, true);
    for (const t of ticks) {
      assert.equal(t.channel, 'tick');
      assert.deepEqual(Object.keys(t.data).sort(), ['ask_price', 'bid_price', 'last_price']);
      assert.match(t.data.last_price, /^\d+\.\d+$/);
    }
    // channel listeners see the same messages
    const [, byChannel] = await waitFor(c, 'tick');
    assert.equal(byChannel.symbol, 'SHFE.rb2405');
    await c.unsubscribe('market_data', { symbols: ['SHFE.rb2405'] });
    c.close();
  });

  test('kline history: closed bars oldest first, then the forming bar; history is not part of the subscription', async () => {
    const base = Date.parse('2026-11-27T01:00:00Z');
    const bar = (i, closed) => ({
      open: '10.0', high: '11.0', low: '9.0', close: '10.5', volume: '3', turnover: '31.5',
      start_time: new Date(base + i * 60000).toISOString(), end_time: new Date(base + (i + 1) * 60000).toISOString(), closed,
    });
    for (let i = 0; i < 3; i++) await srv.publish({ channel: 'kline_1m', symbol: 'X.chart', data: bar(i, true) });
    await srv.publish({ channel: 'kline_1m', symbol: 'X.chart', data: bar(3, false) });
    const c = new MarketcastClient({ url: srv.url, token: token('1') });
    await c.connect();
    const bars = [];
    c.on('kline', (data, msg) => bars.push([data.start_time, data.closed, msg.snapshot]));
    await c.subscribe('kline_1m', { symbols: ['X.chart'], history: 2 });
    await until(() => bars.length >= 3, 'three bars');
    assert.deepEqual(bars, [
      [bar(1).start_time, true, true], [bar(2).start_time, true, true], [bar(3).start_time, false, true],
    ]);
    await c.unsubscribe('kline_1m', { symbols: ['X.chart'] });
    assert.equal(c.subscriptions.size, 0);
    c.close();
  });

  test('server errors reject the request with their code', async () => {
    const c = new MarketcastClient({ url: srv.url, token: token('1') });
    await c.connect();
    await assert.rejects(c.subscribe('market_data', { symbols: ['NOPE.x1'] }), { code: 'UNKNOWN_SYMBOL' });
    await assert.rejects(c.subscribe('kline_2m', { symbols: ['SHFE.rb2405'] }), { code: 'UNKNOWN_CHANNEL' });
    await assert.rejects(c.subscribe('orders', { user_id: '2' }), { code: 'FORBIDDEN' });
    c.close();
  });

  test('private orders resume across a server-side disconnect, exactly once, in order', async () => {
    // 2-second tokens and no early refresh: the server closes with 4002,
    // the client reconnects with a fresh token and resumes with since.
    const c = new MarketcastClient({
      url: srv.url, getToken: () => token('u42', { ttl: '2s' }), refreshBeforeExpiry: -60000,
      initialDelay: 300, maxDelay: 600,
    });
    await c.connect();
    const got = [];
    c.on('order_update', (data, msg) => got.push(msg.sequence));
    await c.subscribe('orders');
    for (let i = 1; i <= 3; i++) await publish(srv.base, { channel: 'orders', user_id: 'u42', data: { order_id: `O${i}` } });
    const [closed] = await waitFor(c, 'close');
    assert.equal(closed.code, 4002);
    for (let i = 4; i <= 6; i++) await publish(srv.base, { channel: 'orders', user_id: 'u42', data: { order_id: `O${i}` } });
    const [resumed] = await waitFor(c, 'resumed');
    assert.equal(resumed.since, 3);
    await until(() => got.length >= 6, 'six orders');
    await publish(srv.base, { channel: 'orders', user_id: 'u42', data: { order_id: 'O7' } });
    await until(() => got.length >= 7, 'the seventh order');
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7]);
    c.close();
  });

  test('refreshes the token before it expires and keeps the connection', async () => {
    const c = new MarketcastClient({ url: srv.url, getToken: () => token('9', { ttl: '3s' }), refreshBeforeExpiry: 2000 });
    let auths = 0;
    let closes = 0;
    c.on('auth', () => auths++);
    c.on('close', () => closes++);
    await c.connect();
    // Tokens live 3 s and are refreshed 2 s before expiry, so a fourth
    // authentication comes after the first token expired: the connection
    // outlived it.
    await until(() => auths >= 4 || closes > 0, 'four authentications');
    assert.equal(closes, 0);
    c.close();
  });
});

test('reconnects after the server restarts and resubscribes', async () => {
  const port = await freePort();
  let srv = await startServer({ port });
  const c = new MarketcastClient({ url: srv.url, getToken: () => token('5'), initialDelay: 200, maxDelay: 800 });
  await c.connect();
  await c.subscribe('market_data', { symbols: ['SHFE.hc2405'] });
  await c.subscribe('orders');
  const before = waitFor(c, 'order_update');
  await publish(srv.base, { channel: 'orders', user_id: '5', data: { order_id: 'before' } });
  await before;
  const reconnecting = [];
  c.on('reconnecting', (e) => reconnecting.push(e));
  const closed = waitFor(c, 'close');
  await srv.stop();
  const [ev] = await closed;
  assert.equal(ev.code, 1001);
  const reconnected = waitFor(c, 'reconnected');
  const resumeFailed = waitFor(c, 'resume_failed', (e) => e.channel === 'orders');
  const ticks = waitFor(c, 'market_data', (d, msg) => msg.symbol === 'SHFE.hc2405');
  await until(() => reconnecting.length >= 2, 'a reconnect attempt to fail while the server is down');
  srv = await startServer({ port });
  try {
    await reconnected;
    await ticks; // market data flows again on the resubscribed topic
    // The restarted server has no history of orders: the client is told to refetch.
    const [rf] = await resumeFailed;
    assert.equal(rf.since, 1);
    assert.equal(rf.reason, 'epoch');
    assert.ok(reconnecting.length >= 1);
    for (const r of reconnecting) assert.ok(r.delay >= 100 && r.delay <= 800, `delay ${r.delay}`);
  } finally {
    c.close();
    await srv.stop();
  }
});

test('a restart between two connections is never taken for a resume, even once the new run has passed since', async () => {
  const port = await freePort();
  let srv = await startServer({ port });
  const c = new MarketcastClient({ url: srv.url, getToken: () => token('r1'), initialDelay: 100, maxDelay: 200 });
  const got = [];
  c.on('order_update', (data, msg) => got.push(`${msg.epoch}/${msg.sequence}/${data.order_id}`));
  await c.connect();
  const first = await c.subscribe('orders');
  assert.equal(first.sequence, 0);
  assert.equal(first.epoch, undefined, 'a topic with no run yet answers no epoch: its first message names it');
  for (const id of ['A1', 'A2']) await publish(srv.base, { channel: 'orders', user_id: 'r1', data: { order_id: id } });
  await until(() => got.length >= 2, 'two orders');
  const seen = c.position('orders');
  assert.equal(seen.sequence, 2);
  c.close();

  await srv.stop();
  srv = await startServer({ port });
  try {
    // The new run passes the client's since before it comes back.
    for (const id of ['B1', 'B2', 'B3']) await publish(srv.base, { channel: 'orders', user_id: 'r1', data: { order_id: id } });
    const failed = waitFor(c, 'resume_failed', (e) => e.channel === 'orders');
    await c.connect();
    const [rf] = await failed;
    assert.equal(rf.since, 2);
    assert.equal(rf.epoch, seen.epoch);
    assert.notEqual(rf.current_epoch, seen.epoch);
    assert.equal(rf.reason, 'epoch');
    assert.equal(rf.sequence, 3);
    // Nothing of the new run was replayed as if it continued the old one;
    // live orders follow in the new run, and tracking follows them.
    await publish(srv.base, { channel: 'orders', user_id: 'r1', data: { order_id: 'B4' } });
    await until(() => got.length >= 3, 'the live order of the new run');
    assert.deepEqual(got.slice(2), [`${rf.current_epoch}/4/B4`]);
    assert.deepEqual(c.position('orders'), { sequence: 4, epoch: rf.current_epoch });
  } finally {
    c.close();
    await srv.stop();
  }
});

test('resumes the broadcast stream beside the user\'s own notifications', async () => {
  const srv = await startServer();
  const c = new MarketcastClient({ url: srv.url, getToken: () => token('n1', { ttl: '2s' }), refreshBeforeExpiry: -60000, initialDelay: 100, maxDelay: 200 });
  const got = [];
  const resumed = [];
  c.on('notifications', (data, msg) => got.push(`${msg.broadcast ? 'all' : 'me'}:${msg.sequence}:${data.n}`));
  c.on('resumed', (e) => resumed.push(e.topic));
  try {
    await c.connect();
    await c.subscribe('notifications');
    await publish(srv.base, { channel: 'notifications', data: { n: 1 } });
    await publish(srv.base, { channel: 'notifications', user_id: 'n1', data: { n: 2 } });
    await until(() => got.length >= 2, 'two notices');
    await waitFor(c, 'close'); // the 2-second token expires: 4002
    await publish(srv.base, { channel: 'notifications', data: { n: 3 } });
    await publish(srv.base, { channel: 'notifications', user_id: 'n1', data: { n: 4 } });
    await until(() => got.length >= 4, 'four notices');
    // Each stream in its own order (the two are independent of each other).
    assert.deepEqual(got.filter((g) => g.startsWith('all')), ['all:1:1', 'all:2:3']);
    assert.deepEqual(got.filter((g) => g.startsWith('me')), ['me:1:2', 'me:2:4']);
    assert.deepEqual(resumed.sort(), ['notifications', 'notifications:*']);
  } finally {
    c.close();
    await srv.stop();
  }
});

test('backoff grows exponentially with equal jitter and a cap', () => {
  const opts = { initialDelay: 100, maxDelay: 2000, factor: 2 };
  for (let n = 0; n < 10; n++) {
    const base = Math.min(2000, 100 * 2 ** n);
    assert.equal(backoffDelay(n, opts, () => 0), base / 2);
    assert.equal(backoffDelay(n, opts, () => 1), base);
  }
  // Spread: many clients reconnecting at the same attempt do not collide.
  const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(4, opts)));
  assert.ok(seen.size > 25, `only ${seen.size} distinct delays`);
});

test('reconnect attempts follow the backoff while the server is down', async () => {
  const port = await freePort(); // nothing listens there
  const c = new MarketcastClient({ url: `ws://127.0.0.1:${port}/ws`, token: 't', initialDelay: 40, maxDelay: 200, maxAttempts: 5, random: () => 1 });
  const delays = [];
  c.on('reconnecting', (e) => delays.push(e.delay));
  const gaveUp = waitFor(c, 'error', (err) => err.code === 'RECONNECT_FAILED');
  await assert.rejects(c.connect());
  await gaveUp;
  assert.deepEqual(delays, [40, 80, 160, 200, 200]);
  c.close();
});

test('detects gaps, duplicates and new runs on private topics, not on conflated market data', () => {
  const c = new MarketcastClient({ url: 'ws://unused', WebSocket: class {} });
  const gaps = [];
  const dups = [];
  const runs = [];
  c.on('gap', (g) => gaps.push(g));
  c.on('duplicate', (d) => dups.push(d));
  c.on('resume_failed', (e) => runs.push(e));
  const order = (sequence, epoch = 'E1') => ({ type: 'order_update', channel: 'orders', data: {}, sequence, epoch, timestamp: '' });
  const tick = (sequence) => ({ type: 'market_data', channel: 'tick', symbol: 'X', data: {}, sequence, timestamp: '' });
  for (const s of [1, 2, 4, 4]) c.handleMessage(order(s));
  for (const s of [1, 5, 9]) c.handleMessage(tick(s));
  assert.deepEqual(gaps, [{ topic: 'orders', expected: 3, got: 4 }]);
  assert.deepEqual(dups, [{ topic: 'orders', sequence: 4, last: 4 }]);
  assert.equal(c.lastSequence('orders'), 4);
  assert.equal(c.lastSequence('tick:X'), 9);
  c.handleMessage(order(7, 'E2')); // a new run: what E1 still owed may be lost
  assert.equal(runs.length, 1);
  assert.equal(runs[0].reason, 'epoch');
  assert.deepEqual(c.position('orders'), { sequence: 7, epoch: 'E2' });
  assert.equal(gaps.length, 1, 'a new run is not a gap in the old one');
  // A broadcast notice is tracked apart from the user's own stream.
  c.handleMessage({ type: 'system_notice', channel: 'notifications', broadcast: true, data: {}, sequence: 1, epoch: 'B' });
  c.handleMessage({ type: 'risk_alert', channel: 'notifications', data: {}, sequence: 1, epoch: 'U' });
  assert.equal(c.lastSequence('notifications:*'), 1);
  assert.equal(c.lastSequence('notifications'), 1);
});
