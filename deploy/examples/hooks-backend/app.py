"""An example backend for the gateway's hooks (gateway/docs/hooks.md), standard library only.

- connect: authenticates the WebSocket upgrade against a session table, by the `session` cookie
  the browser already has (set by POST /login below), and subscribes the user to their own
  channel;
- publish on `chat:` channels: moderation (messages with a blocked word are refused, others
  are trimmed and tagged with the author);
- rpc: `whoami` and `room_size`;
- disconnect: keeps the last events, readable at GET /events.

Every hook request's signature is checked. Run:

    python3 app.py --port 9000 --secret change-me

and start the gateway with

    gateway --hook-secret change-me \\
      --hook-connect http://127.0.0.1:9000/hooks/connect --hook-connect-cookies session \\
      --allowed-origins http://127.0.0.1:8080 \\
      --hook-publish chat:=http://127.0.0.1:9000/hooks/publish \\
      --hook-rpc http://127.0.0.1:9000/hooks/rpc \\
      --hook-disconnect http://127.0.0.1:9000/hooks/disconnect
"""

import argparse
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOCKED = {"spam", "scam"}
MAX_TEXT = 500

SESSIONS = {}  # session id -> user
SESSIONS_LOCK = threading.Lock()
EVENTS = deque(maxlen=1000)
ROOMS = {}  # channel -> number of messages seen


def verify(key, headers, body):
    """The gateway's signature: HMAC-SHA256 over "<timestamp>.<body>", and a fresh timestamp."""
    ts = headers.get("X-Gateway-Timestamp", "")
    mac = hmac.new(key, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300
    return fresh and hmac.compare_digest("sha256=" + mac, headers.get("X-Gateway-Signature", ""))


def on_connect(req):
    with SESSIONS_LOCK:
        user = SESSIONS.get(req["cookies"].get("session", ""))
    if user is None:
        return {"allow": False, "status": 401, "reason": "log in first"}
    return {"allow": True, "user": user, "channels": ["user:" + user],
            "data": {"greeting": "welcome back, " + user}}


def on_publish(req):
    data = req["data"]
    text = data.get("text") if isinstance(data, dict) else data
    if not isinstance(text, str) or not text.strip():
        return {"allow": False, "reason": "a chat message has text"}
    if set(text.lower().split()) & BLOCKED:
        return {"allow": False, "reason": "message refused by moderation"}
    ROOMS[req["channel"]] = ROOMS.get(req["channel"], 0) + 1
    clean = text.strip()[:MAX_TEXT]
    if isinstance(data, dict):
        return {"allow": True, "data": dict(data, text=clean, by=req["user"])}
    return {"allow": True, "data": clean}


def on_rpc(req):
    if req["method"] == "whoami":
        return {"result": {"user": req["user"], "conn": req["conn"]}}
    if req["method"] == "room_size":
        channel = (req.get("data") or {}).get("channel", "")
        return {"result": {"channel": channel, "messages": ROOMS.get(channel, 0)}}
    return {"error": {"code": "no_such_method", "message": "unknown method " + req["method"]}}


def on_disconnect(req):
    EVENTS.extend(req["events"])
    return {}


HOOKS = {"/hooks/connect": on_connect, "/hooks/publish": on_publish, "/hooks/rpc": on_rpc,
         "/hooks/disconnect": on_disconnect}


def handler(key):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The answer's head and body are two writes: Nagle would hold the body for the
        # gateway's delayed ACK (40 ms).
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def reply(self, status, obj, extra=()):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/events":
                return self.reply(200, list(EVENTS))
            self.reply(404, {"error": "not found"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/login":
                # A stand-in for the application's real login: any name gets a session.
                user = json.loads(body or b"{}").get("user", "")
                if not user.isalnum():
                    return self.reply(400, {"error": "user must be letters and digits"})
                sid = secrets.token_urlsafe(16)
                with SESSIONS_LOCK:
                    SESSIONS[sid] = user
                cookie = f"session={sid}; Path=/; HttpOnly; SameSite=Lax"
                return self.reply(200, {"user": user}, [("Set-Cookie", cookie)])
            hook = HOOKS.get(self.path)
            if hook is None:
                return self.reply(404, {"error": "not found"})
            if not verify(key, self.headers, body):
                return self.reply(401, {"error": "bad signature"})
            self.reply(200, hook(json.loads(body)))

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=9000, help="0 picks a free port")
    p.add_argument("--secret", required=True, help="the gateway's --hook-secret")
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(args.secret.encode()))
    server.daemon_threads = True
    print("listening on", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
