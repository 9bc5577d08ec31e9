// Interop client for the gateway's echo endpoint, using the Node `ws` library.
//
// Usage: node client.js URL [OFFERED_SUBPROTOCOLS [EXPECTED_SUBPROTOCOL [DEFLATE]]]
//   OFFERED_SUBPROTOCOLS: comma list offered in the handshake ("" for none)
//   EXPECTED_SUBPROTOCOL: what the server must select ("" for none)
//   DEFLATE: permessage-deflate: "" offers the library's default and requires it accepted,
//     "off" offers nothing, "declined" offers the default and requires it declined, otherwise a
//     comma list of offer parameters (server_no_context_takeover, client_no_context_takeover,
//     server_max_window_bits=N, client_max_window_bits[=N]) offered and required accepted.
//     Whenever offered, the client compresses every message (threshold 0).
//
// Exchanges text and binary messages of several sizes, pings, and closes with 1000. Exits 0 only
// if every echo, pong and the close code matched; prints what went wrong otherwise.
'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');

const [url, offeredArg = '', expected = '', deflate = ''] = process.argv.slice(2);
const offered = offeredArg.split(',').filter((p) => p.length > 0);
// INTEROP_MAX_SIZE trims the largest echoes for runs that repeat the exchange many times.
const maxSize = Number(process.env.INTEROP_MAX_SIZE || 1 << 20);
const SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20].filter((n) => n <= maxSize);

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

setTimeout(() => fail('timed out after 30 s'), 30000).unref();

function textOf(size) {
  const units = ['a', '\u00e9', '\u20ac', '\u{1d11e}'];
  let out = '';
  let n = 0;
  for (let i = 0; n < size; i++) {
    let u = units[i % 4];
    if (n + Buffer.byteLength(u) > size) u = 'a';
    out += u;
    n += Buffer.byteLength(u);
  }
  return out;
}

function deflateOptions(spec) {
  if (spec === 'off') return false;
  const opts = { threshold: 0 };
  if (spec === '' || spec === 'declined') return opts;
  const names = {
    server_no_context_takeover: 'serverNoContextTakeover',
    client_no_context_takeover: 'clientNoContextTakeover',
    server_max_window_bits: 'serverMaxWindowBits',
    client_max_window_bits: 'clientMaxWindowBits',
  };
  for (const item of spec.split(',')) {
    const [name, value] = item.split('=');
    if (!names[name]) fail(`unknown parameter ${name}`);
    opts[names[name]] = value === undefined ? true : Number(value);
  }
  return opts;
}

function checkDeflate(spec) {
  const pmd = ws._extensions['permessage-deflate'];
  if (spec === 'off' || spec === 'declined') {
    if (ws.extensions !== '') fail(`expected no extension, got '${ws.extensions}'`);
    return;
  }
  if (ws.extensions !== 'permessage-deflate' || !pmd) fail(`not negotiated: '${ws.extensions}'`);
  // The gateway keeps no context between messages in either direction.
  if (!pmd.params.server_no_context_takeover || !pmd.params.client_no_context_takeover) {
    fail(`server did not answer both no_context_takeover: ${JSON.stringify(pmd.params)}`);
  }
  for (const item of spec.split(',')) {
    const [name, value] = item.split('=');
    if (name === 'server_max_window_bits' && pmd.params.server_max_window_bits !== Number(value)) {
      fail(`server_max_window_bits ${pmd.params.server_max_window_bits}, offered ${value}`);
    }
  }
}

const ws = new WebSocket(url, offered, {
  maxPayload: 16 << 20,
  perMessageDeflate: deflateOptions(deflate),
});
const queue = [];
let waiting = null;

ws.on('message', (data, isBinary) => {
  const item = { data, isBinary };
  if (waiting) {
    const w = waiting;
    waiting = null;
    w(item);
  } else {
    queue.push(item);
  }
});
ws.on('error', (err) => fail(`socket error: ${err.message}`));

function next() {
  if (queue.length > 0) return Promise.resolve(queue.shift());
  return new Promise((resolve) => {
    waiting = resolve;
  });
}

function pong(payload) {
  return new Promise((resolve) => {
    ws.once('pong', (data) => resolve(data));
    ws.ping(payload);
  });
}

ws.on('open', async () => {
  if (ws.protocol !== expected) fail(`subprotocol '${ws.protocol}', expected '${expected}'`);
  checkDeflate(deflate);
  for (const size of SIZES) {
    const text = textOf(size);
    if (Buffer.byteLength(text) !== size) fail(`test text has the wrong size for ${size}`);
    ws.send(text);
    let got = await next();
    if (got.isBinary || got.data.toString('utf8') !== text) {
      fail(`text echo of ${size} bytes differs (binary=${got.isBinary}, ${got.data.length} bytes)`);
    }
    const bin = crypto.randomBytes(size);
    ws.send(bin);
    got = await next();
    if (!got.isBinary || !bin.equals(got.data)) {
      fail(`binary echo of ${size} bytes differs (binary=${got.isBinary}, ${got.data.length} bytes)`);
    }
  }
  for (const size of [100, 200, 2048, 100000]) {
    const chat = ('{"type":"message","data":"' + 'see you at ten '.repeat(size)).slice(0, size - 2) + '"}';
    ws.send(chat);
    const got = await next();
    if (got.isBinary || got.data.toString('utf8') !== chat) fail(`chat echo of ${size} bytes differs`);
  }
  for (const payload of [Buffer.alloc(0), Buffer.from('ping'), crypto.randomBytes(125)]) {
    const data = await pong(payload);
    if (!payload.equals(data)) fail(`pong payload differs for a ${payload.length}-byte ping`);
  }
  // Fragmented send: two fragments of one text message.
  ws.send('frag', { fin: false });
  ws.send('mented \u20ac', { fin: true });
  const got = await next();
  if (got.isBinary || got.data.toString('utf8') !== 'fragmented \u20ac') {
    fail(`fragmented echo differs: ${got.data.toString('utf8')}`);
  }
  ws.on('close', (code) => {
    if (code !== 1000) fail(`server answered close with ${code}, expected 1000`);
    console.log('ok');
    process.exit(0);
  });
  ws.close(1000, 'done');
});
