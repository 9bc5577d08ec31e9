// Socket.IO across two gateway nodes joined by Redis (started by tests/socketio.rs): the
// unchanged socket.io-client 4.8 on node A and on node B. Rooms, private messages, broadcasts
// and backend emits reach sockets on the other node, once each. A node subscribes to a room on
// the broker when its first socket joins, so emits across nodes start once a first one arrived:
// an emit is repeated with a sequence number until the far side sees one, and from then on every
// number must arrive exactly once, in order. Every wait gives up after 5 s.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const URL_A = process.env.GATEWAY_URL_A;
const URL_B = process.env.GATEWAY_URL_B;
const API_A = process.env.GATEWAY_API_URL_A;
const API_KEY = process.env.GATEWAY_API_KEY;
const WAIT_MS = 5000;
const opened = [];

after(() => opened.forEach((s) => s.disconnect()));

async function connect(url) {
  const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
  opened.push(s);
  if (!s.connected) {
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no connect to ${url}`)), WAIT_MS);
      s.once("connect", () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
  return s;
}

// Collect `event` on each socket; `until` resolves once `pred(got)` holds (or rejects at WAIT_MS).
function collect(sockets, event) {
  const got = sockets.map(() => []);
  const fs = sockets.map((s, i) => {
    const f = (...args) => got[i].push(args);
    s.on(event, f);
    return f;
  });
  return {
    got,
    stop: () => sockets.forEach((s, i) => s.off(event, fs[i])),
  };
}

async function until(pred, what) {
  const deadline = Date.now() + WAIT_MS;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// Emit with `send(n)` (awaited, so backend emits stay in order) every 100 ms until `seen()` is
// true, then `extra` more numbered emits. Returns how many were sent.
async function emitUntilSeen(send, seen, extra) {
  let n = 0;
  const deadline = Date.now() + WAIT_MS;
  while (!seen()) {
    if (Date.now() > deadline) throw new Error("the other node never got an emit");
    await send(n++);
    await new Promise((r) => setTimeout(r, 100));
  }
  for (let i = 0; i < extra; i++) await send(n++);
  return n;
}

// The numbers a socket got, checked: consecutive from where it started, each once, ending at `last`.
function assertRun(args, last, who) {
  const ns = args.map((a) => a[a.length - 1].n);
  assert.ok(ns.length > 0, `${who} got nothing`);
  const first = ns[0];
  assert.deepEqual(ns, Array.from({ length: last - first }, (_, i) => first + i), `${who}: ${ns}`);
}

test("a room emit from node A reaches exactly the room's sockets on node B, once each", async () => {
  const a = await connect(URL_A);
  const [b, c, d] = await Promise.all([connect(URL_B), connect(URL_B), connect(URL_B)]);
  const room = "far-" + Date.now();
  await b.emitWithAck("join", room);
  await c.emitWithAck("join", room);
  const r = collect([a, b, c, d], "room message");
  const sent = await emitUntilSeen(
    (n) => a.emit("room message", room, "hi", { n }),
    () => r.got[1].length > 0 && r.got[2].length > 0,
    20,
  );
  await until(() => r.got[1].length >= 21 && r.got[2].length >= 21, "the last emits");
  await new Promise((res) => setTimeout(res, 200));
  r.stop();
  assert.deepEqual(r.got[0], [], "the sender is not in the room");
  assert.deepEqual(r.got[3], [], "a socket outside the room");
  assertRun(r.got[1], sent, "b");
  assertRun(r.got[2], sent, "c");
});

test("a private message and a broadcast cross nodes", async () => {
  const a = await connect(URL_A);
  const [b, c] = await Promise.all([connect(URL_B), connect(URL_B)]);
  const r = collect([a, b, c], "private message");
  const sent = await emitUntilSeen(
    (n) => a.emit("private message", { content: "just you", to: b.id, n }),
    () => r.got[1].length > 0,
    5,
  );
  await until(() => r.got[1].length >= 6, "the last private messages");
  r.stop();
  assert.deepEqual(r.got[0], []);
  assert.deepEqual(r.got[2], []);
  for (const [m] of r.got[1]) assert.equal(m.from, a.id);
  assertRun(r.got[1].map(([m]) => [m]), sent, "b");

  // `chat message` goes to the whole namespace: node B's sender and node A's socket.
  const all = collect([a, b], "chat message");
  c.emit("chat message", "from B", { n: 0 });
  await until(() => all.got[0].length >= 1 && all.got[1].length >= 1, "the broadcast");
  await new Promise((res) => setTimeout(res, 200));
  all.stop();
  assert.deepEqual(all.got, [[["from B", { n: 0 }]], [["from B", { n: 0 }]]]);
});

async function emit(body) {
  const r = await fetch(`${API_A}/api/socketio/emit`, {
    method: "POST",
    headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

test("the backend emits on node A to a room on node B, except one of its sockets", async () => {
  const [b, c] = await Promise.all([connect(URL_B), connect(URL_B)]);
  const room = "api-far-" + Date.now();
  await b.emitWithAck("join", room);
  await c.emitWithAck("join", room);
  const r = collect([b, c], "news");
  const sent = await emitUntilSeen(
    (n) => emit({ room, except: c.id, event: "news", args: [{ n }] }),
    () => r.got[0].length > 0,
    5,
  );
  await until(() => r.got[0].length >= 6, "the last backend emits");
  await new Promise((res) => setTimeout(res, 200));
  r.stop();
  assert.deepEqual(r.got[1], [], "the excepted socket, on another node than the API asked");
  assertRun(r.got[0], sent, "b");
});
