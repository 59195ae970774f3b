#!/usr/bin/env python3
"""A legacy Server-Sent Events backend, the kind sse-keepalive fronts.

Like the notification backends it imitates (before their "add a heartbeat"
fixes), it:
  - streams events with long quiet gaps and no heartbeats, so proxies, load
    balancers and browsers time the stream out;
  - authenticates with `Authorization: Bearer <t>` or `?token=<t>`;
  - prints a noisy traceback whenever a client goes away (BrokenPipeError /
    ConnectionResetError), the log spam users complain about.

Endpoints:
  GET /                           small JSON status document
  GET /api/notifications/stream   event: notification, every LEGACY_INTERVAL s
  GET /events                     event: tick, every LEGACY_INTERVAL s

Environment: LEGACY_TOKEN (default demo-token), LEGACY_INTERVAL (seconds
between events, default 40). Standard library only.

    python3 examples/legacy_app.py --port 3000
    sse-keepalive --config examples/sse-keepalive.yaml
    curl -N 'http://127.0.0.1:8080/api/notifications/stream?token=demo-token'
"""
import argparse
import json
import os
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKEN = os.environ.get("LEGACY_TOKEN", "demo-token")
INTERVAL = float(os.environ.get("LEGACY_INTERVAL", "40"))
STARTED = time.time()


class LegacyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LegacyApp/0.9"

    def authorized(self, query) -> bool:
        header = self.headers.get("Authorization", "")
        if header == f"Bearer {TOKEN}":
            return True
        return query.get("token", [None])[0] == TOKEN

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/":
            return self.send_json(200, {"app": "legacy", "uptime_s": round(time.time() - STARTED, 1),
                                        "streams": ["/api/notifications/stream", "/events"]})
        if url.path in ("/api/notifications/stream", "/events"):
            if not self.authorized(query):
                return self.send_json(401, {"error": "unauthorized"})
            kind = "notification" if url.path.startswith("/api") else "tick"
            return self.stream(kind)
        return self.send_json(404, {"error": "not found", "path": url.path})

    def stream(self, kind):
        # Close-delimited, like many hand-written SSE endpoints.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        n = 0
        try:
            self.wfile.write(b"retry: 3000\n\n")
            self.wfile.flush()
            while True:
                time.sleep(INTERVAL)  # the long quiet gap: no heartbeat here
                n += 1
                data = json.dumps({"n": n, "kind": kind, "at": time.strftime("%H:%M:%S")})
                self.wfile.write(f"id: {n}\nevent: {kind}\ndata: {data}\n\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # What the seeds' backends did: dump the whole traceback.
            print(f"ERROR stream {kind} client {self.client_address} disconnected:", file=sys.stderr)
            traceback.print_exc()

    def log_message(self, fmt, *args):
        sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), LegacyHandler)
    server.daemon_threads = True
    print(f"legacy app on http://{args.host}:{args.port} (token {TOKEN!r}, an event every {INTERVAL:g}s)",
          file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
