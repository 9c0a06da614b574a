// Generated from the Go package protocol by protocol/js_test.go: do not edit.
// Regenerate with: go test ./protocol -run TestJSProtocolFile -update

/** Every channel name a request may use, with what it pushes. */
export const CHANNELS = Object.freeze({
  account: Object.freeze({ push: 'account', type: 'account_update', kind: 'private', snapshot: true, reliable: true }),
  depth: Object.freeze({ push: 'depth', type: 'depth', kind: 'market', snapshot: true, reliable: false }),
  kline_15m: Object.freeze({ push: 'kline_15m', type: 'kline', kind: 'market', snapshot: true, reliable: false }),
  kline_1d: Object.freeze({ push: 'kline_1d', type: 'kline', kind: 'market', snapshot: true, reliable: false }),
  kline_1h: Object.freeze({ push: 'kline_1h', type: 'kline', kind: 'market', snapshot: true, reliable: false }),
  kline_1m: Object.freeze({ push: 'kline_1m', type: 'kline', kind: 'market', snapshot: true, reliable: false }),
  kline_30m: Object.freeze({ push: 'kline_30m', type: 'kline', kind: 'market', snapshot: true, reliable: false }),
  kline_5m: Object.freeze({ push: 'kline_5m', type: 'kline', kind: 'market', snapshot: true, reliable: false }),
  market_data: Object.freeze({ push: 'tick', type: 'market_data', kind: 'market', snapshot: true, reliable: false }),
  notifications: Object.freeze({ push: 'notifications', type: 'risk_alert', kind: 'private', snapshot: false, reliable: true }),
  orders: Object.freeze({ push: 'orders', type: 'order_update', kind: 'private', snapshot: false, reliable: true }),
  positions: Object.freeze({ push: 'positions', type: 'position_update', kind: 'private', snapshot: true, reliable: true }),
  signals: Object.freeze({ push: 'signals', type: 'strategy_signal', kind: 'signals', snapshot: false, reliable: true }),
  strategy_signals: Object.freeze({ push: 'signals', type: 'strategy_signal', kind: 'signals', snapshot: false, reliable: true }),
  tick: Object.freeze({ push: 'tick', type: 'market_data', kind: 'market', snapshot: true, reliable: false }),
});

/** Channels whose messages are never conflated: resumable with since and epoch. */
export const RELIABLE_CHANNELS = new Set(['account', 'notifications', 'orders', 'positions', 'signals', 'strategy_signals']);

/** Request types. */
export const REQUEST = Object.freeze({
  AUTH: 'auth',
  SUBSCRIBE: 'subscribe',
  UNSUBSCRIBE: 'unsubscribe',
  PING: 'ping',
  CREDIT: 'credit',
});

/** Answer types. */
export const ANSWER = Object.freeze({
  AUTH: 'auth_response',
  SUBSCRIBE: 'subscribe_response',
  UNSUBSCRIBE: 'unsubscribe_response',
  PONG: 'pong',
  ERROR: 'error',
});

/** Push types. */
export const TYPE = Object.freeze({
  MARKET_DATA: 'market_data',
  DEPTH: 'depth',
  KLINE: 'kline',
  ORDER_UPDATE: 'order_update',
  POSITION_UPDATE: 'position_update',
  ACCOUNT_UPDATE: 'account_update',
  RISK_ALERT: 'risk_alert',
  SYSTEM_NOTICE: 'system_notice',
  STRATEGY_SIGNAL: 'strategy_signal',
});

/** Token permissions. */
export const PERMISSION = Object.freeze({
  READ_MARKET_DATA: 'read:market_data',
  READ_SIGNALS: 'read:signals',
  PUBLISH: 'publish',
});

/** Error codes. */
export const ERROR = Object.freeze({
  INVALID_JSON: 'INVALID_JSON',
  INVALID_MESSAGE: 'INVALID_MESSAGE',
  UNKNOWN_TYPE: 'UNKNOWN_TYPE',
  UNKNOWN_CHANNEL: 'UNKNOWN_CHANNEL',
  UNKNOWN_SYMBOL: 'UNKNOWN_SYMBOL',
  UNKNOWN_FIELD: 'UNKNOWN_FIELD',
  NOT_AUTHENTICATED: 'NOT_AUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  RATE_LIMITED: 'RATE_LIMITED',
  TOO_MANY_SUBSCRIPTIONS: 'TOO_MANY_SUBSCRIPTIONS',
  AUTH_FAILED: 'AUTH_FAILED',
  TOKEN_EXPIRED: 'TOKEN_EXPIRED',
  UNAVAILABLE: 'UNAVAILABLE',
  INTERNAL: 'INTERNAL',
  INVALID_REQUEST: 'INVALID_REQUEST',
  OUTCOME_UNKNOWN: 'OUTCOME_UNKNOWN',
});

/** Close codes. */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL: 1002,
  UNSUPPORTED: 1003,
  POLICY: 1008,
  TOO_LARGE: 1009,
  AUTH_FAILED: 4001,
  TOKEN_EXPIRED: 4002,
  SLOW_CONSUMER: 4008,
  RESUME_REQUIRED: 4009,
  RATE_LIMITED: 4029,
});

/** Flow control: the server's limits and the clients' grant policy (docs/PROTOCOL.md). */
export const FLOW = Object.freeze({
  MAX_CREDIT: 1000000,
  INITIAL_CREDIT: 32,
  MIN_GRANT: 8,
  MAX_GRANT: 1000,
  GRANT_MILLIS: 250,
  MIN_INTERVAL_MILLIS: 10,
  MAX_INTERVAL_MILLIS: 60000,
});

/** Tick data keys a subscription's fields may select. */
export const TICK_FIELDS = Object.freeze(['last_price', 'bid_price', 'ask_price', 'bid_volume', 'ask_volume', 'volume', 'turnover', 'open_interest', 'change', 'change_percent', 'update_time', 'open', 'high', 'low', 'pre_settlement', 'upper_limit', 'lower_limit', 'average_price']);

/** Short names of tick keys. */
export const FIELD_ALIASES = Object.freeze({ ask: 'ask_price', bid: 'bid_price' });

/** The identity of the broadcast notifications topic. */
export const BROADCAST_ID = '*';
