import type { Ref, ShallowReactive } from 'vue';
import type { ClientOptions, MarketcastClient, SubscribeResult } from './marketcast.js';

export function useMarketData(
  client: ClientOptions | MarketcastClient,
  options?: { symbols?: string[]; fields?: string[]; orders?: boolean },
): {
  client: MarketcastClient;
  connected: Ref<boolean>;
  error: Ref<Error | null>;
  ticks: ShallowReactive<Map<string, Record<string, string>>>;
  orders: Ref<Record<string, unknown>[]>;
  subscribeMarketData(symbols: string[], fields?: string[]): Promise<SubscribeResult>;
  unsubscribeMarketData(symbols: string[]): Promise<SubscribeResult>;
  subscribeOrders(): Promise<SubscribeResult>;
};
