"""The backend of the rpc overhead measurement (bench/hooks/rpc-overhead.sh): answers every
POST with {"result": <the call's data>}, keep-alive, no signature check (the same work for calls
through the gateway and direct ones). Prints `listening on <port>`.

Usage: rpc_backend.py [PORT]
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without this, Nagle holds the body until the
    # gateway's delayed ACK (40 ms on Linux).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out = json.dumps({"result": json.loads(body).get("data")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
server.daemon_threads = True
print("listening on", server.server_address[1], flush=True)
server.serve_forever()
