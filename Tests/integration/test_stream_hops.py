"""Streams that get through every hop and every deploy: no-transform, the first
comment at open (and its padding), retry hints, streams ended at event
boundaries spread over the shutdown grace or after max_stream_duration, and
the deferred-heartbeat counter. Real proxy, real upstream, raw-socket clients."""
from __future__ import annotations

import re
import selectors
import signal
import socket
import time

import pytest

from conftest import MODE
from harness import client as http
from harness import sse
from harness import upstream as up
from harness.ops import scrape, wait_admin, wait_until
from harness.proxy import Proxy, base_config, free_port
from harness.streams import open_stream

pytestmark = pytest.mark.skipif(MODE == "direct", reason="sidecar features")

HEAD = up.send(up.head_bytes(200, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]))
RETRY = re.compile(rb"^retry: (\d+)\n\n")


def _read_until(conn, head, predicate, timeout):
    seen = bytearray()

    def on_piece(t, data):
        seen.extend(data)
        return predicate(bytes(seen))

    return conn.read_body(head, timeout=timeout, timeout_ok=True, on_piece=on_piece)


@pytest.mark.parametrize("upstream_cc,expected", [
    (None, "no-cache, no-transform"),
    ("public, max-age=60", "no-cache, no-transform"),
    ("no-store", "no-cache, no-store, no-transform"),
])
def test_no_transform_on_every_event_stream(stack, upstream_cc, expected):
    s = stack()
    headers = [("Cache-Control", upstream_cc)] if upstream_cc else []
    s.upstream.route("/s", up.event_stream([(0, b"data: a\n\n")], "chunked", headers))
    conn, head = open_stream(s.addr, "/s")
    try:
        assert head.get_all("cache-control") == [expected], head.raw
        assert head.get("x-accel-buffering") == "no"
    finally:
        conn.close()


def test_first_comment_at_open_when_the_upstream_sends_only_its_head(stack):
    s = stack(heartbeat={"interval": "10s", "on_open": True})
    s.upstream.route("/s", [HEAD, up.hang(10)])
    t0 = time.monotonic()
    conn, head = open_stream(s.addr, "/s")
    try:
        assert head.status == 200
        body = _read_until(conn, head, lambda d: d.endswith(b"\n\n"), timeout=2)
        first = body.pieces[0][0] - t0
        assert body.data == b":heartbeat\n\n", body.data
        assert first < 0.1, f"first comment {first:.3f} s after connect, the interval is 10 s"
    finally:
        conn.close()


def test_first_comment_padded_and_a_later_bom_dropped(stack):
    s = stack(heartbeat={"interval": "10s", "on_open": True, "padding": "2KiB"})
    s.upstream.route("/s", [HEAD, up.sleep(0.3), up.send(up.chunk(b"\xef\xbb\xbfdata: x\n\n")), up.hang(10)])
    conn, head = open_stream(s.addr, "/s")
    try:
        body = _read_until(conn, head, lambda d: d.endswith(b"data: x\n\n"), timeout=3)
    finally:
        conn.close()
    first, rest = body.data[:2048], body.data[2048:]
    assert first.startswith(b":heartbeat ") and first.endswith(b" \n\n") and len(first) == 2048, first[:40]
    assert rest == b"data: x\n\n", rest
    events = sse.parse(body.data).events
    assert [(e.type, e.data) for e in events] == [("message", "x")], events


def test_on_open_false_keeps_the_stream_silent_until_the_interval(stack):
    s = stack(heartbeat={"interval": "600ms", "on_open": False})
    s.upstream.route("/s", [HEAD, up.hang(10)])
    t0 = time.monotonic()
    conn, head = open_stream(s.addr, "/s")
    try:
        body = _read_until(conn, head, lambda d: d.endswith(b"\n\n"), timeout=3)
        assert body.data == b":heartbeat\n\n"
        assert body.pieces[0][0] - t0 >= 0.5, "nothing before the interval"
    finally:
        conn.close()


def test_retry_hints_spread_over_the_jitter_and_never_override_the_upstream(stack):
    s = stack(retry={"base": "2s", "jitter": "2s"}, heartbeat={"interval": "10s", "on_open": False})
    s.upstream.route("/s", [HEAD, up.hang(10)])
    # The upstream's retry comes with its head (in one write): the proxy sees it before deciding.
    own_head = up.head_bytes(200, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")])
    s.upstream.route("/own", [up.send(own_head + up.chunk(b"retry: 500\n\ndata: x\n\n")), up.hang(10)])
    values = []
    for _ in range(500):
        conn, head = open_stream(s.addr, "/s")
        try:
            body = _read_until(conn, head, lambda d: RETRY.match(d) is not None, timeout=3)
        finally:
            conn.close()
        m = RETRY.match(body.data)
        assert m, body.data
        values.append(int(m.group(1)))
    assert all(2000 <= v <= 4000 for v in values), sorted(values)[:5] + sorted(values)[-5:]
    buckets = {v // 200 for v in values}
    assert len(buckets) >= 9, f"retry values not spread over [2000, 4000]: buckets {sorted(buckets)}"
    assert max(values) - min(values) >= 1500, (min(values), max(values))
    conn, head = open_stream(s.addr, "/own")
    try:
        body = _read_until(conn, head, lambda d: d.endswith(b"data: x\n\n"), timeout=3)
        assert body.data == b"retry: 500\n\ndata: x\n\n", "the upstream's own retry is not overridden"
    finally:
        conn.close()


class StreamSet:
    """Many open event streams read by one selector loop: arrival of each byte
    chunk, and when each stream ended (EOF)."""

    def __init__(self, addr, path, n):
        self.socks, self.data, self.ended = [], {}, {}
        self.sel = selectors.DefaultSelector()
        for _ in range(n):
            s = socket.create_connection(addr, timeout=5)
            s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
            s.setblocking(False)
            self.socks.append(s)
            self.data[s] = bytearray()
            self.sel.register(s, selectors.EVENT_READ)

    def pump(self, until: float):
        while time.monotonic() < until and len(self.ended) < len(self.socks):
            for key, _ in self.sel.select(timeout=0.05):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    self.data[s].extend(chunk)
                else:
                    self.ended[s] = time.monotonic()
                    self.sel.unregister(s)

    def body(self, s) -> tuple[bytes, bool]:
        """De-chunked body and whether it ended with the last chunk."""
        raw = bytes(self.data[s])
        _, _, rest = raw.partition(b"\r\n\r\n")
        out, complete = bytearray(), False
        while rest:
            line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                break
            size = int(line.split(b";")[0], 16)
            if size == 0:
                complete = True
                break
            out += rest[:size]
            rest = rest[size + 2:]
        return bytes(out), complete

    def close(self):
        for s in self.socks:
            s.close()


def test_shutdown_spreads_stream_ends_over_the_grace_at_event_boundaries(upstream, tmp_path):
    n, grace = 200, 5.0
    # An event every 50 ms, each in its own write.
    pieces = [(0.05, b"data: tick %d\n\n" % i) for i in range(800)]
    upstream.route("/ticks", up.event_stream(pieces, "chunked", end="hang"))
    upstream.route("/stall", [HEAD, up.send(up.chunk(b"data: never fini")), up.hang(30)])
    cfg = base_config(upstream.config_addr, shutdown={"grace": "5s"}, heartbeat={"interval": "10s", "on_open": False},
                      log={"level": "info", "access": True}, timeouts={"connect": "5s", "response": "5s"})
    p = Proxy(cfg, str(tmp_path), log_level=None)
    streams = stalled = None
    try:
        streams = StreamSet(p.addr, "/ticks", n)
        stalled = StreamSet(p.addr, "/stall", 1)
        # Every stream flowing (the test upstream accepts 200 connections in a while).
        ready_by = time.monotonic() + 15
        while time.monotonic() < ready_by and not all(b"data: tick" in d for d in streams.data.values()):
            streams.pump(time.monotonic() + 0.2)
        assert all(b"data: tick" in d for d in streams.data.values()), "not every stream started"
        stalled.pump(time.monotonic() + 0.1)
        t0 = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        deadline = t0 + grace + 4
        while time.monotonic() < deadline and (len(streams.ended) < n or not stalled.ended):
            streams.pump(time.monotonic() + 0.2)
            stalled.pump(time.monotonic() + 0.01)
        code = p.proc.wait(grace + 4)
        assert code == 0, f"exit status {code}:\n{p.log_text()[-2000:]}"
        assert len(streams.ended) == n, f"{n - len(streams.ended)} streams still open"
        ends = sorted(t - t0 for t in streams.ended.values())
        assert ends[0] >= -0.05 and ends[-1] <= grace + 0.5, (ends[0], ends[-1])
        buckets = {}
        for e in ends:
            buckets[int(e / 0.1)] = buckets.get(int(e / 0.1), 0) + 1
        assert max(buckets.values()) <= n // 4, f"ends bunched: {sorted(buckets.items())[:10]}"
        assert ends[-1] - ends[0] >= 3.0, f"ends span only {ends[-1] - ends[0]:.2f} s of a {grace} s grace"
        for s in streams.socks:
            body, complete = streams.body(s)
            assert complete, f"no clean end of body: {bytes(streams.data[s])[:300]!r}"
            assert body.endswith(b"\n\n"), f"ended mid-event: {body[-60:]!r}"
            got = [e.data for e in sse.parse(body).events]
            assert got == [f"tick {i}" for i in range(len(got))], got[:5]
        # The stream stalled mid-event is cut when the grace is over.
        (stall_end,) = stalled.ended.values()
        assert grace - 0.3 <= stall_end - t0 <= grace + 1.0, stall_end - t0
        assert wait_until(lambda: p.log_text().count("end=shutdown") == n + 1, 3), p.log_text().count("end=shutdown")
    finally:
        for group in (streams, stalled):
            if group:
                group.close()
        p.stop()


def test_max_stream_duration_ends_streams_at_event_boundaries(stack):
    s = stack(max_stream_duration={"base": "2s", "jitter": "1s"}, heartbeat={"interval": "10s", "on_open": False},
              log={"level": "info", "access": True})
    pieces = [(0.1, b"data: %d\n" % i + b"data: second line\n\n") for i in range(120)]
    s.upstream.route("/s", up.event_stream(pieces, "chunked", end="hang"))
    streams = StreamSet(s.addr, "/s", 12)
    t0 = time.monotonic()
    try:
        streams.pump(t0 + 9)
        assert len(streams.ended) == 12, f"{12 - len(streams.ended)} streams not ended by max_stream_duration"
        for sock, t in streams.ended.items():
            # 2 s + up to 1 s of jitter, then the next event boundary (generous: the machine is shared)
            assert 1.9 <= t - t0 <= 5.0, f"ended after {t - t0:.2f} s"
            body, complete = streams.body(sock)
            assert complete and body.endswith(b"second line\n\n"), body[-60:]
        # The access line is written as the stream ends; the client may see the end first.
        assert wait_until(lambda: s.proxy.log_text().count("end=max_duration") == 12, 3), \
            s.proxy.log_text().count("end=max_duration")
    finally:
        streams.close()


def test_deferred_heartbeats_are_counted_for_a_stream_paused_mid_line(stack):
    port = free_port()
    s = stack(admin={"listen": f"127.0.0.1:{port}"}, heartbeat={"interval": "200ms", "on_open": False})
    admin = ("127.0.0.1", port)
    s.upstream.route("/mid", [HEAD, up.send(up.chunk(b"data: half")), up.hang(10)])
    s.upstream.route("/edge", [HEAD, up.send(up.chunk(b"data: whole\n\n")), up.hang(10)])
    wait_admin(s.proxy)
    mid, mid_head = open_stream(s.addr, "/mid")
    try:
        time.sleep(1.0)
        m = scrape(admin)
        deferred = m.get("sse_keepalive_heartbeats_deferred_total", route="default")
        assert deferred and deferred >= 1, m.text
    finally:
        mid.close()
    before = scrape(admin).get("sse_keepalive_heartbeats_deferred_total", route="default") or 0
    edge, edge_head = open_stream(s.addr, "/edge")
    try:
        time.sleep(1.0)
        after = scrape(admin)
        assert after.get("sse_keepalive_heartbeats_deferred_total", route="default") == before, after.text
        assert after.get("sse_keepalive_heartbeats_total", route="default") >= 3
    finally:
        edge.close()
    assert "deferred: the stream stands mid-line" in s.proxy.log_text()
