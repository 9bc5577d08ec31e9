// The client against a scripted socket (no gateway): what the real server never does on
// purpose, such as a delivery at or before the last offset, and the close-code rules applied to
// every code of the table.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { GatewayClient, isReconnectCode } from '../gateway-client.js';

/** A socket the test drives: `server(obj)` delivers a frame, `sent` holds what the client sent. */
class ScriptedSocket {
  static last = null;

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols ?? [];
    this.sent = [];
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    ScriptedSocket.last = this;
    queueMicrotask(() => {
      this.onopen?.({});
      this.server({ type: 'welcome', conn: '7', user: null });
    });
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close() {}

  server(msg) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }

  closeFromServer(code, reason = '') {
    this.onclose?.({ code, reason });
  }
}

function scripted(options = {}) {
  return new GatewayClient('ws://gateway.test/ws', {
    WebSocket: ScriptedSocket,
    backoffBaseMs: 1,
    backoffMaxMs: 2,
    heartbeatIdleMs: 0,
    ...options,
  });
}

test('deliveries at or before the last offset are dropped', async () => {
  const c = scripted();
  await c.connect();
  const sock = ScriptedSocket.last;
  const got = [];
  const sub = c.subscribe('room:1', { onMessage: (m) => got.push(m.offset) });
  const req = sock.sent.at(-1);
  assert.deepEqual(req, { channel: 'room:1', op: 'subscribe', id: req.id });
  sock.server({ type: 'reply', id: req.id, ok: true, offset: 4, epoch: 'e' });
  await sub.ready;
  for (const offset of [3, 4, 5, 5, 6, 4, 7]) {
    sock.server({ type: 'message', channel: 'room:1', data: offset, from: null, offset });
  }
  assert.deepEqual(got, [5, 6, 7]);
  c.close();
});

test('an offset jump resubscribes with recover and delivers in order', async () => {
  const c = scripted();
  await c.connect();
  const sock = ScriptedSocket.last;
  const got = [];
  c.subscribe('room:1', { onMessage: (m) => got.push(m.offset) });
  const first = sock.sent.at(-1);
  sock.server({ type: 'reply', id: first.id, ok: true, offset: 0, epoch: 'e' });
  const deliver = (offset) =>
    sock.server({ type: 'message', channel: 'room:1', data: offset, from: null, offset });
  deliver(1);
  deliver(2);
  deliver(4); // 3 was lost
  deliver(5);
  const [unsub, resub] = sock.sent.slice(-2);
  assert.deepEqual([unsub.op, unsub.channel], ['unsubscribe', 'room:1']);
  assert.deepEqual(resub.recover, { offset: 2, epoch: 'e' });
  sock.server({ type: 'reply', id: unsub.id, ok: true });
  sock.server({ type: 'reply', id: resub.id, ok: true, offset: 5, epoch: 'e', recovered: true });
  for (const offset of [3, 4, 5, 6]) deliver(offset);
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6]);
  c.close();
});

test('a skipped marker advances the offset without a message or a resubscribe', async () => {
  const c = scripted();
  await c.connect();
  const sock = ScriptedSocket.last;
  const got = [];
  c.subscribe('room:1', { onMessage: (m) => got.push(m.offset) });
  const first = sock.sent.at(-1);
  sock.server({ type: 'reply', id: first.id, ok: true, offset: 0, epoch: 'e' });
  const sent = sock.sent.length;
  sock.server({ type: 'skipped', channel: 'room:1', offset: 1 });
  sock.server({ type: 'message', channel: 'room:1', data: 2, from: null, offset: 2 });
  assert.deepEqual(got, [2]);
  assert.equal(sock.sent.length, sent, 'no resubscribe');
  c.close();
});

test('a gap event on a channel with history resubscribes with recover', async () => {
  const c = scripted();
  await c.connect();
  const sock = ScriptedSocket.last;
  const gaps = [];
  c.on('gap', (g) => gaps.push(g.channel));
  c.subscribe('room:1');
  c.subscribe('plain');
  const [a, b] = sock.sent.slice(-2);
  sock.server({ type: 'reply', id: a.id, ok: true, offset: 3, epoch: 'e' });
  sock.server({ type: 'reply', id: b.id, ok: true });
  const sent = sock.sent.length;
  sock.server({ type: 'gap', channel: 'plain' });
  assert.equal(sock.sent.length, sent, 'nothing to recover on a channel without history');
  sock.server({ type: 'gap', channel: 'room:1' });
  const [unsub, resub] = sock.sent.slice(-2);
  assert.deepEqual([unsub.op, unsub.channel], ['unsubscribe', 'room:1']);
  assert.deepEqual(resub.recover, { offset: 3, epoch: 'e' });
  assert.deepEqual(gaps, ['plain', 'room:1']);
  c.close();
});

test('a resubscribe carries the last position as recover', async () => {
  const c = scripted();
  await c.connect();
  let sock = ScriptedSocket.last;
  c.subscribe('room:1');
  const req = sock.sent.at(-1);
  sock.server({ type: 'reply', id: req.id, ok: true, offset: 0, epoch: 'e1' });
  sock.server({ type: 'message', channel: 'room:1', data: 1, from: null, offset: 1 });
  const back = new Promise((r) => c.on('welcome', r));
  sock.closeFromServer(1001, 'server shutting down');
  await back;
  sock = ScriptedSocket.last;
  const again = sock.sent.find((m) => m.op === 'subscribe');
  assert.deepEqual(again.recover, { offset: 1, epoch: 'e1' });

  // The channel no longer keeps history: told so, and subscribed again without `recover`.
  const lost = [];
  c.on('unrecovered', (e) => lost.push(e));
  const err = { code: 'no_history', message: 'channel keeps no history' };
  sock.server({ type: 'reply', id: again.id, ok: false, error: err });
  assert.deepEqual(lost, [
    { channel: 'room:1', offset: null, epoch: null, lost: { offset: 1, epoch: 'e1' } },
  ]);
  const plain = sock.sent.at(-1);
  assert.deepEqual(plain, { channel: 'room:1', op: 'subscribe', id: plain.id });
  assert.equal(c.subscriptions.has('room:1'), true);
  c.close();
});

test('a listener that subscribes on open sends one subscribe', async () => {
  const c = scripted();
  c.on('state', (s) => {
    if (s.state === 'open') c.subscribe('room:2');
  });
  await c.connect();
  const subs = ScriptedSocket.last.sent.filter((m) => m.op === 'subscribe');
  assert.equal(subs.length, 1);
  c.close();
});

test('the close-code table decides between reconnecting and stopping', () => {
  for (const code of [1001, 1005, 1006, 1011, 1012, 1013, 1014, 4008]) {
    assert.equal(isReconnectCode(code), true, String(code));
  }
  for (const code of [1000, 1002, 1003, 1007, 1008, 1009, 4000, 4001, 4003, 4403]) {
    assert.equal(isReconnectCode(code), false, String(code));
  }
  assert.equal(isReconnectCode(4001, { canRefreshToken: true }), true);
  assert.equal(isReconnectCode(4003, { canRefreshToken: true }), false);
});

test('reconnect delays are jittered below a doubling, capped bound', async () => {
  const c = scripted({ backoffBaseMs: 40, backoffMaxMs: 100, stableMs: 60000 });
  const delays = [];
  c.on('state', (s) => {
    if (s.state === 'reconnecting') delays.push([s.attempt, s.delayMs]);
  });
  await c.connect();
  for (let i = 0; i < 4; i++) {
    const back = new Promise((r) => c.on('welcome', r));
    ScriptedSocket.last.closeFromServer(1006);
    await back;
  }
  c.close();
  const caps = [40, 80, 100, 100];
  assert.equal(delays.length, 4);
  delays.forEach(([attempt, ms], i) => {
    assert.equal(attempt, i + 1);
    assert.ok(ms >= 0 && ms <= caps[i], `attempt ${attempt}: ${ms} ms over ${caps[i]}`);
  });
});

test('equal jitter keeps half the bound as a floor; reconnectNow skips the wait', async () => {
  const c = scripted({ backoffBaseMs: 40, backoffMaxMs: 40, jitter: 'equal' });
  const delays = [];
  c.on('state', (s) => {
    if (s.state === 'reconnecting') delays.push(s.delayMs);
  });
  await c.connect();
  for (let i = 0; i < 3; i++) {
    const back = new Promise((r) => c.on('welcome', r));
    ScriptedSocket.last.closeFromServer(1012);
    await back;
  }
  for (const ms of delays) assert.ok(ms >= 20 && ms <= 40, `${ms} ms`);

  const slow = scripted({ backoffBaseMs: 60000, backoffMaxMs: 60000, jitter: 'equal' });
  await slow.connect();
  const back = new Promise((r) => slow.on('welcome', r));
  ScriptedSocket.last.closeFromServer(1001);
  assert.equal(slow.state, 'reconnecting');
  slow.reconnectNow();
  await back;
  assert.equal(slow.state, 'open');
  slow.close();
  c.close();
});

test('the token is offered as a bearer subprotocol, the nickname goes in the query', async () => {
  const c = scripted({ tokenProvider: async () => 'a.b.c', user: 'ann lee' });
  await c.connect();
  const u = new URL(ScriptedSocket.last.url);
  assert.equal(u.searchParams.get('token'), null, 'the token stays out of the URL');
  assert.equal(u.searchParams.get('user'), 'ann lee');
  assert.deepEqual(ScriptedSocket.last.protocols, ['bearer', 'bearer.a.b.c']);
  c.close();
});

test("tokenIn: 'query' sends the token as ?token= and offers no subprotocol", async () => {
  const c = scripted({ token: 'a.b.c', tokenIn: 'query', user: 'ann' });
  await c.connect();
  const u = new URL(ScriptedSocket.last.url);
  assert.equal(u.searchParams.get('token'), 'a.b.c');
  assert.equal(u.searchParams.get('user'), 'ann');
  assert.deepEqual(ScriptedSocket.last.protocols, []);
  c.close();
});

test('without a token no subprotocol is offered', async () => {
  const c = scripted({ user: 'ann' });
  await c.connect();
  assert.deepEqual(ScriptedSocket.last.protocols, []);
  c.close();
});
