"""Issue 4 item 4 (docs/behaviour.md, "Forwarding"): pipelined requests answered in order, and
`Upgrade` (WebSocket) tunnelled as raw bytes both ways after the upstream's
101, with half-close handled in both directions.

One proxy (workers: 1) for the module, with an innocent event stream that
every test checks."""
from __future__ import annotations

import os
import socket
import time
from types import SimpleNamespace

import pytest

from conftest import require_binary
from harness import client as http
from harness import upstream as up
from harness.hardening import (Innocent, RawUpstream, fd_count, fd_targets, read_all, settle_fd_count,
                               split_responses, wait_until)
from harness.proxy import Proxy, base_config
from harness.streams import SSE_ACCEPT

pytestmark = pytest.mark.proxy_only

WS_HEADERS = [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]
SWITCH = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
BINARY = bytes(range(256)) + b"GET /inside-the-tunnel HTTP/1.1\r\nHost: a\r\n\r\n" + b"\r\n0\r\n\r\n"


def tunnel_handler(c):
    """The upstream end of a tunnel; what it does after the 101 depends on
    the request path."""
    head = c.read_head()
    path = head.split(b" ", 2)[1].decode()
    if path == "/ws/decline":
        # Connection: close, because this handler serves one request: a keep-alive answer would
        # put the connection in the proxy's pool, and the next test's request on it would go
        # unanswered until the response timeout raced this handler's close (a 504 under load).
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\ndeclined")
        c.read_until_eof(3)
        return
    c.send(SWITCH)
    if path == "/ws/echo":  # echo until EOF, then say bye and close
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not c.stopping:
            data = c.recv_some(0.05)
            if data is None:
                break
            if data:
                c.send(data)
        c.send(b"bye-after-eof")
    elif path == "/ws/server-half-close":  # talk, half-close, keep listening
        c.send(b"server-done")
        c.shutdown_write()
        c.read_until_eof(5)
    elif path == "/ws/server-close":
        c.send(b"server-closing")
        time.sleep(0.05)
    elif path == "/ws/sink":  # read until EOF, never write
        c.read_until_eof(5)


@pytest.fixture(scope="module")
def shared():
    require_binary()
    with up.Upstream() as u, RawUpstream(tunnel_handler) as raw:
        cfg = base_config(u.config_addr, workers=1)
        cfg["routes"] = [{"path": "/ws", "upstream": raw.config_addr}]
        p = Proxy(cfg)
        inn = Innocent(p.addr, u, n_events=400)
        try:
            yield SimpleNamespace(up=u, raw=raw, proxy=p, innocent=inn, pid=p.proc.pid)
        finally:
            inn.stop()
            p.stop()


@pytest.fixture
def t(shared):
    shared.n_lines = len(shared.proxy.lines)
    shared.n_raw = len(shared.raw.records)
    shared.n_requests = len(shared.up.requests)
    fd0 = fd_count(shared.pid)
    yield shared
    assert shared.proxy.alive(), f"proxy died:\n{shared.proxy.log_text()[-3000:]}"
    shared.innocent.assert_flowing(max_gap=1.0)
    n = settle_fd_count(shared.pid, fd0, 2)
    assert n <= fd0 + 2, f"fd leak: {fd0} -> {n}: {fd_targets(shared.pid)}"
    loud = [l.text for l in shared.proxy.lines[shared.n_lines:] if l.level in ("warning", "error", "critical")]
    assert not loud, f"logged at warning or above: {loud}"


def open_tunnel(t, path, extra=()):
    conn = http.connect(t.proxy.addr, timeout=5)
    conn.send(http.build_request("GET", path, WS_HEADERS + list(extra)))
    head = conn.read_head(timeout=5)
    assert head.status == 101, head.raw
    assert t.raw.wait_connections(t.n_raw + 1), "tunnel never reached the upstream"
    return conn, head, t.raw.records[t.n_raw]


def recv_exactly(conn, n, timeout=5.0) -> bytes:
    deadline = time.monotonic() + timeout
    while len(conn.buf) < n:
        if not conn._fill(deadline):
            break
    return conn._take(min(n, len(conn.buf)))


def upstream_payload(rec) -> bytes:
    data = bytes(rec.received)
    return data[data.index(b"\r\n\r\n") + 4:]


# --- Upgrade ----------------------------------------------------------------------------


def test_upgrade_request_reaches_upstream_with_the_pair(t):
    conn, head, rec = open_tunnel(t, "/ws/sink", [("Keep-Alive", "timeout=5"), ("X-Hop", "no")])
    conn.close()
    sent = rec.head.decode("latin-1").lower()
    lines = sent.split("\r\n")
    assert "upgrade: websocket" in lines, rec.head
    conn_tokens = [tok.strip() for l in lines if l.startswith("connection:") for tok in l[11:].split(",")]
    assert "upgrade" in conn_tokens, rec.head
    assert "sec-websocket-key: dghlihnhbxbszsbub25jzq==" in lines, rec.head
    assert not any(l.startswith("keep-alive:") for l in lines), rec.head
    assert head.get("upgrade", "").lower() == "websocket", head.raw
    assert "upgrade" in head.tokens("connection"), head.raw


def test_raw_bytes_flow_both_ways_unchanged(t):
    conn, _, rec = open_tunnel(t, "/ws/echo")
    try:
        payload = BINARY + os.urandom(1 << 20)
        conn.send(BINARY)
        assert recv_exactly(conn, len(BINARY)) == BINARY, "tunnel changed the bytes"
        conn.send(payload[len(BINARY):])
        got = recv_exactly(conn, len(payload) - len(BINARY), timeout=10)
        assert got == payload[len(BINARY):], f"1 MiB echo differs (got {len(got)} bytes)"
    finally:
        conn.close()
    assert upstream_payload(rec) == payload, "upstream did not receive exactly the client's bytes"
    assert not [r for r in t.up.requests[t.n_requests:] if "inside-the-tunnel" in r.target], \
        "bytes inside the tunnel were parsed as a request"


def test_client_half_close_reaches_upstream_which_can_still_send(t):
    conn, _, rec = open_tunnel(t, "/ws/echo")
    try:
        conn.send(b"hello")
        assert recv_exactly(conn, 5) == b"hello"
        conn.sock.shutdown(socket.SHUT_WR)
        assert wait_until(lambda: rec.eof_at is not None, 3), "upstream never saw the client's EOF"
        data, closed = read_all(conn, 3)
        assert data == b"bye-after-eof", f"upstream's bytes after the client's half-close: {data!r}"
        assert closed, "tunnel not closed after the upstream closed too"
    finally:
        conn.close()


def test_upstream_half_close_reaches_client_which_can_still_send(t):
    conn, _, rec = open_tunnel(t, "/ws/server-half-close")
    try:
        data, eof = read_all(conn, 3)
        assert data == b"server-done" and eof, f"client did not see the upstream's EOF: {data!r} eof={eof}"
        conn.send(b"client-still-talking")
        assert wait_until(lambda: b"client-still-talking" in rec.received, 3), \
            "bytes after the upstream's half-close were not forwarded"
        conn.sock.shutdown(socket.SHUT_WR)
        assert wait_until(lambda: rec.eof_at is not None, 3), "upstream never saw the client's EOF"
    finally:
        conn.close()


def test_upstream_close_ends_tunnel(t):
    conn, _, rec = open_tunnel(t, "/ws/server-close")
    try:
        data, closed = read_all(conn, 3)
        assert data == b"server-closing" and closed, f"got {data!r}, closed={closed}"
    finally:
        conn.close()


def test_client_close_and_reset_end_tunnel(t):
    for how in ("close", "reset"):
        n = len(t.raw.records)
        conn = http.connect(t.proxy.addr, timeout=5)
        conn.send(http.build_request("GET", "/ws/sink", WS_HEADERS))
        assert conn.read_head().status == 101
        assert t.raw.wait_connections(n + 1)
        rec = t.raw.records[n]
        conn.send(b"x" * 1000)
        assert wait_until(lambda: len(upstream_payload(rec)) == 1000 if b"\r\n\r\n" in rec.received else False, 3)
        getattr(conn, how)()
        assert wait_until(lambda: rec.eof_at is not None, 3), f"client {how} did not end the upstream side"


def test_declined_upgrade_is_an_ordinary_response(t):
    conn = http.connect(t.proxy.addr, timeout=5)
    try:
        r = conn.request("GET", "/ws/decline", WS_HEADERS)
        assert r.status == 200 and r.body.data == b"declined", r.head.raw
        # No tunnel: the connection is still HTTP (or closed), never raw.
        try:
            conn.send(http.build_request("GET", "/after-decline"))
            head = conn.read_head(timeout=2)
        except (BrokenPipeError, ConnectionResetError):
            return
        except http.ClientError as e:
            assert "EOF" in str(e), f"after a declined upgrade: {e}"
            return
        assert echoed_target(http.Response(head, conn.read_body(head))) == "/after-decline"
    finally:
        conn.close()


def test_bytes_after_a_declined_upgrade_are_http_not_tunnel(t):
    """Upgrade request and, in the same write, a second request. The
    upstream declines (200): no tunnel exists, so the second request is an
    ordinary pipelined request (routed and parsed by the proxy), never raw
    bytes on the /ws upstream connection (the WebSocket-smuggling pattern)."""
    conn = http.connect(t.proxy.addr, timeout=5)
    try:
        conn.send(http.build_request("GET", "/ws/decline", WS_HEADERS) +
                  http.build_request("GET", "/smuggled-after-upgrade"))
        h1 = conn.read_head()
        assert h1.status == 200 and conn.read_body(h1).data == b"declined", h1.raw
        try:
            h2 = conn.read_head(timeout=2)
            second = http.Response(h2, conn.read_body(h2))
        except http.ClientError as e:
            assert "EOF" in str(e), f"second request neither answered nor the connection closed: {e}"
            second = None
    finally:
        conn.close()
    time.sleep(0.1)
    rec = t.raw.records[t.n_raw]
    assert b"smuggled-after-upgrade" not in bytes(rec.received), \
        f"pipelined request tunnelled raw to the upstream: {bytes(rec.received)!r}"
    if second is not None:
        assert echoed_target(second) == "/smuggled-after-upgrade"


# --- pipelining ----------------------------------------------------------------------------


def echoed_target(resp):
    assert resp.status == 200, resp.head.raw
    return up.decode_echo(resp.body.data)["target"]


def read_responses(conn, n, methods=None):
    out = []
    for i in range(n):
        head = conn.read_head(timeout=5)
        out.append(http.Response(head, conn.read_body(head, (methods or {}).get(i, "GET"), timeout=5)))
    return out


def test_twenty_pipelined_requests_in_one_write_answered_in_order(t):
    conn = http.connect(t.proxy.addr, timeout=5)
    try:
        conn.send(b"".join(http.build_request("GET", f"/pipe/{i}?q={i}") for i in range(20)))
        targets = [echoed_target(r) for r in read_responses(conn, 20)]
        assert targets == [f"/pipe/{i}?q={i}" for i in range(20)]
        assert conn.read_available(0.2) == b""
    finally:
        conn.close()


def test_pipelined_mixed_bodies_answered_in_order(t):
    batch = (http.build_request("GET", "/mix/0") +
             http.build_request("POST", "/mix/1", body=b"one body") +
             http.build_request("POST", "/mix/2", [("Transfer-Encoding", "chunked")],
                                http.chunked(b"chunked body", sizes=(3, 5))) +
             http.build_request("DELETE", "/mix/3") +
             http.build_request("PUT", "/mix/4", body=b"GET /not-a-request HTTP/1.1\r\n\r\n"))
    conn = http.connect(t.proxy.addr, timeout=5)
    try:
        conn.send(batch)
        echoes = [up.decode_echo(r.body.data) for r in read_responses(conn, 5)]
    finally:
        conn.close()
    assert [e["target"] for e in echoes] == [f"/mix/{i}" for i in range(5)]
    assert [e["body"] for e in echoes] == [b"", b"one body", b"chunked body", b"",
                                           b"GET /not-a-request HTTP/1.1\r\n\r\n"]
    assert not [r for r in t.up.requests[t.n_requests:] if r.path == "/not-a-request"]


def test_pipelined_slow_first_response_keeps_order(t):
    t.up.route("/slow-first", [up.sleep(0.4)] + up.response(200, [], b"slow"))
    conn = http.connect(t.proxy.addr, timeout=5)
    try:
        conn.send(http.build_request("GET", "/slow-first") + http.build_request("GET", "/fast-second"))
        r1, r2 = read_responses(conn, 2)
        assert r1.body.data == b"slow", r1.head.raw
        assert echoed_target(r2) == "/fast-second"
    finally:
        conn.close()


def test_pipelined_after_event_stream_waits_for_its_end(t):
    t.up.route("/short-stream", up.event_stream([(0.1, b"data: a\n\n"), (0.1, b"data: b\n\n")]))
    conn = http.connect(t.proxy.addr, timeout=5)
    try:
        conn.send(http.build_request("GET", "/short-stream", [SSE_ACCEPT]) +
                  http.build_request("GET", "/after-stream"))
        h1 = conn.read_head()
        b1 = conn.read_body(h1, timeout=5)
        assert h1.status == 200 and b1.complete
        assert b"data: a\n\n" in b1.data and b"data: b\n\n" in b1.data
        h2 = conn.read_head()
        assert echoed_target(http.Response(h2, conn.read_body(h2))) == "/after-stream"
    finally:
        conn.close()


def test_pipelined_batch_with_malformed_third_request(t):
    good = [http.build_request("GET", f"/pm/{i}") for i in range(2)]
    bad = b"GET /pm/bad HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx"
    after = http.build_request("GET", "/pm/after-the-bad-one")
    conn = http.connect(t.proxy.addr, timeout=5)
    try:
        conn.send(b"".join(good) + bad + after)
        data, closed = read_all(conn, 3)
    finally:
        conn.close()
    responses, rest = split_responses(data)
    assert [r.status for r in responses] == [200, 200, 400], data[:600]
    assert [echoed_target(r) for r in responses[:2]] == ["/pm/0", "/pm/1"]
    assert rest == b"" and closed, f"after the 400: {rest[:200]!r}, closed={closed}"
    targets = [r.target for r in t.up.requests[t.n_requests:]]
    assert "/pm/after-the-bad-one" not in targets and "/pm/bad" not in targets, targets


@pytest.mark.parametrize("first", [
    http.build_request("GET", "/cc/first", [("Connection", "close")]),
    b"GET /cc/first HTTP/1.0\r\nHost: a\r\n\r\n",
], ids=["connection_close", "http10_without_keepalive"])
def test_nothing_answered_after_a_closing_request(t, first):
    """RFC 9112 9.6: after a request that ends the connection, later
    pipelined requests are not processed."""
    conn = http.connect(t.proxy.addr, timeout=5)
    try:
        conn.send(first + http.build_request("GET", "/cc/second"))
        data, closed = read_all(conn, 3)
    finally:
        conn.close()
    responses, rest = split_responses(data)
    assert len(responses) == 1 and echoed_target(responses[0]) == "/cc/first", data[:400]
    assert closed and rest == b"", f"after the closing response: {rest[:200]!r}, closed={closed}"
    assert "/cc/second" not in [r.target for r in t.up.requests[t.n_requests:]]


def test_innocent_stream_survived_the_whole_module(shared):
    assert shared.proxy.alive()
    shared.innocent.check(max_gap=1.0)
