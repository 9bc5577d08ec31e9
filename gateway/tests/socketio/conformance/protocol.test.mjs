// Engine.IO 4 / Socket.IO 5 conformance over the WebSocket transport, with a bare WebSocket
// (`ws`, installed with socket.io-client), written from the public lists of protocol test cases:
// handshakes good and bad, heartbeat and ping timeout, namespaces with and without auth, acks,
// binary payloads, malformed packets, the close packet, the CONNECT timeout.
//
// The gateway is started by tests/socketio.rs with --socketio-ping-interval 300ms,
// --socketio-ping-timeout 200ms, --socketio-connect-timeout 500ms, namespaces / and
// /admin=token, and the events ping=ack:{"pong":true} and shout=broadcast-others.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import WebSocket from "ws";

const BASE = process.env.GATEWAY_URL;
const WS = BASE.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket";
const SECRET = process.env.GATEWAY_TOKEN_SECRET;
const WAIT_MS = 5000;

// A bare client: every message (text as a string, binary as a Buffer) in a queue.
function open(url = WS) {
  const ws = new WebSocket(url);
  const queue = [];
  const waiters = [];
  // Pings are answered as they come (a session idle in a test must not time out), unless a
  // test looks at the heartbeat itself.
  ws.autoPong = true;
  ws.on("message", (data, isBinary) => {
    const m = isBinary ? Buffer.from(data) : data.toString();
    if (m === "2" && ws.autoPong) {
      ws.send("3");
      return;
    }
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  ws.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.next = () =>
    queue.length > 0
      ? Promise.resolve(queue.shift())
      : new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error("no message")), WAIT_MS);
          waiters.push((m) => {
            clearTimeout(t);
            resolve(m);
          });
        });
  ws.ready = new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  return ws;
}

// Next message that is not a server ping (answered with a pong).
async function nextData(ws) {
  for (;;) {
    const m = await ws.next();
    if (m === "2") {
      ws.send("3");
      continue;
    }
    return m;
  }
}

async function handshake(url) {
  const ws = open(url);
  await ws.ready;
  const first = await ws.next();
  assert.equal(first[0], "0", "the open packet comes first");
  return { ws, open: JSON.parse(first.slice(1)) };
}

async function joined(nsp = "/", auth) {
  const h = await handshake();
  const prefix = nsp === "/" ? "" : `${nsp},`;
  h.ws.send(`40${prefix}${auth ? JSON.stringify(auth) : ""}`);
  const m = await nextData(h.ws);
  assert.ok(m.startsWith(`40${prefix}{`), m);
  h.id = JSON.parse(m.slice(2 + prefix.length)).sid;
  return h;
}

function token(sub) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

test("handshake: the open packet carries the session's parameters", async () => {
  const { ws, open } = await handshake();
  assert.equal(typeof open.sid, "string");
  assert.ok(open.sid.length >= 16);
  assert.deepEqual(open.upgrades, [], "already on the best transport");
  assert.equal(open.pingInterval, 300);
  assert.equal(open.pingTimeout, 200);
  assert.equal(open.maxPayload, 1000000);
  ws.close();
});

test("handshake: bad requests get Engine.IO's JSON errors", async () => {
  for (const [query, code] of [
    ["EIO=3&transport=websocket", 5],
    ["transport=websocket", 5],
    ["EIO=4&transport=unknown", 0],
    ["EIO=4&transport=websocket&sid=unknown", 1],
  ]) {
    const r = await fetch(`${BASE}/socket.io/?${query}`);
    assert.equal(r.status, 400, query);
    assert.equal((await r.json()).code, code, query);
  }
});

test("heartbeat: pings every interval while pongs come", async () => {
  const { ws } = await joined();
  ws.autoPong = false;
  const start = Date.now();
  for (let i = 0; i < 3; i++) {
    assert.equal(await ws.next(), "2");
    ws.send("3");
  }
  const took = Date.now() - start;
  // Not faster than the interval (an upper bound would only measure the machine's load).
  assert.ok(took >= 800, `three pings ${took} ms`);
  ws.close();
});

test("heartbeat: no pong closes the session after the ping timeout", async () => {
  const { ws } = await joined();
  ws.autoPong = false;
  assert.equal(await ws.next(), "2");
  const sent = Date.now();
  const { code } = await ws.closed;
  assert.equal(code, 1001);
  assert.ok(Date.now() - sent >= 150, "not before the timeout");
});

test("a session that joins no namespace in time is closed", async () => {
  const { ws } = await handshake();
  const { code, reason } = await ws.closed;
  assert.equal(code, 1001);
  assert.match(reason, /namespace/);
});

test("namespaces: each socket id differs from the sid; unknown and unauthorized are refused", async () => {
  const h = await joined();
  assert.notEqual(h.id, h.open.sid);
  h.ws.send("40/nope,");
  assert.equal(await nextData(h.ws), '44/nope,{"message":"Invalid namespace"}');
  h.ws.send("40/admin,");
  assert.match(await nextData(h.ws), /^44\/admin,\{"message":"Not authorized/);
  h.ws.send(`40/admin,${JSON.stringify({ token: "forged" })}`);
  assert.match(await nextData(h.ws), /^44\/admin,/);
  h.ws.send(`40/admin,${JSON.stringify({ token: token("ann") })}`);
  const ok = await nextData(h.ws);
  assert.match(ok, /^40\/admin,\{"sid":"/);
  assert.notEqual(JSON.parse(ok.slice(9)).sid, h.id, "one socket id per namespace");
  h.ws.send("41/admin,");
  h.ws.send("42/admin,1[\"ping\"]");
  h.ws.send("422[\"ping\"]");
  assert.equal(await nextData(h.ws), '432[{"pong":true}]', "an event after leaving /admin is ignored");
  h.ws.close();
});

test("acks: an ack id is answered with its id and namespace", async () => {
  const h = await joined();
  h.ws.send('4217["ping"]');
  assert.equal(await nextData(h.ws), '4317[{"pong":true}]');
  h.ws.send('4218["join","room-1"]');
  assert.equal(await nextData(h.ws), "4318[]");
  h.ws.close();
});

test("binary: an event's attachments are passed on as binary frames", async () => {
  const a = await joined();
  const b = await joined();
  a.ws.send('451-["shout",{"_placeholder":true,"num":0},"x"]');
  a.ws.send(Buffer.from([0, 1, 255]));
  assert.equal(await nextData(b.ws), '451-["shout",{"_placeholder":true,"num":0},"x"]');
  assert.deepEqual(await nextData(b.ws), Buffer.from([0, 1, 255]));
  a.ws.close();
  b.ws.close();
});

test("malformed packets close that session only, with 1002", async () => {
  const bystander = await joined();
  for (const bad of ["9", "4", "42", "42[1]", "4511-[\"shout\"]", '42["e"', "0{}", "44{}"]) {
    const h = await joined();
    h.ws.send(bad);
    const { code } = await h.ws.closed;
    assert.equal(code, 1002, bad);
  }
  const h = await joined();
  h.ws.send(Buffer.from([1]));
  assert.equal((await h.ws.closed).code, 1002, "an attachment nobody announced");
  bystander.ws.send('429["ping"]');
  assert.equal(await nextData(bystander.ws), '439[{"pong":true}]', "the bystander is served");
  bystander.ws.close();
});

test("the close packet ends the session", async () => {
  const h = await joined();
  h.ws.send("1");
  const { code } = await h.ws.closed;
  assert.equal(code, 1000);
});
