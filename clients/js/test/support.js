// What the client tests share: the gateway's addresses from the environment (set by
// gateway/tests/js_client.rs), the `ws` package as the WebSocket for Node, the backend API, and
// bounded waits. Every wait fails the test after WAIT_MS instead of hanging it.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import net from 'node:net';
import { createHmac } from 'node:crypto';

import { GatewayClient } from '../gateway-client.js';

export const WAIT_MS = 10000;

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through gateway/tests/js_client.rs`);
  return v;
}

export const WS_URL = env('GATEWAY_WS_URL');
export const API_URL = env('GATEWAY_API_URL');
const API_KEY = env('GATEWAY_API_KEY');
const TOKEN_SECRET = env('GATEWAY_TOKEN_SECRET');

/** A token the gateway accepts: HS256 over `claims`, valid for a minute unless `exp` is given. */
export function signToken(claims, secret = TOKEN_SECRET) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({
    exp: Math.floor(Date.now() / 1000) + 60,
    ...claims,
  })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

// Node 20 has no global WebSocket without a flag; the interop tests' node_modules has `ws`.
const here = path.dirname(fileURLToPath(import.meta.url));
const modules =
  process.env.GATEWAY_NODE_MODULES ?? path.join(here, '../../../gateway/tests/interop');
export const WebSocket = createRequire(path.join(modules, 'package.json'))('ws');

/** A unique channel name under `prefix` (the gateway runs once for every test file). */
let serial = 0;
export function channel(prefix) {
  serial += 1;
  return `${prefix}${process.pid}-${serial}`;
}

/** A client with short backoff, closed by `closeAll`. */
const clients = [];
export function client(options = {}) {
  const c = new GatewayClient(options.url ?? WS_URL, {
    WebSocket,
    backoffBaseMs: 50,
    backoffMaxMs: 200,
    ...options,
  });
  clients.push(c);
  return c;
}

export function closeAll() {
  for (const c of clients.splice(0)) c.close();
}

/** Call the backend API; returns `{status, body}` (body parsed when JSON). */
export async function api(method, route, body) {
  const res = await fetch(`${API_URL}${route}`, {
    method,
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: keep the text.
  }
  return { status: res.status, body: parsed };
}

/** Publish through the API, in order (one request at a time). */
export async function apiPublish(ch, values) {
  for (const data of values) {
    const r = await api('POST', '/api/publish', { channel: ch, data });
    if (r.status !== 202) throw new Error(`publish ${ch}: ${r.status} ${JSON.stringify(r.body)}`);
  }
}

export async function apiDisconnect(conn, code, reason) {
  const r = await api('POST', '/api/disconnect', { conn, code, reason });
  if (r.status >= 300) throw new Error(`disconnect ${conn}: ${r.status} ${JSON.stringify(r.body)}`);
}

/** Resolve once `check()` is truthy (polled), with its value. */
export async function until(check, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** The next `event` of `c` that passes `pred`. */
export function next(c, event, pred = () => true, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${event}`));
    }, ms);
    const off = c.on(event, (v) => {
      if (!pred(v)) return;
      clearTimeout(timer);
      off();
      resolve(v);
    });
  });
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** A promise with its resolve function outside: a gate a test opens when it is ready. */
export function gate() {
  let open;
  const p = new Promise((r) => {
    open = r;
  });
  return { wait: () => p, open };
}

/** A TCP relay in front of the gateway whose current connections can be frozen: bytes stop
 *  flowing both ways without a close, as on a dead network path. New connections flow. */
export async function relay(target) {
  const { hostname, port } = new URL(target);
  const pairs = new Set();
  const frozen = [];
  const server = net.createServer((down) => {
    const up = net.connect(Number(port), hostname);
    const pair = { down, up };
    pairs.add(pair);
    down.pipe(up);
    up.pipe(down);
    const end = () => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port: local } = server.address();
  return {
    url: `ws://127.0.0.1:${local}${new URL(target).pathname}`,
    freeze() {
      for (const { down, up } of pairs) {
        down.unpipe(up);
        up.unpipe(down);
        down.pause();
        up.pause();
        frozen.push(down, up);
      }
      pairs.clear();
    },
    close() {
      for (const s of frozen.splice(0)) s.destroy();
      for (const { down, up } of pairs) {
        down.destroy();
        up.destroy();
      }
      server.close();
    },
  };
}
