"""docs/behaviour.md, "Event streams", "Heartbeats", "Headers": event streams are forwarded byte for byte, with heartbeats
only at safe points of idle streams, and with a no-buffering header policy.

Heartbeat interval I is a few hundred ms; idle gaps that must produce a
heartbeat are >= 1.6 I, gaps that must not are <= I/3."""
import base64
import gzip
import json
import os
import threading
import time

import pytest

from conftest import MODE
from harness import client as http
from harness import sse
from harness import upstream as up
from harness.proxy import Quoted
from harness.streams import (arrival_time, fetch_stream, heartbeat_times, open_stream,
                             watch_stream, write_times)
from harness.timing import gaps, median

I = 0.3  # the default interval of base_config (300ms)
HB = b":heartbeat\n\n"
HB_LINE = b":heartbeat\n"
proxy_only = pytest.mark.proxy_only

with open(os.path.join(os.path.dirname(__file__), "data", "wpt-eventsource-corpus.json")) as f:
    CORPUS = json.load(f)


def check_stream(client: bytes, upstream: bytes, comment="heartbeat", blank_line=True) -> sse.Alignment:
    """The three views of docs/behaviour.md ("Event streams", "Heartbeats") on one stream: strict alignment,
    heartbeats stripped == upstream bytes, and the same parsed events."""
    a = sse.align(client, upstream, comment, blank_line)
    assert a.ok, sse.describe(client, upstream, a)
    expected = upstream[3:] if a.bom_dropped else upstream
    assert sse.strip_heartbeats(client, comment, blank_line) == expected
    assert sse.parse(client).as_tuple() == sse.parse(upstream).as_tuple()
    return a


def corpus_pieces(payload: bytes, gap: float):
    """Split a payload with idle gaps: before the first byte (2 gaps long),
    after the first CR, in the middle, and after the first LF."""
    cuts = {len(payload) // 2}
    for marker in (b"\r", b"\n"):
        k = payload.find(marker)
        if k >= 0:
            cuts.add(k + 1)
    cuts = sorted(c for c in cuts if 0 < c < len(payload))
    pieces, prev = [], 0
    for c in cuts:
        pieces.append((gap if prev else 2 * gap, payload[prev:c]))
        prev = c
    pieces.append((gap, payload[prev:]))
    return pieces


@pytest.mark.timeout(20)
@pytest.mark.parametrize("index", range(len(CORPUS)), ids=[e["name"] for e in CORPUS])
def test_corpus_stream_forwarded_exactly_with_idle_gaps(stack, index):
    entry = CORPUS[index]
    payload = base64.b64decode(entry["body_b64"])
    content_type = entry.get("content_type", "text/event-stream")
    framing = ["chunked", "close", "length"][index % 3]
    s = stack(heartbeat={"interval": "200ms"})
    s.upstream.route("/corpus", up.event_stream(corpus_pieces(payload, 0.33), framing,
                                                content_type=content_type))
    head, body = fetch_stream(s.addr, "/corpus")
    assert head.status == 200 and head.get("content-type") == content_type
    assert body.complete, f"stream did not end properly ({framing} upstream)"
    a = check_stream(body.data, payload)
    if MODE != "direct":
        assert 0 in sse.offsets(a), "no heartbeat during the idle time before the first byte"


@proxy_only
@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_heartbeat_at_stream_start_when_upstream_sends_only_the_head(stack, framing):
    s = stack()
    s.upstream.route("/idle", up.event_stream([], framing, end="hang"))
    conn, head = open_stream(s.addr, "/idle")
    try:
        body = http.read_stream(conn, head, 4.3 * I)
    finally:
        conn.close()
    assert head.status == 200
    n = body.data.count(HB)
    assert body.data == HB * n and 2 <= n <= 5, body.data
    first = arrival_time(body, 0) - head.time
    assert 0.5 * I <= first <= 2.5 * I, f"first heartbeat after {first:.3f}s, interval {I}s"


@proxy_only
def test_in_event_heartbeat_is_a_single_comment_line(stack):
    s = stack()
    payload_pieces = [(0, b"data: x\n"), (2.5 * I, b"\n"), (0.05, b"data: y\n\n")]
    s.upstream.route("/s", up.event_stream(payload_pieces))
    head, body = fetch_stream(s.addr, "/s")
    upstream = b"data: x\n\ndata: y\n\n"
    a = check_stream(body.data, upstream)
    assert 8 in sse.offsets(a) and all(ins.data == HB_LINE for ins in a.insertions if ins.offset == 8)
    assert [e.data for e in sse.parse(body.data).events] == ["x", "y"]


@proxy_only
def test_no_heartbeat_mid_line_and_partial_line_forwarded_at_once(stack):
    s = stack()
    pieces = [(0, b"data: x"), (4 * I, b"yz\n\n"), (2.5 * I, b"data: end\n\n")]
    s.upstream.route("/s", up.event_stream(pieces))
    conn, head = open_stream(s.addr, "/s")
    try:
        t0 = time.monotonic()
        early = http.read_stream(conn, head, 2 * I, until=lambda got: got == b"data: x")
        assert early.data == b"data: x", "partial line held back (or something added after it)"
        assert arrival_time(early, 0) - t0 < 2 * I
        rest = conn.read_body(head, timeout=10)
    finally:
        conn.close()
    client = early.data + rest.data
    a = check_stream(client, b"data: xyz\n\ndata: end\n\n")
    assert 7 not in sse.offsets(a)
    assert 11 in sse.offsets(a), "no heartbeat once the line and event had ended"


@proxy_only
def test_no_heartbeat_right_after_cr(stack):
    s = stack()
    pieces = [(0, b"data: x\r"), (4 * I, b"\n"), (2.5 * I, b"\r\n")]
    s.upstream.route("/s", up.event_stream(pieces))
    head, body = fetch_stream(s.addr, "/s")
    a = check_stream(body.data, b"data: x\r\n\r\n")
    assert 8 not in sse.offsets(a), body.data
    assert 9 in sse.offsets(a), "expected an in-event heartbeat once the CRLF was complete"
    assert [e.data for e in sse.parse(body.data).events] == ["x"]


@proxy_only
def test_custom_comment(stack):
    s = stack(heartbeat={"interval": "300ms", "comment": "ka"})
    s.upstream.route("/s", up.event_stream([(1.5 * I, b"data: a\n"), (1.5 * I, b"\n")]))
    head, body = fetch_stream(s.addr, "/s")
    a = check_stream(body.data, b"data: a\n\n", comment="ka")
    forms = {(ins.offset, ins.data) for ins in a.insertions}
    assert forms == {(0, b":ka\n\n"), (8, b":ka\n")}, body.data


@proxy_only
def test_blank_line_false_uses_single_line_everywhere(stack):
    s = stack(heartbeat={"interval": "300ms", "blank_line": False})
    s.upstream.route("/s", up.event_stream([(1.5 * I, b"id: 1\ndata: a\n\n"), (1.5 * I, b"data: b\n"),
                                            (1.5 * I, b"\n")]))
    head, body = fetch_stream(s.addr, "/s")
    a = check_stream(body.data, b"id: 1\ndata: a\n\ndata: b\n\n", blank_line=False)
    assert all(ins.data == HB_LINE for ins in a.insertions), body.data
    assert {0, 15, 23} <= set(sse.offsets(a))


@proxy_only
def test_heartbeat_off_routes_get_none(stack):
    s = stack(routes=[{"path": "/plain-off", "heartbeat": "off"},
                      {"path": "/quoted-off", "heartbeat": Quoted("off")}])
    for path in ("/plain-off", "/quoted-off"):
        s.upstream.route(path, up.event_stream([(4 * I, b"data: late\n\n")]))
    results = {}

    def fetch(path):
        results[path] = fetch_stream(s.addr, path)

    threads = [threading.Thread(target=fetch, args=(p,)) for p in ("/plain-off", "/quoted-off")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    for path in ("/plain-off", "/quoted-off"):
        head, body = results[path]
        assert body.data == b"data: late\n\n", (path, body.data)


@proxy_only
@pytest.mark.timeout(20)
def test_busy_stream_gets_no_heartbeat(stack):
    s = stack(heartbeat={"interval": "400ms"})
    events = [(0.1, f"data: {i}\n\n".encode()) for i in range(24)]  # one per I/4, for 2.4 s
    s.upstream.route("/busy", up.event_stream(events))
    head, body = fetch_stream(s.addr, "/busy")
    assert body.data == b"".join(e for _, e in events)


@proxy_only
def test_idle_clock_restarts_after_every_write(stack):
    s = stack()
    # Writes every 0.6 I: a ticker that does not restart would fire between them.
    events = [(0 if i == 0 else 0.6 * I, f"data: {i}\n\n".encode()) for i in range(5)]
    s.upstream.route("/s", up.event_stream(events + [(3.2 * I, b"data: last\n\n")]))
    head, body = fetch_stream(s.addr, "/s")
    upstream = b"".join(e for _, e in events) + b"data: last\n\n"
    a = check_stream(body.data, upstream)
    last_event_offset = len(upstream) - len(b"data: last\n\n")
    assert set(sse.offsets(a)) == {last_event_offset}, sse.describe(body.data, upstream, a)
    times = write_times(body)
    for t_hb in heartbeat_times(body, a):
        previous = max(t for t in times if t < t_hb)
        assert t_hb - previous >= 0.75 * I, f"heartbeat {t_hb - previous:.3f}s after the previous write"


@proxy_only
def test_bom_dropped_only_after_a_leading_heartbeat(stack):
    # /early-bom gets a long interval: its first bytes must win the race even on a loaded machine.
    s = stack(routes=[{"path": "/early-bom", "heartbeat": "5s"}])
    late = b"\xef\xbb\xbfdata: 1\n\n\xef\xbb\xbfdata: 2\n\n"
    s.upstream.route("/late-bom", up.event_stream([(1.5 * I, late)]))
    s.upstream.route("/early-bom", up.event_stream([(0, late), (2 * I, b"data: 3\n\n")]))
    head, body = fetch_stream(s.addr, "/late-bom")
    a = check_stream(body.data, late)
    after_heartbeats = body.data[a.insertions[-1].client_offset + len(HB):] if a.insertions else body.data
    assert a.bom_dropped and after_heartbeats.startswith(b"data: 1\n\n\xef\xbb\xbfdata: 2"), body.data
    head, body = fetch_stream(s.addr, "/early-bom")
    a = check_stream(body.data, late + b"data: 3\n\n")
    assert not a.bom_dropped and body.data.startswith(late), body.data


@proxy_only
@pytest.mark.timeout(20)
def test_two_routes_keep_their_own_cadence_concurrently(stack):
    fast, slow = 0.25, 0.75
    s = stack(routes=[{"path": "/fast", "heartbeat": "250ms"}, {"path": "/slow", "heartbeat": "750ms"}])
    for path in ("/fast", "/slow"):
        s.upstream.route(path, up.event_stream([], end="hang"))
    results = {}

    def watch(path):
        results[path] = watch_stream(s.addr, path, 2.4)

    threads = [threading.Thread(target=watch, args=(p,)) for p in ("/fast", "/slow")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for path, interval, lo, hi in (("/fast", fast, 5, 11), ("/slow", slow, 2, 4)):
        head, body = results[path]
        n = body.data.count(HB)
        assert body.data == HB * n and lo <= n <= hi, (path, n, body.data)
        a = sse.align(body.data, b"")
        g = median(gaps(heartbeat_times(body, a)))
        assert 0.6 * interval <= g <= 1.8 * interval, (path, g)


@proxy_only
@pytest.mark.parametrize("upstream_cache_control", [None, "no-cache, no-store, must-revalidate"])
def test_event_stream_response_header_policy_http11(stack, upstream_cache_control):
    s = stack()
    headers = [("Connection", "keep-alive, X-Hop"), ("Keep-Alive", "timeout=30, max=100"),
               ("X-Hop", "1"), ("Proxy-Connection", "keep-alive"), ("X-Accel-Buffering", "yes"),
               ("Trailer", "X-Sum"), ("Upgrade", "h2c"), ("X-Custom", "kept")]
    if upstream_cache_control:
        headers.append(("Cache-Control", upstream_cache_control))
    payload = b"data: a\n\n"
    s.upstream.route("/s", up.event_stream([(0, payload[:4]), (0.1, payload[4:])], "length", headers))
    head, body = fetch_stream(s.addr, "/s")
    assert head.status == 200
    for name in ("content-length", "x-hop", "proxy-connection", "trailer", "upgrade"):
        assert not head.has(name), (name, head.raw)
    assert "timeout=30, max=100" not in head.get_all("keep-alive"), head.raw
    assert "x-hop" not in head.tokens("connection"), head.raw
    assert head.get_all("x-accel-buffering") == ["no"], head.raw
    assert len(head.get_all("cache-control")) == 1 and "no-cache" in head.tokens("cache-control"), head.raw
    assert "no-transform" in head.tokens("cache-control"), head.raw
    if upstream_cache_control is None:
        assert head.get("cache-control") == "no-cache, no-transform"
    else:  # the upstream's no-store is kept, must-revalidate is not ours to keep
        assert head.get("cache-control") == "no-cache, no-store, no-transform"
    assert head.get_all("x-custom") == ["kept"]
    assert head.framing == "chunked", head.raw
    assert body.complete and body.data == payload


@proxy_only
def test_event_stream_to_http10_client_is_close_delimited(stack):
    s = stack()
    s.upstream.route("/s", up.event_stream([(0, b"data: a\n\n"), (2 * I, b"data: b\n\n")], "chunked",
                                           [("Content-Length", "999")][:0]))
    conn, head = open_stream(s.addr, "/s", version="HTTP/1.0")
    try:
        assert head.status == 200 and head.framing == "close", head.raw
        assert not head.has("content-length") and not head.has("transfer-encoding"), head.raw
        assert head.get("cache-control") == "no-cache, no-transform" and head.get("x-accel-buffering") == "no"
        body = conn.read_body(head, timeout=10)
    finally:
        conn.close()
    check_stream(body.data, b"data: a\n\ndata: b\n\n")


@proxy_only
@pytest.mark.parametrize("accept,dropped", [
    ("text/event-stream", True),
    ("application/json, text/event-stream;q=0.5", True),
    ("application/json", False),
])
def test_accept_encoding_dropped_only_for_event_stream_requests(stack, accept, dropped):
    s = stack()
    resp = http.request(s.addr, "GET", "/ae", [("Accept", accept), ("Accept-Encoding", "gzip, br")])
    assert resp.status == 200
    req = s.upstream.requests_for("/ae")[0]
    assert req.get_all("accept-encoding") == ([] if dropped else ["gzip, br"]), req.raw_head
    assert req.get("accept") == accept


@proxy_only
def test_compressed_event_stream_untouched_and_warned_once(stack):
    s = stack(routes=[{"path": "/gz", "heartbeat": "300ms"}])
    compressed = gzip.compress(b"".join(f"data: {i}\n\n".encode() for i in range(50)))
    pieces = [(0, compressed[:10]), (1.6 * I, compressed[10:])]
    s.upstream.route("/gz", up.event_stream(pieces, headers=[("Content-Encoding", "gzip")]))
    # Four fresh connections, so that with several workers more than one sees it.
    for _ in range(4):
        head, body = fetch_stream(s.addr, "/gz/stream", headers=[("Accept-Encoding", "gzip")])
        assert head.get("content-encoding") == "gzip"
        assert body.complete and body.data == compressed, "compressed stream altered"
    time.sleep(0.2)
    warnings = s.proxy.lines_at("warning")
    assert len(warnings) == 1, [l.text for l in s.proxy.lines_at_or_above("warning")]
    assert "/gz" in warnings[0].text
    assert not s.proxy.lines_at_or_above("error"), [l.text for l in s.proxy.lines_at_or_above("error")]


@proxy_only
def test_no_heartbeat_before_the_upstream_head(stack):
    s = stack()
    steps = [up.sleep(2.5 * I)] + up.event_stream([(0, b"data: a\n\n")], headers=[("X-From", "upstream")],
                                                  end="hang")
    s.upstream.route("/slowhead", steps)
    t0 = time.monotonic()
    conn, head = open_stream(s.addr, "/slowhead")
    try:
        assert head.get("x-from") == "upstream", head.raw
        assert head.time - t0 >= 2 * I, "a head was sent before the upstream's"
        body = http.read_stream(conn, head, 1.5 * I, until=lambda got: got.startswith(b"data: a\n\n"))
    finally:
        conn.close()
    assert body.data.startswith(b"data: a\n\n"), body.data
