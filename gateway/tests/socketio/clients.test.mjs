// The unchanged socket.io-client 4.8 (WebSocket transport) against a real gateway started by
// tests/socketio.rs with the `chat` preset plus the events below, namespaces `/` and
// `/admin=token`, and a token secret:
//   shout=broadcast-others  ping=ack:{"pong":true}  whisper=to-room-others
// Every wait gives up after 5 s; exact receiver sets are checked with a sentinel broadcast that
// follows the emit under test (deliveries to one client keep their order).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { io } from "socket.io-client";

const URL = process.env.GATEWAY_URL;
const SECRET = process.env.GATEWAY_TOKEN_SECRET;
const API = process.env.GATEWAY_API_URL;
const API_KEY = process.env.GATEWAY_API_KEY;
// `default`: the client's default transports (long-polling first, then the upgrade), as
// clients-polling.test.mjs runs this suite; otherwise straight to the WebSocket.
const POLLING_FIRST = process.env.SIO_TRANSPORTS === "default";
// Polling first takes a few more round trips (handshake, POST, GET, probe) before "connect".
const WAIT_MS = POLLING_FIRST ? 10_000 : 5000;
const opened = [];

after(() => opened.forEach((s) => s.disconnect()));

function connect(nsp = "/", opts = {}) {
  const s = io(URL + nsp, {
    ...(POLLING_FIRST ? {} : { transports: ["websocket"] }),
    forceNew: true,
    reconnection: false,
    ...opts,
  });
  opened.push(s);
  return s;
}

function once(emitter, event) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${WAIT_MS} ms`)), WAIT_MS);
    emitter.once(event, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
}

async function connected(s) {
  if (!s.connected) await once(s, "connect");
  if (s.io.engine.transport.name !== "websocket") await once(s.io.engine, "upgrade");
  return s;
}

// Everything each client got of `event` until the sentinel broadcast arrives.
async function receivedUntilSentinel(clients, event, sender) {
  const got = clients.map(() => []);
  const listeners = clients.map((c, i) => {
    const f = (...args) => {
      if (typeof args[0] === "string" && args[0].startsWith("sentinel-")) return;
      got[i].push(args);
    };
    c.on(event, f);
    return f;
  });
  const sentinel = "sentinel-" + Math.random();
  const done = clients.map(
    (c) =>
      new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("no sentinel")), WAIT_MS);
        const f = (msg) => {
          if (msg === sentinel) {
            clearTimeout(t);
            c.off("chat message", f);
            resolve();
          }
        };
        c.on("chat message", f);
      }),
  );
  return {
    got,
    async finish() {
      sender.emit("chat message", sentinel);
      await Promise.all(done);
      clients.forEach((c, i) => c.off(event, listeners[i]));
      return got;
    },
  };
}

function token(sub) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}`;
  const sig = createHmac("sha256", SECRET).update(body).digest("base64url");
  return `${body}.${sig}`;
}

test("three clients connect, each with a socket id that is not the session id", async () => {
  const [a, b, c] = await Promise.all([connect(), connect(), connect()].map(connected));
  const ids = new Set([a.id, b.id, c.id]);
  assert.equal(ids.size, 3);
  for (const s of [a, b, c]) {
    assert.notEqual(s.id, s.io.engine.id, "socket id differs from the Engine.IO sid");
    assert.equal(s.io.engine.transport.name, "websocket");
  }
});

test("chat message reaches everyone, the sender included", async () => {
  const clients = await Promise.all([connect(), connect(), connect()].map(connected));
  const [a] = clients;
  const r = await receivedUntilSentinel(clients, "chat message", a);
  a.emit("chat message", "hello all");
  const got = await r.finish();
  assert.deepEqual(got, [[["hello all"]], [["hello all"]], [["hello all"]]]);
});

test("broadcast-others reaches everyone but the sender", async () => {
  const clients = await Promise.all([connect(), connect(), connect()].map(connected));
  const [a] = clients;
  const r = await receivedUntilSentinel(clients, "shout", a);
  a.emit("shout", "hey", 2);
  const got = await r.finish();
  assert.deepEqual(got, [[], [["hey", 2]], [["hey", 2]]]);
});

test("join acks, and a room message reaches exactly the room", async () => {
  const clients = await Promise.all([connect(), connect(), connect()].map(connected));
  const [a, b, c] = clients;
  const room = "room-" + Date.now();
  assert.equal(await a.emitWithAck("join", room), undefined, "acked without a value");
  assert.equal(await b.emitWithAck("join", room), undefined);
  const r = await receivedUntilSentinel(clients, "room message", c);
  c.emit("room message", room, "to the room", { n: 1 });
  let got = await r.finish();
  const want = [["to the room", { n: 1 }]];
  assert.deepEqual(got, [want, want, []]);

  // to-room-others from a member: the other member only.
  const r2 = await receivedUntilSentinel(clients, "whisper", a);
  a.emit("whisper", room, "psst");
  got = await r2.finish();
  assert.deepEqual(got, [[], [["psst"]], []]);

  // After leaving, B no longer gets the room's messages.
  assert.equal(await b.emitWithAck("leave", room), undefined);
  const r3 = await receivedUntilSentinel(clients, "room message", c);
  c.emit("room message", room, "again");
  got = await r3.finish();
  assert.deepEqual(got, [[["again"]], [], []]);
});

test("a private message reaches one socket id, with the sender's id", async () => {
  const clients = await Promise.all([connect(), connect(), connect()].map(connected));
  const [a, b] = clients;
  const r = await receivedUntilSentinel(clients, "private message", a);
  a.emit("private message", { content: "just you", to: b.id });
  const got = await r.finish();
  assert.deepEqual(got, [[], [[{ content: "just you", from: a.id }]], []]);
});

test("acks answer with the configured value, or say why the action failed", async () => {
  const a = await connected(connect());
  assert.deepEqual(await a.emitWithAck("ping"), { pong: true });
  const err = await a.emitWithAck("join", "not a valid room!");
  assert.match(err.error, /room names/);
  const err2 = await a.emitWithAck("join", 42);
  assert.match(err2.error, /room name/);
});

test("binary arguments round-trip through a broadcast", async () => {
  const clients = await Promise.all([connect(), connect()].map(connected));
  const [a, b] = clients;
  const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
  const r = await receivedUntilSentinel(clients, "shout", a);
  a.emit("shout", "file", bytes, { nested: Buffer.from("xyz") });
  const got = await r.finish();
  assert.deepEqual(got[0], []);
  assert.equal(got[1].length, 1);
  const [name, buf, obj] = got[1][0];
  assert.equal(name, "file");
  assert.deepEqual(Buffer.from(buf), bytes);
  assert.deepEqual(Buffer.from(obj.nested), Buffer.from("xyz"));
});

test("an unknown namespace is refused with connect_error", async () => {
  const s = connect("/nope");
  const [err] = await once(s, "connect_error");
  assert.equal(err.message, "Invalid namespace");
});

test("a namespace with auth admits a valid token only", async () => {
  const bad = connect("/admin", { auth: { token: "nope" } });
  const [err] = await once(bad, "connect_error");
  assert.match(err.message, /Not authorized/);
  const none = connect("/admin");
  await once(none, "connect_error");
  const good = await connected(connect("/admin", { auth: { token: token("ann") } }));
  assert.ok(good.id);
  // One session, two namespaces: a socket per namespace, each with its own id.
  const s = connect("/");
  await connected(s);
  const admin = s.io.socket("/admin", { auth: { token: token("bob") } });
  opened.push(admin);
  await connected(admin);
  assert.notEqual(admin.id, s.id);
  assert.equal(admin.io.engine.id, s.io.engine.id, "both sockets share the session");
  const r = await receivedUntilSentinel([good, admin], "chat message", good);
  good.emit("chat message", "admins only");
  const got = await r.finish();
  assert.deepEqual(got, [[["admins only"]], [["admins only"]]]);
});

async function emit(body) {
  const r = await fetch(`${API}/api/socketio/emit`, {
    method: "POST",
    headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

test("the backend emits to a namespace, a room except one socket, and one socket", async () => {
  const clients = await Promise.all([connect(), connect(), connect()].map(connected));
  const [a, b, c] = clients;
  const room = "api-room-" + Date.now();
  await a.emitWithAck("join", room);
  await b.emitWithAck("join", room);

  let r = await receivedUntilSentinel(clients, "news", c);
  assert.equal((await emit({ event: "news", args: ["all", { n: 1 }] })).status, 202);
  let got = await r.finish();
  // Other tests' sockets may be connected too: only these three are looked at.
  assert.deepEqual(got, [[["all", { n: 1 }]], [["all", { n: 1 }]], [["all", { n: 1 }]]]);

  r = await receivedUntilSentinel(clients, "news", c);
  assert.equal((await emit({ room, except: a.id, event: "news", args: ["room"] })).status, 202);
  got = await r.finish();
  assert.deepEqual(got, [[], [["room"]], []]);

  r = await receivedUntilSentinel(clients, "news", c);
  assert.equal((await emit({ socket: c.id, event: "news" })).status, 202);
  got = await r.finish();
  assert.deepEqual(got, [[], [], [[]]]);

  const bad = await emit({ room: "a b", event: "news" });
  assert.equal(bad.status, 400);
  assert.match(bad.body.error.message ?? JSON.stringify(bad.body), /channel/);
  assert.equal((await emit({ args: [] })).status, 400, "an event name is required");
  assert.equal((await emit({ namespace: "nope", event: "x" })).status, 400);
  assert.equal((await emit({ event: "x", except: "not-an-id" })).status, 400);
});
