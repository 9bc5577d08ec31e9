// The socket.io-client suite of clients.test.mjs again, with the client's default transports:
// each session starts over HTTP long-polling and upgrades to a WebSocket (every test waits for
// the upgrade and checks the final transport), on a gateway with two shards, so a session's
// GET, POST and WebSocket land on either shard.
process.env.SIO_TRANSPORTS = "default";
await import("./clients.test.mjs");
