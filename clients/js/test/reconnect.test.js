// Reconnecting against a real gateway: a close the close-code table calls transient brings the
// client back and its subscriptions recover what was published meanwhile (in order, once each);
// a client away longer than the history keeps is told `unrecovered`; terminal codes stop it; a
// silent connection is noticed by the heartbeat.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  apiDisconnect,
  apiPublish,
  channel,
  client,
  closeAll,
  gate,
  next,
  relay,
  sleep,
  until,
  WS_URL,
} from './support.js';

after(closeAll);

/** A client whose reconnects wait for `held.open()`: the test publishes while it is away. */
function heldClient(options = {}) {
  let connects = 0;
  const held = gate();
  const c = client({
    ...options,
    tokenProvider: async () => {
      connects += 1;
      if (connects > 1) await held.wait();
      return '';
    },
  });
  return { c, held, connects: () => connects };
}

test('a client cut with 4008 comes back and recovers what it missed, once and in order', async () => {
  const ch = channel('room:recover-');
  const { c, held, connects } = heldClient();
  const states = [];
  c.on('state', (s) => states.push(s));
  const first = await c.connect();
  const got = [];
  const subscribed = [];
  const sub = c.subscribe(ch, {
    onMessage: (m) => got.push(m),
    onSubscribed: (s) => subscribed.push(s),
  });
  await sub.ready;
  await apiPublish(ch, [1, 2, 3]);
  await until(() => got.length === 3, 'the live deliveries');

  const away = next(c, 'state', (s) => s.state === 'reconnecting');
  await apiDisconnect(first.conn, 4008, 'slow consumer');
  const cut = await away;
  assert.equal(cut.code, 4008);
  await until(() => connects() === 2, 'the reconnect attempt');
  await apiPublish(ch, [4, 5, 6, 7, 8, 9, 10]);

  const back = next(c, 'state', (s) => s.state === 'open');
  held.open();
  const reopened = await back;
  assert.notEqual(reopened.conn, first.conn);
  await until(() => subscribed.length === 2, 'the resubscribe');
  assert.equal(subscribed[1].recovered, true);
  assert.equal(subscribed[1].resubscribed, true);

  await apiPublish(ch, [11, 12]);
  await until(() => got.length >= 12, 'the replay and the live deliveries');
  await sleep(100); // nothing more may follow
  assert.deepEqual(
    got.map((m) => m.data),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
  );
  assert.deepEqual(
    got.map((m) => m.offset),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
  );
  assert.deepEqual(
    states.map((s) => s.state),
    ['connecting', 'open', 'reconnecting', 'connecting', 'open'],
  );
});

test('a client away past the history size is told unrecovered with the new position', async () => {
  // `small:` channels keep 3 publications (gateway/tests/js_client.rs).
  const ch = channel('small:lost-');
  const { c, held } = heldClient();
  const first = await c.connect();
  const got = [];
  const lostSeen = [];
  const sub = c.subscribe(ch, {
    onMessage: (m) => got.push(m.data),
    onUnrecovered: (e) => lostSeen.push(e),
  });
  const { epoch } = await sub.ready;
  await apiPublish(ch, [1]);
  await until(() => got.length === 1, 'the first delivery');

  const away = next(c, 'state', (s) => s.state === 'reconnecting');
  await apiDisconnect(first.conn, 4008, 'slow consumer');
  await away;
  await apiPublish(ch, [2, 3, 4, 5, 6, 7]);
  const unrecovered = next(c, 'unrecovered');
  held.open();
  const e = await unrecovered;
  assert.equal(e.channel, ch);
  assert.deepEqual(e.lost, { offset: 1, epoch });
  assert.equal(e.epoch, epoch);
  assert.equal(e.offset, 7);
  assert.deepEqual(lostSeen, [e]);

  // Nothing of the gap is replayed; publications after the new position arrive.
  await apiPublish(ch, [8]);
  await until(() => got.length === 2, 'the next live delivery');
  assert.deepEqual(got, [1, 8]);
  assert.equal(sub.offset, 8);
});

test('terminal close codes stop the client', async () => {
  for (const code of [4403, 4001]) {
    const c = client();
    const states = [];
    c.on('state', (s) => states.push(s.state));
    const { conn } = await c.connect();
    const closed = next(c, 'state', (s) => s.state === 'closed');
    await apiDisconnect(conn, code, 'go away');
    const s = await closed;
    assert.equal(s.code, code);
    assert.equal(s.reason, 'go away');
    await sleep(300); // several backoff periods: no attempt follows
    assert.deepEqual(states, ['connecting', 'open', 'closed'], `after ${code}`);
    await assert.rejects(c.ping(), (e) => e.code === 'closed');
  }
});

test('token expired reconnects when a token provider can supply a new token', async () => {
  let calls = 0;
  const c = client({
    tokenProvider: () => {
      calls += 1;
      return '';
    },
  });
  const { conn } = await c.connect();
  const back = next(c, 'state', (s) => s.state === 'open' && s.conn !== conn);
  await apiDisconnect(conn, 4001, 'token expired');
  await back;
  assert.equal(calls, 2);
});

test('a backend code listed in reconnectCodes reconnects', async () => {
  const c = client({ reconnectCodes: [4000] });
  const { conn } = await c.connect();
  const back = next(c, 'state', (s) => s.state === 'open' && s.conn !== conn);
  await apiDisconnect(conn, 4000, 'moved');
  await back;
});

test('a silent connection is dropped by the heartbeat and the subscription recovers', async () => {
  const ch = channel('room:silent-');
  const path = await relay(WS_URL);
  try {
    const c = client({ url: path.url, heartbeatIdleMs: 500, heartbeatTimeoutMs: 500 });
    await c.connect();
    const got = [];
    await c.subscribe(ch, { onMessage: (m) => got.push(m.data) }).ready;
    await apiPublish(ch, [1]);
    await until(() => got.length === 1, 'the first delivery');

    const dropped = next(c, 'state', (s) => s.state === 'reconnecting');
    path.freeze();
    await apiPublish(ch, [2, 3]);
    const s = await dropped;
    assert.equal(s.code, 1006);
    assert.equal(s.reason, 'heartbeat timeout');
    await until(() => got.length === 3, 'the recovered deliveries');
    assert.deepEqual(got, [1, 2, 3]);
  } finally {
    path.close();
  }
});
