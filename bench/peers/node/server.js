'use strict';
// Echo and broadcast server on the `ws` library, speaking the bench protocol
// (bench/PROTOCOL.md), written the way `ws` users write one: an http server whose
// 'upgrade' event hands the socket to a WebSocketServer per path, and broadcast by
// iterating `wss.clients` and calling `send` on each open one.
//
// Node runs one event loop: `--threads` is accepted for the common start-up contract
// and ignored.

const http = require('node:http');
const { WebSocketServer, WebSocket } = require('ws');

const USAGE = 'usage: node server.js [--listen IP:PORT] [--threads N]';
const PUBLISH_PREFIX = Buffer.from('pub:');
const MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;

function parseArgs(argv) {
  const args = { host: '127.0.0.1', port: 0 };
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split(/=(.*)/s);
    if (value === undefined && (flag === '--listen' || flag === '--threads')) value = argv[++i];
    if (flag === '--listen') {
      const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(value || '');
      if (!match) fail(`--listen ${JSON.stringify(value)} is not IP:PORT`);
      args.host = match[1];
      args.port = Number(match[2]);
    } else if (flag === '--threads') {
      if (!/^[1-9]\d*$/.test(value || '')) fail(`--threads ${JSON.stringify(value)} is not a number >= 1`);
    } else if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else {
      fail(`unknown flag ${JSON.stringify(flag)}`);
    }
  }
  return args;
}

function fail(message) {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
const options = { noServer: true, maxPayload: MAX_PAYLOAD_BYTES, perMessageDeflate: false };
const echo = new WebSocketServer({ ...options, clientTracking: false });
const broadcast = new WebSocketServer(options);

echo.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

// `ws` adds a client to `broadcast.clients` before 'connection' fires, in the same tick as
// the 101 is written, so a connection is a subscriber as soon as its handshake is done.
broadcast.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (isBinary || data.length < PUBLISH_PREFIX.length) return;
    if (!data.subarray(0, PUBLISH_PREFIX.length).equals(PUBLISH_PREFIX)) return;
    const payload = data.subarray(PUBLISH_PREFIX.length);
    for (const client of broadcast.clients) {
      if (client !== ws && client.readyState === WebSocket.OPEN) client.send(payload, { binary: false });
    }
  });
});

const server = http.createServer((req, res) => {
  res.writeHead(426, { 'Content-Type': 'text/plain' });
  res.end('WebSocket upgrade required\n');
});
server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  const wss = path === '/broadcast' ? broadcast : echo;
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});
server.listen({ host: args.host, port: args.port, backlog: 4096 }, () => {
  const { address, family, port } = server.address();
  const host = family === 'IPv6' ? `[${address}]` : address;
  process.stdout.write(`listening on ${host}:${port}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
