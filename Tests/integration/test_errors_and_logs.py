"""docs/behaviour.md, "Logs" and "Errors": quiet disconnects, readable errors, no crash on bad input."""
import time

import pytest

from harness import client as http
from harness import upstream as up
from harness.proxy import base_config, free_port
from harness.streams import open_stream

pytestmark = pytest.mark.proxy_only


def loud_lines(proxy):
    return [l.text for l in proxy.lines_at_or_above("warning")]


def assert_still_serving(addr):
    resp = http.request(addr, "GET", "/still-alive")
    assert resp.status == 200 and up.decode_echo(resp.body.data)["target"] == "/still-alive"


def test_upstream_unreachable_gives_502_and_error_log(start_proxy):
    dead_port = free_port()  # nothing listens there
    p = start_proxy(base_config(f"127.0.0.1:{dead_port}"))
    resp = http.request(p.addr, "GET", "/anything")
    assert resp.status == 502, resp.head.raw
    assert resp.head.get("content-type", "").startswith("text/plain"), resp.head.raw
    text = resp.body.data.decode("utf-8", "replace")
    assert text.strip() and "\n" not in text.strip(), f"not one line: {text!r}"
    assert "refused" in text.lower(), f"cause not named: {text!r}"
    line = p.wait_for_log(rf"127\.0\.0\.1:{dead_port}", level="error")
    assert line, f"no error line naming the upstream:\n{p.log_text()}"


def test_silent_upstream_gives_504_after_response_timeout(stack):
    s = stack(timeouts={"connect": "1s", "response": "1s"})
    s.upstream.route("/silent", [up.hang(10)])
    t0 = time.monotonic()
    resp = http.request(s.addr, "GET", "/silent", timeout=8)
    elapsed = time.monotonic() - t0
    assert resp.status == 504, resp.head.raw
    assert 0.8 <= elapsed <= 4, f"504 after {elapsed:.2f}s with timeouts.response 1s"
    assert_still_serving(s.addr)


def test_client_reset_mid_stream_is_quiet_and_closes_upstream(stack):
    s = stack()
    beats = [(0.1, b"data: tick\n\n")] * 50
    s.upstream.route("/stream", up.event_stream(beats))
    conn, head = open_stream(s.addr, "/stream")
    assert head.status == 200
    conn.read_body(head, timeout=0.35, timeout_ok=True)
    conn.reset()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not s.upstream.connections[0].closed_by_peer:
        time.sleep(0.05)
    assert s.upstream.connections[0].closed_by_peer, "upstream connection left open after the client reset"
    assert_still_serving(s.addr)
    time.sleep(0.2)
    assert not loud_lines(s.proxy), loud_lines(s.proxy)
    assert s.proxy.lines_at("debug"), "expected debug lines about the disconnect"


def test_upstream_reset_mid_stream_is_quiet(stack):
    s = stack()
    s.upstream.route("/stream", up.event_stream([(0, b"data: a\n\n"), (0.2, b"data: b\n")], end="reset"))
    conn, head = open_stream(s.addr, "/stream")
    try:
        body = conn.read_body(head, timeout=5, timeout_ok=True)
    finally:
        conn.close()
    assert body.data.startswith(b"data: a\n\n")
    assert not body.complete, "a reset upstream must not look like a finished stream"
    assert_still_serving(s.addr)
    time.sleep(0.2)
    assert not loud_lines(s.proxy), loud_lines(s.proxy)
    assert s.proxy.lines_at("debug")


def test_client_gone_during_plain_response_is_quiet(stack):
    s = stack()
    s.upstream.route("/big", up.response(200, [], b"z" * 2_000_000, framing="length"))
    conn = http.connect(s.addr)
    conn.send(http.build_request("GET", "/big"))
    conn.read_head()
    conn.reset()
    time.sleep(0.5)
    assert_still_serving(s.addr)
    assert not loud_lines(s.proxy), loud_lines(s.proxy)


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nNo colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
])
def test_malformed_request_gets_400(stack, raw):
    s = stack()
    conn = http.connect(s.addr)
    try:
        conn.send(raw)
        head = conn.read_head()
        assert head.status == 400, head.raw
    finally:
        conn.close()
    assert_still_serving(s.addr)


def test_huge_header_gets_431(stack):
    s = stack(limits={"max_header_bytes": "4KiB"})
    conn = http.connect(s.addr)
    try:
        conn.send(http.build_request("GET", "/", [("X-Big", "b" * 8000)]))
        head = conn.read_head()
        assert head.status == 431, head.raw
    finally:
        conn.close()
    assert_still_serving(s.addr)
    assert not s.upstream.requests_for("/") or all(r.path == "/still-alive" for r in s.upstream.requests)


def test_too_many_connections_gets_503(stack):
    s = stack(limits={"max_connections": 2})
    s.upstream.route("/events", up.event_stream([], end="hang"))
    streams = [open_stream(s.addr, "/events") for _ in range(2)]
    try:
        assert [head.status for _, head in streams] == [200, 200]
        # Several more connections: whichever worker takes them, the limit is
        # the process's, so every one of them is refused.
        statuses = []
        for _ in range(4):
            conn = http.connect(s.addr)
            try:
                conn.send(http.build_request("GET", "/events"))
                statuses.append(conn.read_head().status)
            finally:
                conn.close()
        assert statuses == [503] * 4, f"with 2 streams open and max_connections 2: {statuses}"
    finally:
        for conn, _ in streams:
            conn.close()
    time.sleep(0.3)
    assert_still_serving(s.addr)


def test_slow_header_client_is_dropped_after_client_header_timeout(stack):
    s = stack(timeouts={"client_header": "1s"})
    conn = http.connect(s.addr)
    try:
        conn.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n")  # never finishes the head
        t0 = time.monotonic()
        rest = conn.read_available(4)
        closed = conn.eof or conn.wait_eof(4)
        elapsed = time.monotonic() - t0
    finally:
        conn.close()
    assert closed, "connection with an unfinished head still open after 8s (client_header 1s)"
    assert elapsed <= 6
    assert rest == b"" or rest.startswith(b"HTTP/1.1 408") or rest.startswith(b"HTTP/1.0 408"), rest
    assert not s.upstream.requests_for("/slow")
    assert_still_serving(s.addr)


def test_access_log_one_line_per_request(stack):
    s = stack(log={"level": "debug", "access": True})
    for i in range(3):
        assert http.request(s.addr, "GET", f"/acc/{i}?q=1").status == 200
    time.sleep(0.3)
    for i in range(3):
        lines = [l.text for l in s.proxy.lines_at_or_above("info") if f"/acc/{i}" in l.text]
        assert len(lines) == 1 and "200" in lines[0], (i, lines)


def test_json_log_format(stack):
    import json
    s = stack(log={"level": "debug", "format": "json"})
    assert http.request(s.addr, "GET", "/json-log").status == 200
    time.sleep(0.3)
    lines = s.proxy.log_text().splitlines()
    assert lines
    for line in lines:
        obj = json.loads(line)
        assert isinstance(obj, dict) and str(obj.get("level")).lower() in \
            ("trace", "debug", "info", "notice", "warning", "error", "critical"), line
    assert any("listening on" in line for line in lines)
