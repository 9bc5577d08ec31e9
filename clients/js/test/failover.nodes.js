// Two gateway nodes on one Redis, history shared (run by gateway/tests/js_client.rs with node
// A's address in GATEWAY_WS_URL, node B's in GATEWAY_WS_URL_B and node B's API): a client given
// both addresses loses node A (a relay freezes, the heartbeat gives up), goes to node B and its
// subscription recovers what was published meanwhile, in order, with no duplicate, while a
// publisher keeps going.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { apiPublish, channel, client, closeAll, next, relay, until, WS_URL } from './support.js';

const WS_URL_B = process.env.GATEWAY_WS_URL_B;

after(closeAll);

test('a client that loses its node recovers its subscription on the other node', async () => {
  assert.ok(WS_URL_B, 'GATEWAY_WS_URL_B is not set: run through gateway/tests/js_client.rs');
  const ch = channel('room:failover-');
  const path = await relay(WS_URL);
  try {
    const c = client({
      url: [path.url, WS_URL_B],
      heartbeatIdleMs: 300,
      heartbeatTimeoutMs: 300,
    });
    await c.connect();
    const got = [];
    const sub = c.subscribe(ch, { onMessage: (m) => got.push(m.data) });
    const unrecovered = [];
    c.on('unrecovered', (e) => unrecovered.push(e));
    const first = await sub.ready;
    await apiPublish(ch, Array.from({ length: 10 }, (_, i) => i + 1));
    await until(() => got.length === 10, 'the first ten, published on node B, delivered on A');

    const moved = next(c, 'state', (s) => s.state === 'open' && c.url === WS_URL_B);
    path.freeze();
    // Published while the client is cut off, and on through its resubscribe on node B; at
    // most 80 in all, so that everything missed is still among the 100 the channel keeps.
    let n = 10;
    const publisher = (async () => {
      while (n < 90 && (n < 60 || got.length < n)) {
        n += 1;
        await apiPublish(ch, [n]);
      }
    })();
    await moved;
    await publisher;
    await until(() => got.length >= n, `all ${n} in the end`);
    assert.deepEqual(
      got,
      Array.from({ length: n }, (_, i) => i + 1),
      'every publication once, in order',
    );
    assert.equal(unrecovered.length, 0, 'recovered, not reloaded');
    assert.equal(sub.epoch, first.epoch, 'one stream on both nodes');
    assert.equal(sub.offset, n);
  } finally {
    path.close();
  }
});
