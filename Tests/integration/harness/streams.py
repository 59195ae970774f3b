"""Helpers for event-stream tests: open a stream, read it, locate heartbeats
in time."""
from __future__ import annotations

import bisect

from . import client as http
from . import sse

SSE_ACCEPT = ("Accept", "text/event-stream")


def open_stream(addr, target: str, headers=(), version: str = "HTTP/1.1", timeout: float = 10.0):
    """Send a GET for an event stream; return (connection, response head)."""
    conn = http.connect(addr, timeout=timeout)
    conn.send(http.build_request("GET", target, [SSE_ACCEPT] + list(headers), version=version))
    return conn, conn.read_head(timeout=timeout)


def fetch_stream(addr, target: str, timeout: float = 10.0, **kwargs):
    """Open a stream and read it to its end (bounded by `timeout`)."""
    conn, head = open_stream(addr, target, timeout=timeout, **kwargs)
    try:
        return head, conn.read_body(head, timeout=timeout, timeout_ok=True)
    finally:
        conn.close()


def watch_stream(addr, target: str, duration: float, **kwargs):
    """Open a stream and read whatever arrives for `duration` seconds."""
    conn, head = open_stream(addr, target, **kwargs)
    try:
        return head, http.read_stream(conn, head, duration)
    finally:
        conn.close()


def arrival_time(body: http.Body, client_offset: int) -> float:
    """When the piece holding payload byte `client_offset` arrived."""
    starts, pos = [], 0
    for _, data in body.pieces:
        starts.append(pos)
        pos += len(data)
    k = bisect.bisect_right(starts, client_offset) - 1
    return body.pieces[max(k, 0)][0]


def heartbeat_times(body: http.Body, alignment: sse.Alignment) -> list[float]:
    return [arrival_time(body, ins.client_offset) for ins in alignment.insertions]


def write_times(body: http.Body) -> list[float]:
    """Arrival times of the pieces (each proxy write shows up as one or more)."""
    return [t for t, _ in body.pieces]
