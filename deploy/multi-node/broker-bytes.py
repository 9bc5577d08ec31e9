#!/usr/bin/env python3
"""Broker bytes per publish, from Redis's own counters (INFO stats).

Starts a redis-server and three gateway nodes on loopback ports, puts WebSocket subscribers of
one channel on nodes 1 and 2 (none on node 3), publishes N messages through node 3's API, and
reports what Redis read and wrote per publish: one PUBLISH in, one copy out per node with
subscribers (2 here), whatever the number of subscribers. The idle traffic of the same
duration (heartbeats, pings) is measured first and subtracted.

    python3 deploy/multi-node/broker-bytes.py GATEWAY_BINARY [N] [DATA_BYTES] [SUBSCRIBERS]

Needs redis-server and the Python `websockets` package. Everything stops by itself.
"""
import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request

import websockets

KEY = "bench-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_info(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n")
        data = b""
        while b"\r\n" not in data or len(data) < int(data[1:data.index(b"\r\n")]) + 5:
            data += s.recv(65536)
    stats = {}
    for line in data.decode().splitlines():
        k, _, v = line.partition(":")
        if v.strip().isdigit():
            stats[k] = int(v)
    return stats["total_net_input_bytes"], stats["total_net_output_bytes"]


def start_node(binary, redis_port, node):
    p = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--threads", "1",
         "--api-key", KEY, "--broker", f"redis://127.0.0.1:{redis_port}", "--node-id", str(node),
         "--log-level", "warn"],
        stdout=subprocess.PIPE, text=True)
    client = api = None
    while client is None or api is None:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"node {node} exited")
        if line.startswith("listening on "):
            client = line.split()[-1]
        elif line.startswith("api listening on "):
            api = line.split()[-1]
    return p, client, api


def publish(api, data):
    req = urllib.request.Request(
        f"http://{api}/api/publish", method="POST",
        data=json.dumps({"channel": "room", "data": data}).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 202


async def run(binary, n, size, subscribers):
    redis_port = free_port()
    procs = [subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)]
    try:
        time.sleep(0.3)
        nodes = []
        for node in (1, 2, 3):
            p, client, api = start_node(binary, redis_port, node)
            procs.append(p)
            nodes.append((client, api))
        subs = []
        for i in range(subscribers):
            ws = await websockets.connect(f"ws://{nodes[i % 2][0]}/ws", max_size=None)
            await ws.recv()  # welcome
            await ws.send(json.dumps({"op": "subscribe", "channel": "room", "id": 1}))
            await ws.recv()
            subs.append(ws)
        time.sleep(1.0)

        idle_start = redis_info(redis_port)
        t0 = time.monotonic()
        time.sleep(1.0)
        idle_end = redis_info(redis_port)
        idle_secs = time.monotonic() - t0

        data = "x" * size
        before = redis_info(redis_port)
        t0 = time.monotonic()
        for _ in range(n):
            publish(nodes[2][1], data)
        for ws in subs:
            for _ in range(n):
                await ws.recv()
        secs = time.monotonic() - t0
        after = redis_info(redis_port)
        scale = secs / idle_secs
        bg_in = (idle_end[0] - idle_start[0]) * scale
        bg_out = (idle_end[1] - idle_start[1]) * scale
        per_in = (after[0] - before[0] - bg_in) / n
        per_out = (after[1] - before[1] - bg_out) / n
        print(f"publishes: {n}, data: {size} bytes (JSON string of {size + 2} bytes), "
              f"subscribers: {subscribers} on 2 nodes, publisher API on a third")
        print(f"redis bytes in per publish:  {per_in:.1f}")
        print(f"redis bytes out per publish: {per_out:.1f} "
              f"({per_out / 2:.1f} per subscribed node)")
        print(f"background subtracted: {bg_in:.0f} in, {bg_out:.0f} out over {secs:.2f} s")
        for ws in subs:
            await ws.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    asyncio.run(run(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000,
                    int(sys.argv[3]) if len(sys.argv) > 3 else 100,
                    int(sys.argv[4]) if len(sys.argv) > 4 else 20))
