// The Vue composable inside a real Vue 3 runtime: a component that uses it
// is mounted (Vue's own renderer API over a minimal in-memory host, as
// Vue's renderer tests do; no DOM is needed), sees the connection and live
// ticks, and after unmount says it is not connected and holds no socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRenderer, defineComponent, h, nextTick } from 'vue';
import { useMarketData } from '../vue.js';
import { startServer, token, until } from '../testutil/server.js';

// A host of plain objects: enough for Vue to mount and unmount components.
const { createApp } = createRenderer({
  createElement: (type) => ({ type, children: [] }),
  createText: (text) => ({ text }),
  createComment: (text) => ({ comment: text }),
  setText: (node, text) => { node.text = text; },
  setElementText: (el, text) => { el.text = text; },
  insert: (child, parent) => { parent.children.push(child); child.parent = parent; },
  remove: (child) => {
    if (child.parent) child.parent.children.splice(child.parent.children.indexOf(child), 1);
  },
  patchProp: () => {},
  parentNode: (node) => node.parent ?? null,
  nextSibling: () => null,
});

test('useMarketData connects, streams ticks, and is disconnected after unmount', async () => {
  const srv = await startServer();
  let state;
  const app = createApp(defineComponent({
    setup() {
      state = useMarketData({ url: srv.url, token: token('7') }, { symbols: ['SHFE.rb2405'] });
      return () => h('div');
    },
  }));
  app.mount({ type: 'root', children: [] });
  try {
    await until(() => state.connected.value && state.ticks.has('SHFE.rb2405'), 'connected, with a tick');
    assert.match(state.ticks.get('SHFE.rb2405').last_price, /^\d+\.\d+$/);

    app.unmount();
    await nextTick();
    assert.equal(state.connected.value, false, 'connected stays true after unmount');
    try {
      await until(() => state.client.ws.readyState === 3, 'the closing handshake');
    } catch (err) {
      // Seen once under make test-busy and never since: keep what the
      // server was doing.
      throw new Error(`${err.message}; the server's goroutines:\n${await srv.dump()}`);
    }
    assert.equal(state.client.state, 'closed');
  } finally {
    await srv.stop();
  }
});
