// marketcast JavaScript client: a dependency-free ES module for browsers and
// Node (native WebSocket). It authenticates, subscribes, dispatches messages
// by type and channel, keeps the connection alive, reconnects with
// exponential backoff and jitter, resubscribes, resumes private channels
// from the last {epoch, sequence} it saw, detects sequence gaps and
// refreshes its token before it expires. Protocol: docs/PROTOCOL.md; the
// names it uses come from protocol.js, generated from the server's own.

import { CHANNELS, RELIABLE_CHANNELS, CLOSE, BROADCAST_ID, REQUEST, ANSWER, FLOW } from './protocol.js';

export { CHANNELS, RELIABLE_CHANNELS, CLOSE, ERROR, TYPE, TICK_FIELDS, BROADCAST_ID, FLOW } from './protocol.js';

/** Answer types: every other message is pushed on a subscription and uses credit. */
const ANSWERS = new Set(Object.values(ANSWER));

/** Weight of the newest handling time in its moving average. */
const HANDLE_EWMA = 0.2;

/**
 * The credit window for a measured handling time per message (ms): what
 * the application gets through in about FLOW.GRANT_MILLIS, within
 * [FLOW.MIN_GRANT, FLOW.MAX_GRANT]; FLOW.MAX_GRANT before anything is
 * measured or when handling takes no measurable time.
 */
export function grantSize(handleMs) {
  if (!(handleMs > 0)) return FLOW.MAX_GRANT;
  return Math.max(FLOW.MIN_GRANT, Math.min(FLOW.MAX_GRANT, Math.floor(FLOW.GRANT_MILLIS / handleMs)));
}

const now = () => (globalThis.performance ? globalThis.performance.now() : Date.now());

/** Channels resumable with since and epoch (the name of earlier versions). */
export const PRIVATE_CHANNELS = RELIABLE_CHANNELS;

/** An error answered by the server: `code` is the protocol's error code. */
export class MarketcastError extends Error {
  constructor(code, message, details) {
    super(message || code);
    this.name = 'MarketcastError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

/**
 * Reconnect delay for attempt n (0-based): exponential growth capped at
 * maxDelay, with "equal jitter" — half fixed, half random — so clients that
 * lost the same server do not come back in lockstep.
 */
export function backoffDelay(attempt, { initialDelay = 500, maxDelay = 30000, factor = 2 } = {}, random = Math.random) {
  const base = Math.min(maxDelay, initialDelay * Math.pow(factor, attempt));
  return Math.round(base / 2 + random() * (base / 2));
}

/** The push channel a subscribe channel delivers on. */
function pushChannel(channel) {
  return CHANNELS[channel] ? CHANNELS[channel].push : channel;
}

/** The key of the broadcast notifications stream. */
const BROADCAST_KEY = `notifications:${BROADCAST_ID}`;

/** The sequence-tracking key of a pushed message. */
function topicKey(msg) {
  if (msg.symbol) return `${msg.channel}:${msg.symbol}`;
  if (msg.strategy_id) return `${msg.channel}:${msg.strategy_id}`;
  if (msg.broadcast) return `${msg.channel}:${BROADCAST_ID}`;
  return msg.channel;
}

export class MarketcastClient {
  /**
   * @param {object} options
   * @param {string} options.url            ws://host:8000/ws
   * @param {string} [options.token]        a JWT
   * @param {() => (string|Promise<string>)} [options.getToken] called for every (re)connect and refresh
   */
  constructor(options = {}) {
    if (!options.url) throw new TypeError('marketcast: url is required');
    this.options = {
      authTimeout: 5000,
      requestTimeout: 10000,
      heartbeatInterval: 25000,
      heartbeatTimeout: 10000,
      refreshBeforeExpiry: 60000,
      reconnect: true,
      initialDelay: 500,
      maxDelay: 30000,
      factor: 2,
      maxAttempts: Infinity,
      flowControl: true,
      ...options,
    };
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) throw new TypeError('marketcast: no WebSocket implementation (Node 20: --experimental-websocket)');
    this.ws = null;
    this.state = 'idle'; // idle | connecting | open | reconnecting | closed
    this.user = null;
    this.handlers = new Map();
    this.pending = new Map(); // request id → {resolve, reject, timer}
    this.subscriptions = new Map(); // key → {channel, options}
    this.streams = new Map(); // topic key → {sequence, epoch} last seen
    this.attempt = 0;
    this.nextId = 1;
    this.timers = { heartbeat: null, pong: null, refresh: null, reconnect: null };
    this.closedByUser = false;
    this.random = options.random || Math.random;
    // Flow control (docs/PROTOCOL.md): what this connection granted, what
    // came and what the handlers have finished, and the handlers' measured
    // time per message, which outlives connections (it is the
    // application's speed, not the server's).
    this.flow = { granted: 0, received: 0, handled: 0, handleMs: null };
  }

  // ---- events -------------------------------------------------------------

  /** Listen to a message type ('market_data', 'order_update'…), a channel ('tick', 'orders'…) or a lifecycle event ('open', 'auth', 'close', 'reconnecting', 'gap', 'resume_failed', 'error'). */
  on(event, handler) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(handler);
    return () => this.off(event, handler);
  }

  once(event, handler) {
    const wrapped = (...args) => {
      this.off(event, wrapped);
      handler(...args);
    };
    return this.on(event, wrapped);
  }

  off(event, handler) {
    const set = this.handlers.get(event);
    if (set) set.delete(handler);
  }

  emit(event, ...args) {
    const set = this.handlers.get(event);
    if (!set) return;
    for (const h of [...set]) {
      try {
        h(...args);
      } catch (err) {
        if (event !== 'error') this.emit('error', err);
      }
    }
  }

  // ---- connection ---------------------------------------------------------

  /** Connects and authenticates. Resolves with the auth data; rejects with a MarketcastError. */
  connect() {
    this.closedByUser = false;
    return this.open();
  }

  async token() {
    if (this.options.getToken) return await this.options.getToken();
    return this.options.token;
  }

  open() {
    this.state = this.state === 'reconnecting' ? 'reconnecting' : 'connecting';
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err) => {
        if (!settled) {
          settled = true;
          reject(err);
        }
      };
      let ws;
      try {
        ws = new this.WebSocket(this.options.url);
      } catch (err) {
        fail(err);
        return;
      }
      this.ws = ws;
      ws.onopen = async () => {
        this.emit('open');
        try {
          const data = await this.authenticate();
          settled = true;
          this.afterAuth(data);
          resolve(data);
        } catch (err) {
          fail(err);
        }
      };
      ws.onmessage = (ev) => this.receive(ev.data);
      // A socket ends once: by its close event, or by an error before it
      // opened (Node's WebSocket sends no close event after a failed connect).
      let ended = false;
      const end = (ev, err) => {
        if (ended) return;
        ended = true;
        fail(err);
        this.handleClose(ws, ev);
      };
      ws.onerror = () => {
        if (ws.readyState === this.WebSocket.CONNECTING || ws.readyState === this.WebSocket.CLOSED) {
          end({ code: 1006, reason: 'connection failed' }, new MarketcastError('CONNECT_FAILED', `cannot connect to ${this.options.url}`));
        }
      };
      ws.onclose = (ev) => {
        end(ev, new MarketcastError('CLOSED', `connection closed (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`, { code: ev.code }));
      };
    });
  }

  async authenticate() {
    const token = await this.token();
    if (!token) throw new MarketcastError('NOT_AUTHENTICATED', 'no token: pass token or getToken');
    const res = await this.request({ type: REQUEST.AUTH, data: { token } }, this.options.authTimeout, ANSWER.AUTH);
    if (res.data.status !== 'success') {
      throw new MarketcastError(res.data.code || 'AUTH_FAILED', res.data.message || 'authentication failed');
    }
    return res.data;
  }

  afterAuth(data) {
    const wasReconnect = this.attempt > 0 || this.state === 'reconnecting';
    this.state = 'open';
    this.user = data;
    this.attempt = 0;
    this.emit('auth', data);
    this.startHeartbeat();
    this.scheduleRefresh(data.expires_at);
    if (wasReconnect) this.emit('reconnected', data);
    this.startFlow();
    this.resubscribe();
  }

  // ---- flow control -------------------------------------------------------

  /**
   * Turns flow control on for a new connection (unless flowControl is
   * false): the first grant, before anything is subscribed. The server then
   * pushes only what was granted; market data it cannot push yet waits
   * there, conflated to the newest, so a busy application sees fresh data,
   * never a backlog.
   */
  startFlow() {
    const f = this.flow;
    f.granted = f.received = f.handled = 0;
    if (this.options.flowControl) this.grant(FLOW.INITIAL_CREDIT);
  }

  grant(n) {
    const f = this.flow;
    try {
      this.send({ type: REQUEST.CREDIT, n });
    } catch {
      return; // closed: the next connection grants afresh
    }
    f.granted += n;
  }

  /**
   * Counts one pushed message handled (its handlers returned after ms) and
   * keeps the credit outstanding (granted, not yet handled) near a window
   * of what the handlers get through in about FLOW.GRANT_MILLIS: once half
   * of it has been handled, it grants the rest back. Granting a full window
   * each time instead would let the outstanding credit grow without bound.
   */
  handled(ms) {
    const f = this.flow;
    f.handled++;
    f.handleMs = f.handleMs === null ? ms : f.handleMs + HANDLE_EWMA * (ms - f.handleMs);
    if (!this.options.flowControl || f.granted === 0) return;
    const window = grantSize(f.handleMs);
    const outstanding = f.granted - f.handled;
    if (outstanding * 2 <= window) this.grant(window - outstanding);
  }

  /**
   * Flow control on this connection: whether it is on, the credit granted,
   * the pushed messages received and handled, and the handlers' average
   * time per message (ms).
   */
  flowState() {
    const { granted, received, handled, handleMs } = this.flow;
    return { enabled: !!this.options.flowControl, granted, received, handled, handleMs, outstanding: granted - received };
  }

  /** Re-authenticates in place with a fresh token (subscriptions are kept). */
  async refreshToken() {
    const data = await this.authenticate();
    this.user = data;
    this.scheduleRefresh(data.expires_at);
    this.emit('auth', data);
    return data;
  }

  scheduleRefresh(expiresAt) {
    clearTimeout(this.timers.refresh);
    if (!this.options.getToken || !expiresAt) return;
    const wait = Date.parse(expiresAt) - Date.now() - this.options.refreshBeforeExpiry;
    this.timers.refresh = setTimeout(() => {
      this.refreshToken().catch((err) => this.emit('error', err));
    }, Math.max(0, wait));
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.timers.heartbeat = setInterval(() => {
      this.request({ type: REQUEST.PING, timestamp: new Date().toISOString() }, this.options.heartbeatTimeout, ANSWER.PONG).catch(() => {
        // No pong in time: the connection is dead even if the socket does not know yet.
        if (this.ws) this.ws.close(4000, 'heartbeat timeout');
      });
    }, this.options.heartbeatInterval);
  }

  stopHeartbeat() {
    clearInterval(this.timers.heartbeat);
    this.timers.heartbeat = null;
  }

  handleClose(ws, ev) {
    if (ws !== this.ws) return;
    this.stopHeartbeat();
    clearTimeout(this.timers.refresh);
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new MarketcastError('CLOSED', `connection closed (${ev.code})`, { code: ev.code }));
      this.pending.delete(id);
    }
    this.emit('close', { code: ev.code, reason: ev.reason });
    if (this.closedByUser || !this.options.reconnect) {
      this.state = 'closed';
      return;
    }
    if (ev.code === CLOSE.AUTH_FAILED && !this.options.getToken) {
      // The same token will fail again.
      this.state = 'closed';
      this.emit('error', new MarketcastError('AUTH_FAILED', 'authentication failed; not reconnecting without getToken'));
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.attempt >= this.options.maxAttempts) {
      this.state = 'closed';
      this.emit('error', new MarketcastError('RECONNECT_FAILED', `gave up after ${this.attempt} attempts`));
      return;
    }
    const delay = backoffDelay(this.attempt, this.options, this.random);
    this.attempt++;
    this.state = 'reconnecting';
    this.emit('reconnecting', { attempt: this.attempt, delay });
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(() => {
      if (this.closedByUser) return;
      this.open().catch(() => {
        // onclose already scheduled the next attempt
      });
    }, delay);
  }

  /** Closes with 1000 and stops reconnecting. */
  close() {
    this.closedByUser = true;
    this.state = 'closed';
    clearTimeout(this.timers.reconnect);
    clearTimeout(this.timers.refresh);
    this.stopHeartbeat();
    if (this.ws && this.ws.readyState <= 1) this.ws.close(CLOSE.NORMAL, 'client closed');
  }

  // ---- requests -----------------------------------------------------------

  send(msg) {
    if (!this.ws || this.ws.readyState !== this.WebSocket.OPEN) {
      throw new MarketcastError('NOT_CONNECTED', 'not connected');
    }
    this.ws.send(JSON.stringify(msg));
  }

  request(msg, timeout = this.options.requestTimeout, answerType) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new MarketcastError('TIMEOUT', `no ${answerType || 'answer'} within ${timeout} ms`));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
      try {
        this.send({ ...msg, id });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      }
    });
  }

  subKey(channel, options) {
    const o = { ...options };
    // Where to start is not what is subscribed: an unsubscribe without them
    // ends the subscription, and a reconnect asks them again.
    delete o.since;
    delete o.history;
    return channel + ' ' + JSON.stringify(o, Object.keys(o).sort());
  }

  /**
   * Subscribes and resolves with the server's answer data (status, symbols,
   * recovered…). Remembered, so it is renewed after every reconnect; private
   * channels then resume from the last sequence seen.
   */
  async subscribe(channel, options = {}) {
    this.subscriptions.set(this.subKey(channel, options), { channel, options });
    if (this.state !== 'open') return { status: 'pending', channel };
    return this.sendSubscribe(channel, options);
  }

  async sendSubscribe(channel, options) {
    const msg = { type: REQUEST.SUBSCRIBE, channel, ...options };
    const reliable = RELIABLE_CHANNELS.has(channel);
    const key = this.privateKey(channel, options);
    const broadcast = pushChannel(channel) === 'notifications';
    if (reliable && msg.since === undefined) {
      // Resume where this client stands: the sequence and the run (epoch)
      // it was seen in, so a restarted stream cannot pass for the old one.
      const pos = this.streams.get(key);
      if (pos) Object.assign(msg, { since: pos.sequence, epoch: pos.epoch });
      const bpos = broadcast && this.streams.get(BROADCAST_KEY);
      if (bpos) Object.assign(msg, { broadcast_since: bpos.sequence, broadcast_epoch: bpos.epoch });
    }
    const res = await this.request(msg);
    if (res.type === ANSWER.ERROR) throw new MarketcastError(res.data.code, res.data.message);
    if (reliable) {
      this.settle(channel, key, msg.since, msg.epoch, res.data.recovered, res.data.epoch, res.data.sequence);
      const b = res.data.broadcast;
      if (b) this.settle(channel, BROADCAST_KEY, msg.broadcast_since, msg.broadcast_epoch, b.recovered, b.epoch, b.sequence);
    }
    return res.data;
  }

  /**
   * Records where a reliable stream stands after a subscribe answer and
   * reports the outcome of a resume: `resumed` (the replay follows), or
   * `resume_failed` (history no longer reaches back, or the stream is a new
   * run: refetch that state elsewhere; tracking restarts at the stream's
   * current position).
   */
  settle(channel, topic, since, epoch, recovered, currentEpoch, sequence) {
    if (since === undefined) {
      this.streams.set(topic, { sequence, epoch: currentEpoch });
      return;
    }
    const detail = { channel, topic, since, epoch, recovered: !!recovered, current_epoch: currentEpoch, sequence };
    if (recovered) {
      this.emit('resumed', detail);
      return;
    }
    detail.reason = epoch && epoch !== currentEpoch ? 'epoch' : 'history';
    this.streams.set(topic, { sequence, epoch: currentEpoch });
    this.emit('resume_failed', detail);
  }

  privateKey(channel, options) {
    const ch = pushChannel(channel);
    return CHANNELS[channel] && CHANNELS[channel].kind === 'signals' ? `${ch}:${options.strategy_id}` : ch;
  }

  async unsubscribe(channel, options = {}) {
    this.subscriptions.delete(this.subKey(channel, options));
    if (this.state !== 'open') return { status: 'success', channel };
    const res = await this.request({ type: REQUEST.UNSUBSCRIBE, channel, ...options });
    if (res.type === ANSWER.ERROR) throw new MarketcastError(res.data.code, res.data.message);
    return res.data;
  }

  resubscribe() {
    for (const { channel, options } of this.subscriptions.values()) {
      this.sendSubscribe(channel, options).catch((err) => this.emit('error', err));
    }
  }

  // ---- messages -----------------------------------------------------------

  receive(raw) {
    let msg;
    try {
      msg = JSON.parse(typeof raw === 'string' ? raw : new TextDecoder().decode(raw));
    } catch (err) {
      this.emit('error', new MarketcastError('INVALID_JSON', 'server sent invalid JSON'));
      return;
    }
    this.handleMessage(msg);
  }

  handleMessage(msg) {
    if (msg.id !== undefined && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.type === ANSWER.ERROR) p.reject(new MarketcastError(msg.data.code, msg.data.message));
      else p.resolve(msg);
      return;
    }
    if (msg.type === ANSWER.ERROR) {
      this.emit('error', new MarketcastError(msg.data.code, msg.data.message));
      return;
    }
    if (msg.sequence !== undefined && msg.channel) this.track(msg);
    const pushed = !ANSWERS.has(msg.type);
    if (pushed) this.flow.received++;
    const t0 = now();
    this.emit(msg.type, msg.data, msg);
    if (msg.channel && msg.channel !== msg.type) this.emit(msg.channel, msg.data, msg);
    if (pushed) this.handled(now() - t0);
  }

  /**
   * Records the position of a pushed message and reports, on reliable
   * topics, gaps, duplicates and a change of run (epoch).
   */
  track(msg) {
    const key = topicKey(msg);
    const pos = this.streams.get(key);
    const reliable = !msg.symbol; // market topics conflate: skipped numbers are normal
    const at = { sequence: msg.sequence, epoch: msg.epoch };
    if (pos === undefined || msg.snapshot) {
      this.streams.set(key, at);
      return;
    }
    if (reliable && msg.epoch !== undefined && pos.epoch !== msg.epoch) {
      // Another run of the stream. Before anything was seen it only names
      // the run that has now begun; after, what the old run still owed
      // may be lost.
      this.streams.set(key, at);
      if (pos.sequence > 0) {
        this.emit('resume_failed', { channel: msg.channel, topic: key, since: pos.sequence, epoch: pos.epoch,
          recovered: false, current_epoch: msg.epoch, sequence: msg.sequence, reason: 'epoch' });
      }
      return;
    }
    if (msg.sequence <= pos.sequence) {
      if (reliable) {
        this.emit('duplicate', { topic: key, sequence: msg.sequence, last: pos.sequence });
      } else {
        this.streams.set(key, at); // a restarted server: numbering starts again
      }
      return;
    }
    if (reliable && msg.sequence > pos.sequence + 1) {
      this.emit('gap', { topic: key, expected: pos.sequence + 1, got: msg.sequence });
    }
    this.streams.set(key, at);
  }

  /** The last sequence seen on a topic key such as 'orders' or 'tick:SHFE.rb2405'. */
  lastSequence(key) {
    const pos = this.streams.get(key);
    return pos && pos.sequence;
  }

  /** The last {sequence, epoch} seen on a topic key ('orders', 'notifications:*'…). */
  position(key) {
    const pos = this.streams.get(key);
    return pos && { ...pos };
  }
}

export default MarketcastClient;
