"""Echo and broadcast server on the Python `websockets` library, the slow baseline of the
comparisons. It speaks the bench protocol (bench/PROTOCOL.md) and is written the way that
library's users write one: `serve` with one handler coroutine per connection, and
`websockets.broadcast` to a set of subscribers.

asyncio runs one event loop: `--threads` is accepted for the common start-up contract and
ignored. Compression is off, as in every other peer.
"""

import argparse
import asyncio
import sys

from websockets.asyncio.server import broadcast, serve

PUBLISH_PREFIX = "pub:"
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

subscribers = set()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="IP:PORT to accept on")
    parser.add_argument("--threads", type=int, default=1, help="accepted and ignored")
    args = parser.parse_args(argv)
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit() or args.threads < 1:
        parser.error(f"--listen {args.listen!r} is not IP:PORT or --threads is below 1")
    return host.strip("[]"), int(port)


def path_of(connection):
    return connection.request.path.split("?", 1)[0]


def subscribe_before_101(connection, request, response):
    # Runs before the handshake answer is sent: a broadcast connection is a subscriber as
    # soon as its client sees the 101, as the protocol requires.
    if response.status_code == 101 and request.path.split("?", 1)[0] == "/broadcast":
        subscribers.add(connection)
    return response


async def handler(connection):
    if path_of(connection) != "/broadcast":
        async for message in connection:
            await connection.send(message)
        return
    try:
        async for message in connection:
            if isinstance(message, str) and message.startswith(PUBLISH_PREFIX):
                payload = message[len(PUBLISH_PREFIX):]
                broadcast((c for c in subscribers if c is not connection), payload)
    finally:
        subscribers.discard(connection)


async def main(argv):
    host, port = parse_args(argv)
    async with serve(
        handler,
        host,
        port,
        compression=None,
        max_size=MAX_PAYLOAD_BYTES,
        process_response=subscribe_before_101,
        backlog=4096,
    ) as server:
        address = server.sockets[0].getsockname()
        shown = f"[{address[0]}]" if ":" in address[0] else address[0]
        print(f"listening on {shown}:{address[1]}", flush=True)
        # Runs until a signal ends the process: SIGTERM by its default action (no wait for
        # clients to finish closing), SIGINT as KeyboardInterrupt.
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
