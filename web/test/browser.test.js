// Opens the demo terminal in headless Chromium against the real server and
// checks what a person would see: live prices changing, the depth ladder
// filled, the chart drawn, and an order published through the API showing
// up. With MARKETCAST_SCREENSHOT=FILE it saves a picture there (`make
// screenshot` refreshes the README's docs/screenshot.png); tests leave the
// tree as they found it.
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
    const page = await browser.newPage({ viewport: { width: 1400, height: 800 } });
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(srv.base + '/');

    await page.waitForSelector('#status[data-state="open"]', { timeout: DEADLINE });
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
    await page.waitForSelector('#notifications li', { timeout: DEADLINE });

    if (process.env.MARKETCAST_SCREENSHOT) {
      await page.waitForTimeout(1500); // a few more ticks for a lively picture
      await page.screenshot({ path: process.env.MARKETCAST_SCREENSHOT });
    }
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await srv.stop();
  }
});
