"""Recovery time for missed publications, measured with real clients (Python `websockets`).

One round: a client subscribes to a channel on node FIRST and takes its position, leaves;
MISSED publications go through the API of node PUB; a new client connects to node BACK and
subscribes with `recover`. The time is from sending that subscribe to the last missed
publication received (the handshake is left out). Prints one JSON line: the median, p90 and
each round's milliseconds.

Usage: history_recovery.py --first ws://A/ws --back ws://B/ws --api http://A-api --key KEY
                           [--missed 300] [--rounds 20] [--label NAME]
"""

import argparse
import asyncio
import http.client
import json
import statistics
import time
import urllib.parse

import websockets


def publisher(api, key):
    u = urllib.parse.urlparse(api)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def publish(channel, n):
        body = json.dumps({"channel": channel, "data": n})
        conn.request("POST", "/api/publish", body, headers)
        r = conn.getresponse()
        r.read()
        if r.status != 202:
            raise RuntimeError(f"publish: {r.status}")

    return publish


async def request(ws, req):
    await ws.send(json.dumps(req))
    while True:
        m = json.loads(await ws.recv())
        if m.get("type") == "reply" and m.get("id") == req["id"]:
            return m


async def one_round(args, publish, channel):
    async with websockets.connect(args.first, max_size=None) as ws:
        await ws.recv()  # welcome
        sub = {"op": "subscribe", "channel": channel, "id": 1}
        reply = await request(ws, sub)
    position = {"offset": reply["offset"], "epoch": reply["epoch"]}
    for n in range(1, args.missed + 1):
        publish(channel, reply["offset"] + n)
    async with websockets.connect(args.back, max_size=None) as ws:
        await ws.recv()
        sub = {"op": "subscribe", "channel": channel, "id": 2, "recover": position}
        start = time.perf_counter()
        await ws.send(json.dumps(sub))
        got = 0
        recovered = None
        while got < args.missed:
            m = json.loads(await ws.recv())
            if m.get("type") == "reply" and m.get("id") == 2:
                recovered = m.get("recovered")
                if not recovered:
                    raise RuntimeError(f"not recovered: {m}")
            elif m.get("type") == "message":
                got += 1
        took = time.perf_counter() - start
    return took * 1000.0


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--first", required=True)
    p.add_argument("--back", required=True)
    p.add_argument("--api", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--missed", type=int, default=300)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--label", default="")
    args = p.parse_args()
    publish = publisher(args.api, args.key)
    times = []
    for r in range(args.rounds):
        times.append(await one_round(args, publish, f"chat:bench-{time.time_ns()}-{r}"))
    times.sort()
    out = {
        "label": args.label,
        "missed": args.missed,
        "median_ms": statistics.median(times),
        "p90_ms": times[int(0.9 * (len(times) - 1))],
        "rounds_ms": [round(t, 2) for t in times],
    }
    print(json.dumps(out))


asyncio.run(main())
