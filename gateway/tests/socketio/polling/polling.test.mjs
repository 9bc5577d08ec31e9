// Engine.IO 4 over HTTP long-polling, with plain HTTP requests (node:http) and a bare WebSocket
// (`ws`) for the upgrade, written from the public description of the protocol: the handshake,
// batched payloads, binary as base64, one GET at a time, the ping timeout, the upgrade with its
// probe, the sid refused after it, CORS (allowed and refused origins, the preflight), maxPayload.
//
// The gateway is started by tests/socketio.rs with two shards (a session's requests land on
// either), --socketio-ping-interval 2s, --socketio-ping-timeout 4s (so that sessions a test
// leaves idle for a moment live on a loaded machine), the events shout=broadcast-others and
// ping=ack:{"pong":true}, --socketio-cors-origin http://allowed.example and
// --socketio-cors-credentials on.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import WebSocket from "ws";

const BASE = process.env.GATEWAY_URL;
const PATH = "/socket.io/?EIO=4&transport=polling";
// Generous: a held GET legitimately waits up to a ping interval, on a shared, loaded machine.
const WAIT_MS = 10_000;
const RS = "\x1e";

// One request on a fresh connection: { status, headers, body (string) }.
function request(method, path, { body, headers = {} } = {}) {
  if (body !== undefined) headers = { ...headers, "Content-Length": Buffer.byteLength(body) };
  return new Promise((resolve, reject) => {
    const req = http.request(BASE + path, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.setTimeout(WAIT_MS, () => req.destroy(new Error(`${method} ${path}: no answer`)));
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

async function handshake(headers) {
  const r = await request("GET", PATH, { headers });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.body[0], "0", r.body);
  const open = JSON.parse(r.body.slice(1));
  return { sid: open.sid, open, res: r };
}

const get = (sid) => request("GET", `${PATH}&sid=${sid}`);
const post = (sid, body) => request("POST", `${PATH}&sid=${sid}`, { body });

// Records of GET answers until `n` have come (pings are answered with a pong).
async function records(sid, n) {
  const got = [];
  const deadline = Date.now() + WAIT_MS;
  while (got.length < n) {
    assert.ok(Date.now() < deadline, `only ${JSON.stringify(got)} of ${n} records`);
    const r = await get(sid);
    assert.equal(r.status, 200, r.body);
    for (const rec of r.body.split(RS)) {
      if (rec === "2") await post(sid, "3");
      else got.push(rec);
    }
  }
  return got;
}

async function joined() {
  const s = await handshake();
  assert.equal((await post(s.sid, "40")).body, "ok");
  const [ack] = await records(s.sid, 1);
  assert.match(ack, /^40\{"sid":"[^"]+"\}$/);
  return s;
}

test("the handshake opens a session offering the upgrade to websocket", async () => {
  const { sid, open, res } = await handshake();
  assert.match(res.headers["content-type"], /^text\/plain/);
  assert.equal(typeof sid, "string");
  assert.deepEqual(open.upgrades, ["websocket"]);
  assert.equal(open.pingInterval, 2000);
  assert.equal(open.pingTimeout, 4000);
  assert.equal(typeof open.maxPayload, "number");
  const bad = await request("GET", "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAAAA");
  assert.equal(bad.status, 400);
  assert.equal(JSON.parse(bad.body).code, 1);
  const put = await request("PUT", PATH);
  assert.equal(put.status, 400);
  const badToken = await request("GET", `${PATH}&token=not.a.token`);
  assert.equal(badToken.status, 401, "a token is checked like on a WebSocket upgrade");
});

test("a POST may carry several packets, and a GET answers with several", async () => {
  const { sid } = await joined();
  assert.equal((await post(sid, `421["ping"]${RS}422["ping"]`)).body, "ok");
  const got = await records(sid, 2);
  assert.deepEqual(got, ['431[{"pong":true}]', '432[{"pong":true}]']);
});

test("binary data goes as b + base64 both ways", async () => {
  const a = await joined();
  const b = await joined();
  const body = `451-["shout",{"_placeholder":true,"num":0}]${RS}bAQID/w==`;
  assert.equal((await post(a.sid, body)).body, "ok");
  const got = await records(b.sid, 2);
  assert.deepEqual(got, ['451-["shout",{"_placeholder":true,"num":0}]', "bAQID/w=="]);
  const bad = await post(a.sid, "b!!notbase64");
  assert.equal(bad.status, 400);
});

test("a second GET in flight is a 400 and ends the session", async () => {
  const { sid } = await joined();
  const first = get(sid);
  await new Promise((r) => setTimeout(r, 50));
  const second = await get(sid);
  assert.equal(second.status, 400);
  const held = await first;
  assert.equal(held.body, "1", "the held GET gets the close packet");
  assert.equal((await get(sid)).status, 400, "the session is gone");
});

test("a session whose pong is late is closed and freed", async () => {
  const { sid } = await handshake();
  const r = await get(sid);
  assert.equal(r.body, "2", "the server pings after pingInterval");
  await new Promise((res) => setTimeout(res, 5000));
  let after = await get(sid);
  if (after.status === 200) {
    // Held just before the timeout fired: it is answered with the close packet.
    assert.equal(after.body, "1");
    after = await get(sid);
  }
  assert.equal(after.status, 400, after.body);
  assert.equal(JSON.parse(after.body).code, 1);
});

test("the upgrade: probe, noop for the held GET, then the WebSocket carries the session", async () => {
  const a = await joined();
  const other = await joined();
  const held = get(a.sid);
  await new Promise((r) => setTimeout(r, 50));
  const ws = new WebSocket(`${BASE.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket&sid=${a.sid}`);
  const queue = [];
  let wake = null;
  ws.on("message", (data, isBinary) => {
    queue.push(isBinary ? Buffer.from(data) : data.toString());
    if (wake) wake();
  });
  const next = async () => {
    const t = Date.now();
    for (;;) {
      const m = queue.shift();
      if (m === "2") {
        ws.send("3");
        continue;
      }
      if (m !== undefined) return m;
      assert.ok(Date.now() - t < WAIT_MS, "no message on the WebSocket");
      await new Promise((r) => {
        wake = r;
        setTimeout(r, 100);
      });
    }
  };
  await new Promise((res, rej) => {
    ws.once("open", res);
    ws.once("error", rej);
  });
  ws.send("2probe");
  assert.equal(await next(), "3probe");
  let heldBody = (await held).body;
  if (heldBody === "2") {
    // The ping came first (a loaded machine): answer it; a GET while probing gets the noop.
    await post(a.sid, "3");
    heldBody = (await get(a.sid)).body;
  }
  assert.equal(heldBody, "6", "the held GET is answered with a noop");
  // Sent while the upgrade is under way: it must arrive once, on the WebSocket.
  assert.equal((await post(other.sid, '42["shout","during"]')).body, "ok");
  await new Promise((r) => setTimeout(r, 100));
  ws.send("5");
  assert.equal(await next(), '42["shout","during"]');
  ws.send('421["ping"]');
  assert.equal(await next(), '431[{"pong":true}]');
  const refused = await get(a.sid);
  assert.equal(refused.status, 400, "no polling after the upgrade");
  assert.equal((await post(a.sid, "40")).status, 400);
  ws.close();
});

test("CORS: an allowed origin is named, with credentials; another is refused", async () => {
  const ok = await handshake({ Origin: "http://allowed.example" });
  assert.equal(ok.res.headers["access-control-allow-origin"], "http://allowed.example");
  assert.equal(ok.res.headers["access-control-allow-credentials"], "true");
  const no = await request("GET", PATH, { headers: { Origin: "http://evil.example" } });
  assert.equal(no.status, 403);
  assert.equal(no.headers["access-control-allow-origin"], undefined);
  const same = await request("GET", PATH, { headers: { Origin: BASE } });
  assert.equal(same.status, 200, "same origin needs no allow-list");
});

test("CORS preflight: OPTIONS answers the allowed origin, refuses another", async () => {
  const headers = {
    Origin: "http://allowed.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
  };
  const ok = await request("OPTIONS", PATH, { headers });
  assert.equal(ok.status, 204);
  assert.equal(ok.headers["access-control-allow-origin"], "http://allowed.example");
  assert.match(ok.headers["access-control-allow-methods"], /POST/);
  const no = await request("OPTIONS", PATH, { headers: { ...headers, Origin: "http://evil.example" } });
  assert.equal(no.status, 403);
});

test("a POST over maxPayload is refused with 413", async () => {
  const { sid, open } = await joined();
  const big = "4" + "x".repeat(open.maxPayload);
  const r = await post(sid, big);
  assert.equal(r.status, 413);
});
