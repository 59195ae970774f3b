#!/usr/bin/env python3
"""A legacy Server-Sent Events backend, the kind sse-keepalive fronts.

Like the notification backends it imitates (before their "add a heartbeat"
fixes), it:
  - streams events with long quiet gaps and no heartbeats, so proxies, load
    balancers and browsers time the stream out;
  - authenticates with `Authorization: Bearer <t>` or `?token=<t>`
    (LEGACY_AUTH=header: only the header, as once sse-keepalive's token
    route turns the browser's `?token=` into that header);
  - prints a noisy traceback whenever a client goes away (BrokenPipeError /
    ConnectionResetError), the log spam users complain about.

Endpoints:
  GET /                           small JSON status document
  GET /api/notifications/stream   event: notification, every LEGACY_INTERVAL s
  GET /api/messages/stream        unnamed events (data: only; EventSource.onmessage)
  GET /events                     event: tick, every LEGACY_INTERVAL s
  GET /page                       the browser demo page (examples/page/), no auth
  GET /debug/streams              JSON: the last stream requests, how each one
                                  authenticated (header / query, never the token
                                  itself) and how many events it was sent

Environment: LEGACY_TOKEN (default demo-token), LEGACY_INTERVAL (seconds
between events, default 40), LEGACY_AUTH (any | header, default any).
Standard library only.

    python3 examples/legacy_app.py --port 3000
    sse-keepalive --config examples/sse-keepalive.yaml
    curl -N 'http://127.0.0.1:8080/api/notifications/stream?token=demo-token'
"""
import argparse
import itertools
import json
import os
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKEN = os.environ.get("LEGACY_TOKEN", "demo-token")
INTERVAL = float(os.environ.get("LEGACY_INTERVAL", "40"))
AUTH_MODE = os.environ.get("LEGACY_AUTH", "any")  # any | header
STARTED = time.time()
PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
PAGE_FILES = {  # URL path -> (file, content type)
    "/page": ("index.html", "text/html; charset=utf-8"),
    "/page/": ("index.html", "text/html; charset=utf-8"),
    "/page/index.html": ("index.html", "text/html; charset=utf-8"),
    "/page/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/page/style.css": ("style.css", "text/css; charset=utf-8"),
}
STREAMS = {  # path -> event name (None: unnamed, dispatched to onmessage)
    "/api/notifications/stream": "notification",
    "/api/messages/stream": None,
    "/events": "tick",
}

# What the app saw on its event streams, for /debug/streams (bounded).
SEEN_LOCK = threading.Lock()
SEEN: list = []
SEEN_MAX = 200
STREAM_IDS = itertools.count(1)


class LegacyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LegacyApp/0.9"

    def authorization(self, query) -> str | None:
        """How the request authenticated: "header", "query", or None."""
        header = self.headers.get("Authorization", "")
        if header == f"Bearer {TOKEN}":
            return "header"
        if AUTH_MODE != "header" and query.get("token", [None])[0] == TOKEN:
            return "query"
        return None

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
                                        "streams": list(STREAMS), "page": "/page"})
        if url.path in PAGE_FILES:
            return self.send_page_file(*PAGE_FILES[url.path])
        if url.path == "/debug/streams":
            with SEEN_LOCK:
                return self.send_json(200, {"auth_mode": AUTH_MODE, "streams": [dict(r) for r in SEEN]})
        if url.path in STREAMS:
            record = {"id": next(STREAM_IDS), "path": url.path, "query_keys": sorted(query),
                      "authorization_header": "Authorization" in self.headers, "auth": None,
                      "status": 401, "events_sent": 0, "open": False}
            record["auth"] = self.authorization(query)
            with SEEN_LOCK:
                SEEN.append(record)
                del SEEN[:-SEEN_MAX]
            if record["auth"] is None:
                hint = " (send it in the Authorization header)" if AUTH_MODE == "header" else ""
                return self.send_json(401, {"error": "unauthorized" + hint})
            record["status"] = 200
            return self.stream(STREAMS[url.path], record)
        return self.send_json(404, {"error": "not found", "path": url.path})

    def send_page_file(self, name, content_type):
        try:
            with open(os.path.join(PAGE_DIR, name), "rb") as f:
                body = f.read()
        except OSError:
            return self.send_json(404, {"error": "page file missing", "file": name})
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def stream(self, kind, record):
        # Close-delimited, like many hand-written SSE endpoints.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        n = 0
        record["open"] = True
        try:
            self.wfile.write(b"retry: 3000\n\n")
            self.wfile.flush()
            while True:
                time.sleep(INTERVAL)  # the long quiet gap: no heartbeat here
                n += 1
                data = json.dumps({"n": n, "kind": kind or "message", "at": time.strftime("%H:%M:%S")})
                event = f"event: {kind}\n" if kind else ""
                self.wfile.write(f"id: {n}\n{event}data: {data}\n\n".encode())
                self.wfile.flush()
                record["events_sent"] = n
        except (BrokenPipeError, ConnectionResetError):
            # What the seeds' backends did: dump the whole traceback.
            print(f"ERROR stream {kind or 'message'} client {self.client_address} disconnected:", file=sys.stderr)
            traceback.print_exc()
        finally:
            record["open"] = False

    def log_message(self, fmt, *args):
        sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    if AUTH_MODE not in ("any", "header"):
        parser.error(f"LEGACY_AUTH must be any or header, not {AUTH_MODE!r}")
    server = ThreadingHTTPServer((args.host, args.port), LegacyHandler)
    server.daemon_threads = True
    print(f"legacy app on http://{args.host}:{args.port} (token {TOKEN!r}, an event every {INTERVAL:g}s, "
          f"auth {AUTH_MODE})", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
