// Type declarations for marketcast.js.

export type Channel =
  | 'market_data' | 'tick' | 'depth'
  | 'kline_1m' | 'kline_5m' | 'kline_15m' | 'kline_30m' | 'kline_1h' | 'kline_1d'
  | 'orders' | 'positions' | 'account' | 'notifications' | 'strategy_signals';

export interface Envelope<T = Record<string, unknown>> {
  type: string;
  channel: string;
  symbol?: string;
  strategy_id?: string;
  data: T;
  timestamp: string;
  sequence: number;
  /** Reliable topics: the run of the topic's sequence this message belongs to. */
  epoch?: string;
  /** A system notice of the broadcast stream every user shares. */
  broadcast?: boolean;
  snapshot?: boolean;
}

export interface Tick {
  last_price: string; bid_price: string; ask_price: string;
  bid_volume: string; ask_volume: string; volume: string; turnover: string;
  open_interest: string; change: string; change_percent: string;
}

export interface Kline {
  open: string; high: string; low: string; close: string; volume: string; turnover: string;
  start_time: string; end_time: string; closed: boolean;
  open_interest?: string; trading_day?: string; partial?: boolean;
}

export interface Depth { bids: [string, string][]; asks: [string, string][]; levels: number; }

export interface AuthData {
  status: 'success' | 'error';
  user_id?: string;
  permissions?: string[];
  expires_at?: string;
  code?: string;
  message?: string;
}

export interface SubscribeOptions {
  symbols?: string[];
  fields?: string[];
  user_id?: string | number;
  strategy_id?: string;
  /**
   * kline channels: first send up to this many closed bars, oldest first
   * (at most the server's feed.bar_history, 500 by default). Asked again
   * after a reconnect, so a chart has no gap.
   */
  history?: number;
  /**
   * Market channels: at most one update per topic per interval_ms (10 to
   * 60000; 0 or absent: every update), always the newest, none held back
   * longer than the interval; closed bars are never held. Not on private
   * channels or signals (INVALID_REQUEST).
   */
  interval_ms?: number;
  /**
   * market_data only: false sends every tick in order, never replaced (a
   * backlog the server bounds by delivery.max_pending_bytes, then closes
   * with 4008). Default true: a slow client gets the newest tick.
   */
  conflate?: boolean;
  /** Resume after this sequence (the client sends it itself after a reconnect). */
  since?: number;
  /** The run since was seen in. */
  epoch?: string;
  broadcast_since?: number;
  broadcast_epoch?: string;
}

export interface StreamPosition {
  /** Absent while the stream has no run (nothing published yet). */
  epoch?: string;
  sequence: number;
  recovered?: boolean;
}

export interface SubscribeResult {
  status: string;
  channel: string;
  symbols?: string[];
  fields?: string[];
  user_id?: string;
  strategy_id?: string;
  /** Reliable channels: the stream's epoch (absent while it has no run) and last sequence when subscribed. */
  epoch?: string;
  sequence?: number;
  recovered?: boolean;
  /** notifications: the broadcast stream's position. */
  broadcast?: StreamPosition;
  /** Market channels: the interval_ms and conflate: false taken. */
  interval_ms?: number;
  conflate?: boolean;
}

/** Flow control on the current connection (flowState()). */
export interface FlowState {
  /** flowControl is on. */
  enabled: boolean;
  /** Credit granted on this connection, pushed messages received, handled. */
  granted: number;
  received: number;
  handled: number;
  /** Credit the server still holds for this client (granted − received). */
  outstanding: number;
  /** The handlers' average time per message, ms (null before the first). */
  handleMs: number | null;
}

/** Payload of 'resumed' and 'resume_failed'. */
export interface ResumeEvent {
  channel: string;
  topic: string;
  since: number;
  epoch?: string;
  recovered: boolean;
  current_epoch?: string;
  sequence: number;
  /** resume_failed only: 'epoch' (a new run) or 'history' (no longer held). */
  reason?: 'epoch' | 'history';
}

export interface ClientOptions {
  url: string;
  token?: string;
  getToken?: () => string | Promise<string>;
  authTimeout?: number;        // ms, default 5000
  requestTimeout?: number;     // ms, default 10000
  heartbeatInterval?: number;  // ms, default 25000
  heartbeatTimeout?: number;   // ms, default 10000
  refreshBeforeExpiry?: number; // ms before expires_at to re-auth, default 60000 (needs getToken)
  reconnect?: boolean;         // default true
  initialDelay?: number;       // ms, default 500
  maxDelay?: number;           // ms, default 30000
  factor?: number;             // default 2
  maxAttempts?: number;        // default Infinity
  /**
   * Flow control, default true: the client grants the server credit as its
   * handlers finish messages, so a busy application gets the newest market
   * data instead of a backlog (docs/PROTOCOL.md). false: the server pushes
   * everything as it comes (the seed's behaviour).
   */
  flowControl?: boolean;
  WebSocket?: typeof WebSocket;
  random?: () => number;
}

export const PRIVATE_CHANNELS: Set<string>;
export const RELIABLE_CHANNELS: Set<string>;
export const CHANNELS: Readonly<Record<string, { push: string; type: string; kind: 'market' | 'private' | 'signals'; snapshot: boolean; reliable: boolean }>>;
export const CLOSE: Readonly<Record<string, number>>;
export const ERROR: Readonly<Record<string, string>>;
export const TYPE: Readonly<Record<string, string>>;
export const TICK_FIELDS: readonly string[];
export const BROADCAST_ID: string;
/** The server's flow-control limits and the clients' grant policy. */
export const FLOW: Readonly<{ MAX_CREDIT: number; INITIAL_CREDIT: number; MIN_GRANT: number; MAX_GRANT: number;
  GRANT_MILLIS: number; MIN_INTERVAL_MILLIS: number; MAX_INTERVAL_MILLIS: number }>;

/** The credit to grant for a handling time per message (ms). */
export function grantSize(handleMs: number | null): number;

export class MarketcastError extends Error {
  code: string;
  details?: unknown;
  constructor(code: string, message?: string, details?: unknown);
}

export function backoffDelay(attempt: number, options?: { initialDelay?: number; maxDelay?: number; factor?: number }, random?: () => number): number;

export type Handler = (data: any, message?: Envelope) => void;

export class MarketcastClient {
  constructor(options: ClientOptions);
  state: 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';
  user: AuthData | null;
  connect(): Promise<AuthData>;
  refreshToken(): Promise<AuthData>;
  subscribe(channel: Channel, options?: SubscribeOptions): Promise<SubscribeResult>;
  unsubscribe(channel: Channel, options?: SubscribeOptions): Promise<SubscribeResult>;
  on(event: string, handler: Handler): () => void;
  once(event: string, handler: Handler): () => void;
  off(event: string, handler: Handler): void;
  lastSequence(topicKey: string): number | undefined;
  position(topicKey: string): { sequence: number; epoch?: string } | undefined;
  flowState(): FlowState;
  close(): void;
}

export default MarketcastClient;
