// The demo terminal: watch list (every symbol), depth ladder, candlestick
// chart, orders, positions, account, strategy signals and notifications, all
// fed by the marketcast JavaScript client; the header says how old the
// newest tick on screen is.
import { MarketcastClient } from '/js/marketcast.js';

const $ = (sel) => document.querySelector(sel);
const wsURL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const params = new URLSearchParams(location.search);
// The seed's own contract and strategy unless the address names others
// (?symbol=SHFE.hc2405&strategies=STR_1,STR_2).
const OPEN_SYMBOL = params.get('symbol') || 'SHFE.rb2405';
const STRATEGIES = (params.get('strategies') || 'STR_20231201_001').split(',').filter(Boolean);
const state = {
  symbols: [], selected: null, interval: 'kline_1m', ticks: new Map(), candles: [], client: null,
  newestTick: 0, // engine time (ms) of the newest tick shown
  clockOffset: 0, // server clock minus this browser's, from a ping
};
const esc = (v) => (v === undefined || v === null ? '' : String(v).replace(/[<&>"]/g, (c) => `&#${c.charCodeAt(0)};`));
const cells = (...vs) => vs.map((v) => `<td>${esc(v)}</td>`).join('');

async function getToken() {
  const pasted = $('#token').value.trim() || sessionStorage.getItem('marketcast-token');
  if (pasted) return pasted;
  // Development servers sign demo tokens; elsewhere this endpoint does not exist.
  const res = await fetch('/dev/token?user=1');
  if (!res.ok) throw new Error('no development token: paste one');
  return (await res.json()).token;
}

function setStatus(s, text) {
  const el = $('#status');
  el.className = `status ${s}`;
  el.dataset.state = s;
  el.textContent = text || s;
}

// ---- watch list -----------------------------------------------------------

function renderWatchRow(symbol) {
  let row = document.querySelector(`#watchlist tr[data-symbol="${symbol}"]`);
  if (!row) {
    row = document.createElement('tr');
    row.dataset.symbol = symbol;
    row.innerHTML = `<td>${symbol}</td><td class="last">—</td><td class="pct">—</td><td class="bid">—</td><td class="ask">—</td><td class="vol">—</td>`;
    row.addEventListener('click', () => select(symbol));
    $('#watchlist tbody').appendChild(row);
  }
  return row;
}

function onTick(data, msg) {
  const at = Date.parse(msg.timestamp);
  if (at > state.newestTick) state.newestTick = at;
  const prev = state.ticks.get(msg.symbol);
  state.ticks.set(msg.symbol, data);
  const row = renderWatchRow(msg.symbol);
  const last = row.querySelector('.last');
  last.textContent = data.last_price;
  const dir = Number(data.change) > 0 ? 'up' : Number(data.change) < 0 ? 'down' : '';
  for (const c of ['last', 'pct']) row.querySelector('.' + c).className = `${c} ${dir}`;
  row.querySelector('.pct').textContent = `${data.change_percent}%`;
  row.querySelector('.bid').textContent = data.bid_price;
  row.querySelector('.ask').textContent = data.ask_price;
  row.querySelector('.vol').textContent = data.volume;
  if (prev && prev.last_price !== data.last_price) {
    last.classList.remove('flash-up', 'flash-down');
    void last.offsetWidth; // restart the animation
    last.classList.add(Number(data.last_price) > Number(prev.last_price) ? 'flash-up' : 'flash-down');
    row.dataset.changes = String(Number(row.dataset.changes || 0) + 1);
  }
}

// ---- freshness ------------------------------------------------------------

// How old the newest tick on screen is, by the server's clock: what a trader
// needs to trust the prices (a stalled feed or a slow connection shows here
// first). The browser's clock is corrected by a ping's answer.
async function syncClock() {
  const t0 = Date.now();
  const pong = await state.client.request({ type: 'ping', timestamp: new Date(t0).toISOString() });
  const t1 = Date.now();
  state.clockOffset = Date.parse(pong.timestamp) - (t0 + t1) / 2;
}

function renderFreshness() {
  const el = $('#freshness');
  if (!state.newestTick) return;
  const age = Math.max(0, Date.now() + state.clockOffset - state.newestTick);
  el.dataset.ageMs = String(Math.round(age));
  el.className = `freshness ${age < 1000 ? 'fresh' : age < 5000 ? 'lagging' : 'stale'}`;
  el.textContent = `newest tick ${age < 10000 ? (age / 1000).toFixed(1) : Math.round(age / 1000)} s old`;
}

// ---- depth ----------------------------------------------------------------

function onDepth(data, msg) {
  if (msg.symbol !== state.selected) return;
  const rows = [];
  const asks = [...data.asks].reverse();
  for (const [p, v] of asks) rows.push(`<tr><td></td><td class="ask">${p}</td><td class="ask">${v}</td></tr>`);
  for (const [p, v] of data.bids) rows.push(`<tr><td class="bid">${v}</td><td class="bid">${p}</td><td></td></tr>`);
  $('#depth tbody').innerHTML = rows.join('');
  $('#depth').dataset.levels = String(data.bids.length + data.asks.length);
}

// ---- chart ----------------------------------------------------------------

// CHART_BARS closed bars are asked as history when the chart opens, so it
// is full at once; a reconnect asks them again and fills any gap.
const CHART_BARS = 120;

function onKline(data, msg) {
  if (msg.symbol !== state.selected || msg.channel !== state.interval) return;
  const c = state.candles;
  const bar = { t: data.start_time, o: +data.open, h: +data.high, l: +data.low, c: +data.close, v: +data.volume };
  // Bars arrive oldest first, each updated until closed; a history sent
  // again (after a reconnect) replaces the bars it repeats. Start times are
  // one UTC layout, so they compare as strings.
  let i = c.length;
  while (i > 0 && c[i - 1].t > bar.t) i--;
  if (i > 0 && c[i - 1].t === bar.t) c[i - 1] = bar;
  else c.splice(i, 0, bar);
  if (c.length > CHART_BARS + 1) c.splice(0, c.length - CHART_BARS - 1);
  drawChart();
}

function drawChart() {
  const canvas = $('#chart');
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  const bars = state.candles;
  if (!bars.length) return;
  const hi = Math.max(...bars.map((b) => b.h));
  const lo = Math.min(...bars.map((b) => b.l));
  const span = hi - lo || 1;
  // Prices above, volume in the bottom fifth, times along the axis.
  const axis = 16;
  const volH = (h - axis) * 0.2;
  const priceH = h - axis - volH - 14;
  const y = (v) => 8 + priceH * (1 - (v - lo) / span);
  const vmax = Math.max(1, ...bars.map((b) => b.v || 0));
  const step = Math.min(24, (w - 60) / Math.max(bars.length, 10));
  ctx.font = '11px monospace';
  ctx.fillStyle = '#7a8794';
  ctx.fillText(String(hi), w - 55, 14);
  ctx.fillText(String(lo), w - 55, 8 + priceH);
  const hhmm = (t) => new Date(t).toLocaleTimeString('en-GB', { timeZone: 'Asia/Shanghai', hour: '2-digit', minute: '2-digit' });
  const every = Math.max(1, Math.ceil(60 / step));
  bars.forEach((b, i) => {
    const x = 10 + i * step + step / 2;
    if (i % every === 0) {
      ctx.fillStyle = '#7a8794';
      ctx.fillText(hhmm(b.t), x - 14, h - 3);
    }
    const color = b.c >= b.o ? '#e5484d' : '#30a46c';
    ctx.fillStyle = color + '80';
    const vh = volH * ((b.v || 0) / vmax);
    ctx.fillRect(x - step * 0.35, h - axis - vh, step * 0.7, vh);
    ctx.strokeStyle = ctx.fillStyle = color;
    ctx.beginPath();
    ctx.moveTo(x, y(b.h));
    ctx.lineTo(x, y(b.l));
    ctx.stroke();
    const top = y(Math.max(b.o, b.c));
    ctx.fillRect(x - step * 0.35, top, step * 0.7, Math.max(1, y(Math.min(b.o, b.c)) - top));
  });
  canvas.dataset.candles = String(bars.length);
}

async function select(symbol) {
  const c = state.client;
  if (state.selected) {
    await c.unsubscribe('depth', { symbols: [state.selected] }).catch(() => {});
    await c.unsubscribe(state.interval, { symbols: [state.selected] }).catch(() => {});
  }
  state.selected = symbol;
  state.candles = [];
  drawChart();
  document.querySelectorAll('#watchlist tr').forEach((r) => r.classList.toggle('selected', r.dataset.symbol === symbol));
  $('#chart-symbol').textContent = symbol;
  $('#depth-symbol').textContent = symbol;
  await c.subscribe('depth', { symbols: [symbol] });
  await c.subscribe(state.interval, { symbols: [symbol], history: CHART_BARS });
}

// ---- private --------------------------------------------------------------

// A row per key, replaced in place when the key comes again.
function upsertRow(tbody, id, html) {
  let row = document.getElementById(id);
  if (!row) {
    row = document.createElement('tr');
    row.id = id;
    $(tbody).prepend(row);
  }
  row.innerHTML = html;
  return row;
}

const domId = (prefix, ...parts) => `${prefix}-${parts.map((p) => String(p ?? '')).join('-').replace(/[^\w-]/g, '_')}`;

function onOrder(data, msg) {
  upsertRow('#orders tbody', domId('order', data.order_id || msg.sequence),
    cells(msg.sequence, data.order_id, data.symbol, data.side, data.quantity, data.price, data.status));
}

function onPosition(data) {
  const row = upsertRow('#positions tbody', domId('position', data.symbol, data.side),
    cells(data.symbol, data.side, data.quantity, data.avg_price, data.unrealized_pnl));
  const pnl = Number(data.unrealized_pnl);
  row.lastElementChild.className = pnl > 0 ? 'up' : pnl < 0 ? 'down' : '';
}

function onAccount(data) {
  const keys = ['total_assets', 'available_cash', 'frozen_cash', 'market_value', ...Object.keys(data)];
  const rows = [...new Set(keys)].filter((k) => data[k] !== undefined && typeof data[k] !== 'object')
    .map((k) => `<tr data-key="${esc(k)}"><td>${esc(k.replace(/_/g, ' '))}</td><td>${esc(data[k])}</td></tr>`);
  $('#account tbody').innerHTML = rows.join('');
}

// A reconnect replays the streams from since: 0 again; each message is
// shown once, by its place in its stream.
const shown = new Set();
function firstTime(msg) {
  const key = `${msg.channel}/${msg.broadcast ? '*' : ''}/${msg.strategy_id || ''}/${msg.epoch}/${msg.sequence}`;
  if (shown.has(key)) return false;
  shown.add(key);
  return true;
}

function onSignal(data, msg) {
  if (!firstTime(msg)) return;
  const tr = document.createElement('tr');
  tr.className = data.signal === 'BUY' ? 'up' : data.signal === 'SELL' ? 'down' : '';
  tr.title = data.reason || '';
  tr.innerHTML = cells(data.strategy_name || msg.strategy_id, data.symbol, data.signal, data.price, data.confidence);
  $('#signals tbody').prepend(tr);
}

function onNotification(data, msg) {
  if (!firstTime(msg)) return;
  const li = document.createElement('li');
  li.className = `level-${data.level || 'INFO'}`;
  li.textContent = `[${msg.type}] ${data.title || ''} ${data.message || ''}`.trim();
  $('#notifications').prepend(li);
}

// ---- start ----------------------------------------------------------------

async function start() {
  const res = await fetch('/api/v1/symbols');
  state.symbols = res.ok ? (await res.json()).symbols : [OPEN_SYMBOL];
  state.symbols.forEach(renderWatchRow); // every one: the list scrolls
  $('#symbol-count').textContent = String(state.symbols.length);
  $('#strategies').textContent = STRATEGIES.join(', ');

  const client = new MarketcastClient({ url: wsURL, getToken });
  state.client = client;
  window.marketcast = client; // for the console and the browser test
  client.on('auth', (a) => {
    setStatus('open', 'live');
    $('#user').textContent = `user ${a.user_id}`;
    syncClock().catch(() => {}); // keeps the browser's clock otherwise
  });
  client.on('close', (e) => setStatus('closed', `closed (${e.code})`));
  client.on('reconnecting', (e) => setStatus('reconnecting', `reconnecting in ${e.delay} ms`));
  client.on('market_data', onTick);
  client.on('depth', onDepth);
  client.on('kline', onKline);
  client.on('order_update', onOrder);
  client.on('position_update', onPosition);
  client.on('account_update', onAccount);
  client.on('strategy_signal', onSignal);
  client.on('notifications', onNotification);
  setInterval(renderFreshness, 250);

  try {
    await client.connect();
  } catch (err) {
    setStatus('closed', err.message);
    $('#token-form').hidden = false;
    return;
  }
  await client.subscribe('market_data', { symbols: state.symbols });
  // since: 0 replays what the streams' current runs hold, so orders, alerts
  // and signals published before the page opened are shown too; positions
  // and account send their latest state.
  await client.subscribe('orders', { since: 0 });
  await client.subscribe('notifications', { since: 0, broadcast_since: 0 });
  await client.subscribe('positions');
  await client.subscribe('account');
  for (const strategy_id of STRATEGIES) {
    await client.subscribe('strategy_signals', { strategy_id, since: 0 }).catch(() => {}); // needs read:signals
  }
  // The seed's own example first, when the feed has it.
  await select(state.symbols.includes(OPEN_SYMBOL) ? OPEN_SYMBOL : state.symbols[0]);
}

$('#interval').addEventListener('change', async (e) => {
  const c = state.client;
  if (state.selected) await c.unsubscribe(state.interval, { symbols: [state.selected] }).catch(() => {});
  state.interval = e.target.value;
  state.candles = [];
  drawChart();
  if (state.selected) await c.subscribe(state.interval, { symbols: [state.selected], history: CHART_BARS });
});

$('#token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem('marketcast-token', $('#token').value.trim());
  location.reload();
});

start();
