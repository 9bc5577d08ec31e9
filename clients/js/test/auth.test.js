// Tokens against a real gateway: offered as the `bearer.` subprotocol (the default) or sent as
// `?token=`; either way the gateway takes the user and the channel rights from the verified
// token, and refuses a badly signed one at the handshake. Each form runs on the `ws` package and
// on Node's built-in WebSocket, which like a browser fails a handshake that selects none of the
// offered subprotocols.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { GatewayError } from '../gateway-client.js';
import { WebSocket, channel, client, closeAll, signToken, until } from './support.js';

after(closeAll);

const IMPLEMENTATIONS = { ws: WebSocket, native: globalThis.WebSocket };

/** A subclass of `Base` recording what each connect offered and what the server selected. */
function recording(Base) {
  const offers = [];
  class Recording extends Base {
    constructor(url, protocols) {
      super(url, protocols);
      offers.push({ url: new URL(url), protocols: protocols ?? [], socket: this });
    }
  }
  return { offers, Recording };
}

for (const [impl, Base] of Object.entries(IMPLEMENTATIONS)) {
  for (const tokenIn of ['protocol', 'query']) {
    test(`a token in the ${tokenIn} names the user and grants its channels (${impl})`, async () => {
      assert.equal(typeof Base, 'function', `a ${impl} WebSocket constructor`);
      const allowed = channel('tok:');
      const sub = `ann-${tokenIn}-${impl}`;
      const token = signToken({ sub, channels: ['tok:*'], publish: [allowed] });
      const { offers, Recording } = recording(Base);
      const c = client({ token, tokenIn, WebSocket: Recording });
      const welcome = await c.connect();
      assert.equal(welcome.user, sub);

      assert.equal(offers.length, 1);
      const { url, protocols, socket } = offers[0];
      if (tokenIn === 'query') {
        assert.equal(url.searchParams.get('token'), token);
        assert.deepEqual(protocols, []);
        assert.equal(socket.protocol, '');
      } else {
        assert.equal(url.searchParams.get('token'), null, 'the token stays out of the URL');
        assert.deepEqual(protocols, ['bearer', `bearer.${token}`]);
        assert.equal(socket.protocol, 'bearer', 'the server selects the marker, not the token');
      }

      const got = [];
      const s = c.subscribe(allowed, { onMessage: (m) => got.push(m.data) });
      await s.ready;
      await c.publish(allowed, 'hello');
      await until(() => got.length === 1, 'the delivery');
      assert.deepEqual(got, ['hello']);

      const refused = c.subscribe('other:1');
      await assert.rejects(
        refused.ready,
        (e) => e instanceof GatewayError && e.code === 'forbidden',
      );
      c.close();
    });
  }
}

for (const tokenIn of ['protocol', 'query']) {
  test(`a token signed with another secret is refused at the handshake (${tokenIn})`, async () => {
    const token = signToken({ sub: 'mallory', channels: ['*'] }, 'not-the-secret');
    const c = client({ token, tokenIn, reconnect: false });
    await assert.rejects(c.connect());
    assert.equal(c.state, 'closed');
  });
}
