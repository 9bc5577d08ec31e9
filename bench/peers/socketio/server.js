'use strict';
// The official Socket.IO server (npm `socket.io`), written the way its users write one, speaking
// loadgen's Socket.IO convention (loadgen --adapter socketio): `join` puts the socket in a room
// and acks, `loadgen` (room, payload) emits the payload to the room's other sockets, and the
// classic chat's `chat message` goes to everyone. WebSocket transport only, as loadgen uses it.
//
// Follows bench/PROTOCOL.md: `--listen IP:PORT`, `--threads N` (accepted, ignored: Node runs
// one event loop), one `listening on <addr>` line.

const http = require('node:http');
const { Server } = require('socket.io');

const USAGE = 'usage: node server.js [--listen IP:PORT] [--threads N]';

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
const server = http.createServer();
const io = new Server(server, { transports: ['websocket'], perMessageDeflate: false });

io.on('connection', (socket) => {
  socket.on('join', (room, ack) => {
    socket.join(room);
    if (typeof ack === 'function') ack();
  });
  socket.on('loadgen', (room, payload) => socket.to(room).emit('loadgen', payload));
  socket.on('chat message', (msg) => io.emit('chat message', msg));
});

server.listen(args.port, args.host, () => {
  const { address, port } = server.address();
  const host = address.includes(':') ? `[${address}]` : address;
  console.log(`listening on ${host}:${port}`);
});

function stop() {
  io.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
