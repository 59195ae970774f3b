"""A synchronous legacy SSE app: one process, one thread, one request at a time.

This is what a Flask/Django/PHP app with a single worker looks like to the
sidecar: while it streams to one connection, the next one waits in the
listen backlog. Run it as a real process:

    python3 legacy_app.py --port P --state FILE [--gate FILE]

`GET /events` streams `retry: 1000` (the preamble), then `n` events
(`event_bytes(k)`, k = 1..n) `interval` seconds apart, then ends the
response (close-delimited, HTTP/1.0 style). Query parameters: `n` (default
5), `interval` seconds (default 0.05), `end=hang` keeps the connection open
after the last event until the peer closes (at most 30 s). With `--gate`,
the first event waits until the gate file exists (at most 30 s), so a test
can connect all its clients first.

The app cannot answer questions while it streams (that is the point), so it
reports through `--state`: a JSON file rewritten (atomically) on every
accept and close: `accepted`, `closed`, and per connection the path, the
request headers that matter to sharing, the events sent and how it ended
(`complete`, `peer_closed`).
"""
from __future__ import annotations

import argparse
import json
import os
import select
import socket
import time
from urllib.parse import parse_qs, urlsplit

PREAMBLE = b"retry: 1000\n\n"
MAX_WAIT = 30.0


def event_bytes(k: int) -> bytes:
    """Event k as the app writes it: a type, two data lines, no id."""
    return b"event: tick\ndata: event %d\ndata: {\"n\": %d, \"pad\": \"%s\"}\n\n" % (k, k, b"x" * (k % 7))


class State:
    def __init__(self, path: str):
        self.path = path
        self.data = {"accepted": 0, "closed": 0, "connections": []}
        self.save()

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f)
        os.replace(tmp, self.path)


def read_state(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def peer_closed(sock: socket.socket, wait: float) -> bool:
    """Wait up to `wait` s; True if the peer closed (EOF or reset) meanwhile."""
    r, _, _ = select.select([sock], [], [], max(wait, 0))
    if not r:
        return False
    try:
        return sock.recv(4096, socket.MSG_PEEK) == b""
    except OSError:
        return True


def read_head(sock: socket.socket) -> bytes | None:
    buf = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in buf and len(buf) < 65536 and time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.5)
        if r:
            data = sock.recv(65536)
            if not data:
                return None
            buf += data
    return buf if b"\r\n\r\n" in buf else None


def serve_one(sock: socket.socket, record: dict, gate: str | None, state: State):
    head = read_head(sock)
    if head is None:
        record["end"] = "no_request"
        return
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, target, _ = (lines[0].split(" ") + ["", "", ""])[:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    url = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    record.update(method=method, path=url.path, authorization=headers.get("authorization"),
                  last_event_id=headers.get("last-event-id"))
    state.save()
    if url.path != "/events":
        sock.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n")
        record["end"] = "complete"
        return
    n, interval = int(query.get("n", "5")), float(query.get("interval", "0.05"))
    sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n" + PREAMBLE)
    if gate:
        deadline = time.monotonic() + MAX_WAIT
        while not os.path.exists(gate) and time.monotonic() < deadline:
            if peer_closed(sock, 0.02):
                record["end"] = "peer_closed"
                return
    for k in range(1, n + 1):
        if k > 1 and peer_closed(sock, interval):
            record["end"] = "peer_closed"
            return
        try:
            sock.sendall(event_bytes(k))
        except OSError:
            record["end"] = "peer_closed"
            return
        record["events_sent"] = k
    if query.get("end") == "hang":
        if peer_closed(sock, MAX_WAIT):
            record["end"] = "peer_closed"
            return
    record["end"] = "complete"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--gate")
    args = ap.parse_args()
    state = State(args.state)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(1024)
    while True:  # one connection at a time, like a single sync worker
        sock, _ = listener.accept()
        record = {"n": state.data["accepted"] + 1, "events_sent": 0, "end": None}
        state.data["accepted"] += 1
        state.data["connections"].append(record)
        state.save()
        try:
            serve_one(sock, record, args.gate, state)
        except OSError:
            record["end"] = "peer_closed"
        finally:
            sock.close()
            state.data["closed"] += 1
            state.save()


if __name__ == "__main__":
    raise SystemExit(main())
