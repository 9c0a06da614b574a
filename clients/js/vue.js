// Vue 3 composable over MarketcastClient, in the shape of the seed's
// useWebSocket. `vue` is an optional peer dependency: only this file
// imports it.
import { ref, shallowReactive, onUnmounted } from 'vue';
import { MarketcastClient } from './marketcast.js';

/**
 * useMarketData({url, token | getToken}, {symbols, fields, orders})
 * returns reactive state: connected, error, ticks (symbol → tick data),
 * orders (latest first, merged by order_id), and subscribe helpers.
 */
export function useMarketData(clientOptions, { symbols = [], fields, orders = false } = {}) {
  const client = clientOptions instanceof MarketcastClient ? clientOptions : new MarketcastClient(clientOptions);
  const connected = ref(false);
  const error = ref(null);
  const ticks = shallowReactive(new Map());
  const orderList = ref([]);

  const offs = [
    client.on('auth', () => { connected.value = true; error.value = null; }),
    client.on('close', () => { connected.value = false; }),
    client.on('error', (err) => { error.value = err; }),
    client.on('market_data', (data, msg) => { ticks.set(msg.symbol, { ...ticks.get(msg.symbol), ...data }); }),
    client.on('order_update', (data) => {
      const i = orderList.value.findIndex((o) => o.order_id === data.order_id);
      if (i >= 0) orderList.value[i] = { ...orderList.value[i], ...data };
      else orderList.value = [data, ...orderList.value];
    }),
  ];

  const subscribeMarketData = (syms, f = fields) => client.subscribe('market_data', f ? { symbols: syms, fields: f } : { symbols: syms });
  const unsubscribeMarketData = (syms) => client.unsubscribe('market_data', { symbols: syms });
  const subscribeOrders = () => client.subscribe('orders');

  client.connect().catch((err) => { error.value = err; });
  if (symbols.length) subscribeMarketData(symbols).catch((err) => { error.value = err; });
  if (orders) subscribeOrders().catch((err) => { error.value = err; });

  onUnmounted(() => {
    // Close first: the close handlers still run and the state says what is
    // true (not connected); then stop listening.
    client.close();
    connected.value = false;
    offs.forEach((off) => off());
  });

  return { client, connected, error, ticks, orders: orderList, subscribeMarketData, unsubscribeMarketData, subscribeOrders };
}
