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
  since?: number;
}

export interface SubscribeResult {
  status: string;
  channel: string;
  symbols?: string[];
  fields?: string[];
  user_id?: string;
  strategy_id?: string;
  recovered?: boolean;
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
  WebSocket?: typeof WebSocket;
  random?: () => number;
}

export const PRIVATE_CHANNELS: Set<string>;

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
  close(): void;
}

export default MarketcastClient;
