"""The backend of the hooks suite (gateway/tests/hooks.rs): a real HTTP server on a loopback
port from the OS, answering the gateway's hook calls, and also misbehaving on purpose on some
paths (slow, garbage, 500, cut mid-answer). It checks every request's signature and prints one
line per call on stdout (`CALL <path> <json body>`) so the test sees what the backend received.

Usage: backend.py SECRET   (prints `listening on <port>`, serves until killed)
"""

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = sys.argv[1].encode()
SLOW_SECONDS = 3
PRINTING = threading.Lock()


def say(*parts):
    """One whole line on stdout, even from concurrent handler threads."""
    with PRINTING:
        sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
        sys.stdout.flush()


def verified(headers, body):
    ts = headers.get("X-Gateway-Timestamp", "")
    sig = headers.get("X-Gateway-Signature", "")
    mac = hmac.new(SECRET, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300
    return fresh and hmac.compare_digest("sha256=" + mac, sig)


def connect(req):
    cookies = req.get("cookies", {})
    query = req.get("query", "")
    if "deny=status" in query:
        return {"allow": False, "status": 401, "reason": "no session"}
    if "deny=close" in query:
        return {"allow": False, "close_code": 4403, "reason": "banned"}
    user = "cookie-user" if cookies.get("session") == "good" else None
    for part in query.split("&"):
        if part.startswith("user="):
            user = part[5:]
    return {
        "allow": True,
        "user": user,
        "channels": ["welcome:" + (user or "anon")],
        "data": {"path": req["path"], "headers": req.get("headers", {}),
                 "subprotocols": req.get("subprotocols", [])},
    }


def subscribe(req):
    if req["channel"].startswith("secret:"):
        return {"allow": False, "reason": "members only"}
    return {"allow": True}


def publish(req):
    data = req["data"]
    if isinstance(data, str) and "badword" in data:
        return {"allow": False, "reason": "moderated"}
    if isinstance(data, str):
        return {"allow": True, "data": data.upper()}
    return {"allow": True}


def rpc(req):
    if req["method"] == "add":
        return {"result": {"sum": req["data"]["a"] + req["data"]["b"], "user": req["user"]}}
    return {"error": {"code": "no_method", "message": "unknown method " + req["method"]}}


def forward(req):
    """Echo each message upper-cased; `sub:C` subscribes, `pub:C:TEXT` publishes, `bye` closes."""
    answer = {"send": [], "subscribe": [], "publish": []}
    for m in req["messages"]:
        data = m["data"]
        if m["type"] == "binary":
            answer["send"].append({"binary_bytes": len(base64.b64decode(data))})
        elif data.startswith("sub:"):
            answer["subscribe"].append(data[4:])
        elif data.startswith("pub:"):
            _, channel, text = data.split(":", 2)
            answer["publish"].append({"channel": channel, "data": text})
        elif data == "bye":
            answer["close"] = {"code": 4000, "reason": "backend says bye"}
        else:
            answer["send"].append(data.upper())
    return answer


ROUTES = {"/forward": forward, "/connect": connect, "/subscribe": subscribe, "/publish": publish, "/rpc": rpc,
          "/disconnect": lambda req: {}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The answer's head and body are two writes: Nagle would hold the body for the
    # gateway's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        say("CALL", self.path, body.decode())
        if not verified(self.headers, body):
            say("BADSIG", self.path)
            return self.answer(401, b'{"error":"bad signature"}')
        if self.path == "/slow":
            time.sleep(SLOW_SECONDS)
            return self.answer(200, b'{"result":"late"}')
        if self.path == "/garbage":
            self.wfile.write(b"this is not HTTP at all\r\n\r\n")
            self.close_connection = True
            return
        if self.path == "/500":
            return self.answer(500, b'{"error":"boom"}')
        if self.path == "/cut":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"res")
            self.wfile.flush()
            self.close_connection = True
            return
        route = ROUTES.get(self.path)
        if route is None:
            return self.answer(404, b'{"error":"no such hook"}')
        self.answer(200, json.dumps(route(json.loads(body))).encode())

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 0
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
say("listening on", server.server_address[1])
server.serve_forever()
