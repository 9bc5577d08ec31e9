// Requests against a real gateway: subscribe, publish and delivery, private messages, presence,
// history, and refusals that reject with the protocol's error code.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { GatewayError } from '../gateway-client.js';
import { channel, client, closeAll, next, until, apiPublish } from './support.js';

after(closeAll);

test('a subscriber gets what another client publishes, with its offset', async () => {
  const ch = channel('room:pub-');
  const a = client();
  const b = client();
  const [wa, wb] = await Promise.all([a.connect(), b.connect()]);
  assert.match(wa.conn, /^\d+$/);
  assert.notEqual(wa.conn, wb.conn);
  assert.equal(a.state, 'open');

  const got = [];
  const sub = b.subscribe(ch, { onMessage: (m) => got.push(m) });
  const ready = await sub.ready;
  assert.equal(ready.offset, 0);
  assert.match(ready.epoch, /^[0-9a-f]{16}$/);
  assert.equal(ready.resubscribed, false);

  await a.publish(ch, { text: 'hi' });
  await until(() => got.length === 1, 'the delivery');
  assert.deepEqual(got[0].data, { text: 'hi' });
  assert.equal(got[0].from, wa.conn);
  assert.equal(got[0].offset, 1);
  assert.equal(sub.offset, 1);

  // skip_self: the publisher's own subscription does not get it; the other one does.
  const own = [];
  await a.subscribe(ch, { onMessage: (m) => own.push(m) }).ready;
  await a.publish(ch, 'quiet', { skipSelf: true });
  await until(() => got.length === 2, 'the second delivery');
  assert.equal(got[1].data, 'quiet');
  assert.equal(own.length, 0);
});

test('skipSelf on a channel with history leaves no hole: no resubscribe, no own message', async () => {
  const ch = channel('room:skip-');
  const a = client();
  await a.connect();
  const got = [];
  const sub = a.subscribe(ch, { onMessage: (m) => got.push(m.data) });
  await sub.ready;
  await a.publish(ch, 'mine', { skipSelf: true });
  await apiPublish(ch, ['theirs']);
  await until(() => got.length >= 1, 'the delivery');
  // A resubscribe would replay 'mine' here; give it the time a round trip takes.
  await a.ping();
  assert.deepEqual(got, ['theirs']);
  assert.equal(sub.offset, 2);
  a.close();
});

test('send reaches one connection as a direct message', async () => {
  const a = client();
  const b = client({ user: 'bea' });
  const [wa, wb] = await Promise.all([a.connect(), b.connect()]);
  assert.equal(wb.user, 'bea');
  const direct = next(b, 'direct');
  await a.send(wb.conn, 'psst');
  const m = await direct;
  assert.equal(m.data, 'psst');
  assert.equal(m.from, wa.conn);
});

test('presence lists the subscribers and join events follow', async () => {
  const ch = channel('plain:presence-');
  const a = client({ user: 'ann' });
  const b = client({ user: 'bob' });
  const [wa, wb] = await Promise.all([a.connect(), b.connect()]);
  const joins = [];
  await a.subscribe(ch, { onJoin: (e) => joins.push(e) }).ready;
  await b.subscribe(ch).ready;
  await until(() => joins.some((e) => e.conn === wb.conn), 'the join event');
  assert.equal(joins.find((e) => e.conn === wb.conn).user, 'bob');

  const members = await a.presence(ch);
  const byConn = new Map(members.map((m) => [m.conn, m.user]));
  assert.equal(byConn.get(wa.conn), 'ann');
  assert.equal(byConn.get(wb.conn), 'bob');
  assert.equal(members.length, 2);

  const left = next(a, 'leave', (e) => e.channel === ch);
  await b.subscriptions.get(ch).unsubscribe();
  assert.equal((await left).conn, wb.conn);
});

test('history returns the last publications, oldest first', async () => {
  const ch = channel('room:history-');
  await apiPublish(ch, [1, 2, 3]);
  const c = client();
  await c.connect();
  const h = await c.history(ch, { limit: 2 });
  assert.equal(h.offset, 3);
  assert.match(h.epoch, /^[0-9a-f]{16}$/);
  assert.deepEqual(
    h.publications.map((p) => [p.offset, p.data]),
    [
      [2, 2],
      [3, 3],
    ],
  );
});

test('refused requests reject with the error code', async () => {
  const c = client();
  const { conn } = await c.connect();
  const code = async (p) => {
    const err = await p.then(
      () => assert.fail('expected a refusal'),
      (e) => e,
    );
    assert.ok(err instanceof GatewayError, String(err));
    return err.code;
  };
  assert.equal(await code(c.publish('bad channel', 1)), 'bad_channel');
  assert.equal(await code(c.history(channel('plain:nohist-'))), 'no_history');
  // Our slot's next generation (bits 24..40 of the id): not issued yet, so no live connection.
  const stale = `${BigInt(conn) + (1n << 24n)}`;
  assert.equal(await code(c.send(stale, 'x')), 'unknown_connection');
  assert.equal(await code(c.request('nope')), 'unknown_op');

  // A refused subscription rejects `ready`, calls onError and is not kept.
  const errors = [];
  const sub = c.subscribe('bad channel', { onError: (e) => errors.push(e.code) });
  assert.equal(await code(sub.ready), 'bad_channel');
  assert.deepEqual(errors, ['bad_channel']);
  assert.equal(c.subscriptions.has('bad channel'), false);

  // The connection stays open through all of it.
  await c.ping();
  assert.equal(c.conn, conn);
});

test('requests on a closed client reject with closed', async () => {
  const c = client();
  await c.connect();
  c.close();
  assert.equal(c.state, 'closed');
  await assert.rejects(c.ping(), (e) => e.code === 'closed');
});
