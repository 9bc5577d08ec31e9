"""Interop client for the gateway's echo endpoint, using the Python `websockets` library.

Usage: client.py URL [OFFERED_SUBPROTOCOLS [EXPECTED_SUBPROTOCOL]]
  OFFERED_SUBPROTOCOLS: comma list offered in the handshake ("" for none)
  EXPECTED_SUBPROTOCOL: what the server must select ("" for none)

Exchanges text and binary messages of several sizes, pings, and closes with 1000. Exits 0 only if
every echo, pong and the close code matched; prints what went wrong otherwise.
"""

import os
import sys

import websockets

if int(websockets.__version__.split(".")[0]) < 13:
    # Written against the sync client of websockets 13 and later (requirements.txt pins 17.4).
    print(
        f"FAIL: websockets {websockets.__version__} is too old; "
        "pip install -r gateway/tests/interop/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(1)

from websockets.sync.client import connect  # noqa: E402

SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20]


def text_of(size: int) -> str:
    # Mixed 1- to 4-byte code points, cut to exactly `size` bytes of UTF-8.
    units = ["a", "\u00e9", "\u20ac", "\U0001d11e"]
    out, n, i = [], 0, 0
    while n < size:
        u = units[i % 4]
        if n + len(u.encode()) > size:
            u = "a"
        out.append(u)
        n += len(u.encode())
        i += 1
    return "".join(out)


def fail(msg: str) -> None:
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    url = sys.argv[1]
    offered = [p for p in (sys.argv[2] if len(sys.argv) > 2 else "").split(",") if p]
    expected = (sys.argv[3] if len(sys.argv) > 3 else "") or None

    with connect(
        url,
        subprotocols=offered or None,
        proxy=None,
        max_size=16 << 20,
        ping_interval=None,
        open_timeout=10,
        close_timeout=10,
    ) as ws:
        if ws.subprotocol != expected:
            fail(f"subprotocol {ws.subprotocol!r}, expected {expected!r}")
        for size in SIZES:
            text = text_of(size)
            if len(text.encode()) != size:
                fail(f"test text has the wrong size {len(text.encode())} != {size}")
            ws.send(text)
            got = ws.recv(timeout=10)
            if not isinstance(got, str) or got != text:
                fail(f"text echo of {size} bytes differs (got {type(got).__name__} of {len(got)})")
            data = os.urandom(size)
            ws.send(data)
            got = ws.recv(timeout=10)
            if not isinstance(got, bytes) or got != data:
                fail(f"binary echo of {size} bytes differs (got {type(got).__name__} of {len(got)})")
        for payload in [b"", b"ping", os.urandom(125)]:
            pong = ws.ping(payload)
            if not pong.wait(timeout=10):
                fail(f"no pong for a ping of {len(payload)} bytes")
        # Fragmented send: an iterable becomes one fragmented message.
        parts = ["frag", "mented ", "\u20ac"]
        ws.send(parts)
        got = ws.recv(timeout=10)
        if got != "".join(parts):
            fail(f"fragmented echo differs: {got!r}")
        ws.close(code=1000, reason="done")
        if ws.close_code != 1000:
            fail(f"server answered close with {ws.close_code}, expected 1000")
    print("ok")


if __name__ == "__main__":
    main()
