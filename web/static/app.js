// The demo terminal: watch list, depth ladder, candlestick chart, orders and
// notifications, all fed by the marketcast JavaScript client.
import { MarketcastClient } from '/js/marketcast.js';

const $ = (sel) => document.querySelector(sel);
const wsURL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const state = { symbols: [], selected: null, interval: 'kline_1m', ticks: new Map(), candles: [], client: null };

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
  const bar = { t: data.start_time, o: +data.open, h: +data.high, l: +data.low, c: +data.close };
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
  const y = (v) => 10 + (h - 30) * (1 - (v - lo) / span);
  const step = Math.min(24, (w - 60) / Math.max(bars.length, 10));
  ctx.font = '11px monospace';
  ctx.fillStyle = '#7a8794';
  ctx.fillText(String(hi), w - 55, 14);
  ctx.fillText(String(lo), w - 55, h - 22);
  bars.forEach((b, i) => {
    const x = 10 + i * step + step / 2;
    const color = b.c >= b.o ? '#e5484d' : '#30a46c';
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

function onOrder(data, msg) {
  const id = `order-${String(data.order_id || msg.sequence).replace(/[^\w-]/g, '_')}`;
  let row = document.getElementById(id);
  if (!row) {
    row = document.createElement('tr');
    row.id = id;
    $('#orders tbody').prepend(row);
  }
  const cell = (v) => `<td>${v === undefined ? '' : String(v).replace(/[<&]/g, '')}</td>`;
  row.innerHTML = cell(msg.sequence) + cell(data.order_id) + cell(data.symbol) + cell(data.side) + cell(data.quantity) + cell(data.price) + cell(data.status);
}

function onNotification(data, msg) {
  const li = document.createElement('li');
  li.className = `level-${data.level || 'INFO'}`;
  li.textContent = `[${msg.type}] ${data.title || ''} ${data.message || ''}`.trim();
  $('#notifications').prepend(li);
}

// ---- start ----------------------------------------------------------------

async function start() {
  const res = await fetch('/api/v1/symbols');
  state.symbols = res.ok ? (await res.json()).symbols.slice(0, 12) : ['SHFE.rb2405', 'SHFE.hc2405'];
  state.symbols.forEach(renderWatchRow);

  const client = new MarketcastClient({ url: wsURL, getToken });
  state.client = client;
  window.marketcast = client; // for the console and the browser test
  client.on('auth', (a) => { setStatus('open', 'live'); $('#user').textContent = `user ${a.user_id}`; });
  client.on('close', (e) => setStatus('closed', `closed (${e.code})`));
  client.on('reconnecting', (e) => setStatus('reconnecting', `reconnecting in ${e.delay} ms`));
  client.on('market_data', onTick);
  client.on('depth', onDepth);
  client.on('kline', onKline);
  client.on('order_update', onOrder);
  client.on('notifications', onNotification);

  try {
    await client.connect();
  } catch (err) {
    setStatus('closed', err.message);
    $('#token-form').hidden = false;
    return;
  }
  await client.subscribe('market_data', { symbols: state.symbols });
  await client.subscribe('orders');
  await client.subscribe('notifications');
  // The seed's own example first, when the feed has it.
  await select(state.symbols.includes('SHFE.rb2405') ? 'SHFE.rb2405' : state.symbols[0]);
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
