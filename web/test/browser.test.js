// Opens the demo terminal in headless Chromium against the real server and
// checks what a person would see: every symbol listed, the seed's
// SHFE.rb2405 open, live prices changing, how old the newest tick is, the
// depth ladder filled, the chart drawn, orders published before and after
// the page opened, positions, account and strategy signals. With
// MARKETCAST_SCREENSHOT=FILE it saves a picture there (`make screenshot`
// refreshes the README's docs/screenshot.png); tests leave the tree as they
// found it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startServer, DEADLINE } from '../../clients/js/testutil/server.js';

const executablePath = process.env.CHROMIUM || ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find(existsSync);

test('the demo terminal shows live markets and private orders', { timeout: 4 * DEADLINE }, async () => {
  assert.ok(executablePath, 'Debian chromium is required: make test installs it when it can (web/test/setup.sh)');
  const srv = await startServer({ dev: true, backfill: '2h' }); // as make run: the chart opens full
  const browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    // Published before the page opens: the page resumes from since 0 (and
    // positions and account send their latest state).
    await srv.publish([
      { channel: 'orders', user_id: '1', data: { order_id: 'ORD_EARLY', symbol: 'SHFE.hc2405', side: 'SELL', quantity: '2.0', price: '3500.0', status: 'SUBMITTED' } },
      { channel: 'positions', user_id: '1', data: { symbol: 'SHFE.rb2405', side: 'LONG', quantity: '5.0', avg_price: '3980.0', unrealized_pnl: '100.0' } },
      { channel: 'account', user_id: '1', data: { total_assets: '100000.0', available_cash: '50000.0', frozen_cash: '5000.0', market_value: '45000.0' } },
      { channel: 'notifications', data: { level: 'INFO', title: '系统将于16:00维护' } },
    ]);
    const symbols = (await (await fetch(srv.base + '/api/v1/symbols')).json()).symbols;
    const favicon = await fetch(srv.base + '/favicon.ico');
    assert.equal(favicon.status, 200);
    assert.match(favicon.headers.get('content-type'), /^image\//);

    const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(srv.base + '/');

    await page.waitForSelector('#status[data-state="open"]', { timeout: DEADLINE });
    // Every symbol is listed, and the seed's own contract is open.
    assert.equal(await page.locator('#watchlist tbody tr').count(), symbols.length);
    assert.ok(symbols.length >= 14, `${symbols.length} symbols`);
    await page.waitForFunction(() => document.querySelector('#chart-symbol').textContent === 'SHFE.rb2405', null, { timeout: DEADLINE });
    await page.waitForSelector('#order-ORD_EARLY', { timeout: DEADLINE });
    await page.waitForSelector('#position-SHFE_rb2405-LONG', { timeout: DEADLINE });
    await page.waitForSelector('#account tr[data-key="total_assets"]', { timeout: DEADLINE });
    assert.match(await page.textContent('#account'), /100000\.0/);
    await page.waitForFunction(() => /16:00/.test(document.querySelector('#notifications').textContent), null, { timeout: DEADLINE });
    // Prices change: some watch-list row saw at least two different last prices.
    await page.waitForFunction(() => [...document.querySelectorAll('#watchlist tr[data-changes]')]
      .some((r) => Number(r.dataset.changes) >= 2), null, { timeout: DEADLINE });
    const last = await page.textContent('#watchlist tbody tr td.last');
    assert.match(last, /^\d+\.\d+$/);
    // The depth ladder fills: five levels a side.
    await page.waitForFunction(() => Number(document.querySelector('#depth').dataset.levels) >= 10, null, { timeout: DEADLINE });
    // The chart opens full: the simulator's backfill of the last two hours
    // arrives as the subscription's history (120 closed bars and the forming
    // one), drawn with real pixels.
    await page.waitForFunction(() => Number(document.querySelector('#chart').dataset.candles) >= 100, null, { timeout: DEADLINE });
    const inked = await page.evaluate(() => {
      const c = document.querySelector('#chart');
      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
      return n;
    });
    assert.ok(inked > 50, `chart has ${inked} painted pixels`);

    // An order published by a back end appears in the orders panel.
    await srv.publish({ channel: 'orders', user_id: '1', data: {
      order_id: 'ORD_20231201_001', symbol: 'SHFE.rb2405', side: 'BUY', quantity: '1.0', price: '4000.0', status: 'FILLED' } });
    await page.waitForSelector('#order-ORD_20231201_001', { timeout: DEADLINE });
    assert.match(await page.textContent('#order-ORD_20231201_001'), /FILLED/);
    await srv.publish({ channel: 'notifications', user_id: '1', data: { level: 'WARNING', title: '持仓风险提醒', message: '螺纹钢持仓已达到风控上限' } });
    await page.waitForFunction(() => document.querySelectorAll('#notifications li').length >= 2, null, { timeout: DEADLINE });
    await srv.publish({ channel: 'strategy_signals', strategy_id: 'STR_20231201_001', data: {
      strategy_name: 'MACD策略', symbol: 'SHFE.rb2405', signal: 'BUY', price: '4000.0', confidence: 0.85, reason: 'MACD金叉，看涨信号' } });
    await page.waitForFunction(() => /MACD策略/.test(document.querySelector('#signals').textContent), null, { timeout: DEADLINE });
    // The freshness indicator says how old the newest tick on screen is
    // (a number; how large it may be is not this test's to say on a busy
    // machine).
    await page.waitForFunction(() => /^newest tick [\d.]+ s old$/.test(document.querySelector('#freshness').textContent), null, { timeout: DEADLINE });
    assert.ok(Number.isFinite(Number(await page.getAttribute('#freshness', 'data-age-ms'))));

    if (process.env.MARKETCAST_SCREENSHOT) {
      await page.waitForTimeout(1500); // a few more ticks for a lively picture
      await page.screenshot({ path: process.env.MARKETCAST_SCREENSHOT, fullPage: true });
    }
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await srv.stop();
  }
});
