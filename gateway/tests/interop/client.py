"""Interop client for the gateway's echo endpoint, using the Python `websockets` library.

Usage: client.py URL [OFFERED_SUBPROTOCOLS [EXPECTED_SUBPROTOCOL [DEFLATE]]]
  OFFERED_SUBPROTOCOLS: comma list offered in the handshake ("" for none)
  EXPECTED_SUBPROTOCOL: what the server must select ("" for none)
  DEFLATE: permessage-deflate: "" offers the library's default and requires it accepted, "off"
    offers nothing, "declined" offers the default and requires it declined, otherwise a comma
    list of offer parameters (server_no_context_takeover, client_no_context_takeover,
    server_max_window_bits=N, client_max_window_bits[=N]) offered and required accepted

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

from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.sync.client import connect  # noqa: E402

# INTEROP_MAX_SIZE trims the largest echoes for runs that repeat the exchange many times.
SIZES = [n for n in [0, 1, 125, 126, 65535, 65536, 1 << 20] if n <= int(os.environ.get("INTEROP_MAX_SIZE", 1 << 20))]


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


def deflate_options(spec: str) -> dict:
    """`connect` keywords for a DEFLATE argument."""
    if spec in ("", "declined"):
        return {"compression": "deflate"}
    if spec == "off":
        return {"compression": None}
    params: dict = {"client_max_window_bits": None}
    for item in spec.split(","):
        name, _, value = item.partition("=")
        params[name] = int(value) if value else True
    return {"compression": None, "extensions": [ClientPerMessageDeflateFactory(**params)]}


def check_deflate(ws, spec: str) -> None:
    exts = ws.protocol.extensions
    if spec in ("off", "declined"):
        if exts:
            fail(f"expected no extension, got {exts}")
        return
    if len(exts) != 1 or not isinstance(exts[0], PerMessageDeflate):
        fail(f"permessage-deflate not negotiated: {exts}")
    pmd = exts[0]
    # The gateway keeps no context between messages in either direction.
    if not (pmd.remote_no_context_takeover and pmd.local_no_context_takeover):
        fail("server did not answer server_ and client_no_context_takeover")
    for item in spec.split(","):
        name, _, value = item.partition("=")
        if name == "server_max_window_bits" and pmd.remote_max_window_bits != int(value):
            fail(f"server_max_window_bits {pmd.remote_max_window_bits}, offered {value}")


def main() -> None:
    url = sys.argv[1]
    offered = [p for p in (sys.argv[2] if len(sys.argv) > 2 else "").split(",") if p]
    expected = (sys.argv[3] if len(sys.argv) > 3 else "") or None
    deflate = sys.argv[4] if len(sys.argv) > 4 else ""

    with connect(
        url,
        subprotocols=offered or None,
        **deflate_options(deflate),
        proxy=None,
        max_size=16 << 20,
        ping_interval=None,
        open_timeout=10,
        close_timeout=10,
    ) as ws:
        if ws.subprotocol != expected:
            fail(f"subprotocol {ws.subprotocol!r}, expected {expected!r}")
        check_deflate(ws, deflate)
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
        for size in [100, 200, 2048, 100_000]:
            chat = ('{"type":"message","data":"' + "see you at ten " * size)[: size - 2] + '"}'
            ws.send(chat)
            if ws.recv(timeout=10) != chat:
                fail(f"chat echo of {size} bytes differs")
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
