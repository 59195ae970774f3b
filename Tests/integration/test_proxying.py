"""docs/behaviour.md, "Forwarding": a transparent HTTP/1.x reverse proxy for non-SSE traffic."""
import os

import pytest

from harness import client as http
from harness import upstream as up

BINARY_BODY = bytes(range(256)) * 40 + b"\r\n0\r\n\r\n"  # looks like chunk framing on purpose


def echoed(resp):
    assert resp.status == 200, resp.head.raw
    return up.decode_echo(resp.body.data)


@pytest.mark.parametrize("method", ["GET", "DELETE", "OPTIONS"])
def test_bodyless_methods_reach_upstream(stack, method):
    s = stack()
    resp = http.request(s.addr, method, "/things/1?x=1&y=%2F")
    e = echoed(resp)
    assert (e["method"], e["target"], e["body"]) == (method, "/things/1?x=1&y=%2F", b"")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_content_length_body_reaches_upstream_intact(stack, method):
    s = stack()
    resp = http.request(s.addr, method, "/upload", [("Content-Type", "application/octet-stream")],
                        BINARY_BODY)
    e = echoed(resp)
    assert e["method"] == method and e["body"] == BINARY_BODY
    assert e["framing_error"] is None and e["framing"] in ("length", "chunked")
    req = s.upstream.requests_for("/upload")[0]
    assert not (req.has("content-length") and req.has("transfer-encoding")), req.raw_head


def test_chunked_request_body_reaches_upstream_intact(stack):
    s = stack()
    body = http.chunked(BINARY_BODY, sizes=(1, 300, 4096), extensions=True)
    resp = http.request(s.addr, "POST", "/upload", [("Transfer-Encoding", "chunked")], body)
    e = echoed(resp)
    assert e["body"] == BINARY_BODY and e["framing_error"] is None
    req = s.upstream.requests_for("/upload")[0]
    # Either re-chunked or buffered with a Content-Length, but well framed.
    assert req.framing in ("chunked", "length") and not (req.has("content-length") and req.has("transfer-encoding"))
    if req.framing == "length":
        assert req.get("content-length") == str(len(BINARY_BODY))


def test_empty_chunked_request_body(stack):
    s = stack()
    e = echoed(http.request(s.addr, "POST", "/upload", [("Transfer-Encoding", "chunked")], b"0\r\n\r\n"))
    assert e["body"] == b"" and e["framing_error"] is None


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_response_bodies_reach_client_intact(stack, framing):
    s = stack()
    body = os.urandom(200_000)
    s.upstream.route("/blob", up.response(200, [("Content-Type", "application/octet-stream")], body, framing))
    resp = http.request(s.addr, "GET", "/blob", timeout=10)
    assert resp.status == 200
    assert resp.body.complete and resp.body.data == body
    assert resp.head.get("content-type") == "application/octet-stream"


@pytest.mark.parametrize("status,extra", [(204, []), (304, [("ETag", '"v1"'), ("Content-Length", "10")])])
def test_no_body_statuses_keep_connection_usable(stack, status, extra):
    s = stack()
    s.upstream.route("/nobody", up.response(status, extra, framing="none"))
    conn = http.connect(s.addr)
    try:
        r1 = conn.request("GET", "/nobody")
        assert r1.status == status and r1.body.data == b""
        r2 = conn.request("GET", "/after")
        assert echoed(r2)["target"] == "/after"
    finally:
        conn.close()


def test_head_has_no_body_and_keeps_connection_usable(stack):
    s = stack()
    s.upstream.route("/doc", up.response(200, [("Content-Type", "text/plain"), ("Content-Length", "12345")],
                                         framing="none"))
    conn = http.connect(s.addr)
    try:
        r1 = conn.request("HEAD", "/doc")
        assert r1.status == 200 and r1.body.data == b""
        assert r1.head.get("content-length") in ("12345", None)
        r2 = conn.request("GET", "/after-head")
        assert echoed(r2)["target"] == "/after-head"
        assert conn.read_available(0.2) == b"", "stray bytes after the response"
    finally:
        conn.close()


def test_keepalive_several_requests_on_one_connection(stack):
    s = stack()
    s.upstream.route("/chunky", up.response(200, [], b"c" * 3000, framing="chunked"))
    conn = http.connect(s.addr)
    try:
        for i in range(4):
            e = echoed(conn.request("POST", f"/k/{i}", [("X-Seq", str(i))], f"body-{i}".encode()))
            assert e["target"] == f"/k/{i}" and e["body"] == f"body-{i}".encode()
            assert ["X-Seq", str(i)] in e["headers"]
            r = conn.request("GET", "/chunky")
            assert r.body.data == b"c" * 3000
    finally:
        conn.close()


def test_pipelined_requests_answered_in_order(stack):
    s = stack()
    conn = http.connect(s.addr)
    try:
        conn.send(b"".join(http.build_request("GET", f"/p/{i}") for i in range(3)))
        for i in range(3):
            head = conn.read_head()
            assert echoed(http.Response(head, conn.read_body(head)))["target"] == f"/p/{i}"
    finally:
        conn.close()


@pytest.mark.proxy_only  # the upstream answers chunked: de-chunking is the proxy's job
def test_http10_client_without_keepalive(stack):
    s = stack()
    s.upstream.route("/chunky", up.response(200, [("Content-Type", "text/plain")], b"x" * 5000, framing="chunked"))
    conn = http.connect(s.addr)
    try:
        conn.send(b"GET /chunky HTTP/1.0\r\nHost: a\r\n\r\n")
        head = conn.read_head()
        assert head.status == 200 and head.framing != "chunked", head.raw
        body = conn.read_body(head)
        assert body.data == b"x" * 5000
        assert conn.wait_eof(3), "HTTP/1.0 connection without keep-alive must be closed"
    finally:
        conn.close()


def test_http10_client_with_keepalive(stack):
    s = stack()
    conn = http.connect(s.addr)
    try:
        conn.send(b"GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        head = conn.read_head()
        assert head.status == 200 and head.framing != "chunked", head.raw
        assert echoed(http.Response(head, conn.read_body(head)))["target"] == "/ten"
        if "keep-alive" in head.tokens("connection"):
            # The proxy promised to keep it open: a second request must work.
            conn.send(b"GET /ten-again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            head2 = conn.read_head()
            assert echoed(http.Response(head2, conn.read_body(head2)))["target"] == "/ten-again"
        else:
            assert conn.wait_eof(3), "no keep-alive promised, so the connection must close"
    finally:
        conn.close()


@pytest.mark.proxy_only
def test_hop_by_hop_request_headers_not_forwarded(stack):
    s = stack()
    headers = [
        ("Connection", "keep-alive, X-Custom-Hop"),
        ("Keep-Alive", "timeout=7, max=77"),
        ("TE", "trailers, deflate;q=0.5"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "h2c"),
        ("Proxy-Connection", "keep-alive"),
        ("X-Custom-Hop", "must-not-pass"),
        ("X-End-To-End", "kept"),
        ("Cookie", "a=1; b=2"),
        ("Authorization", "Basic dTpw"),
        ("User-Agent", "itest/1.0"),
        ("Accept", "application/json"),
    ]
    resp = http.request(s.addr, "GET", "/hop", headers)
    assert resp.status == 200
    req = s.upstream.requests_for("/hop")[0]
    assert not req.has("x-custom-hop"), req.raw_head
    assert not req.has("proxy-connection"), req.raw_head
    assert not req.has("trailer"), req.raw_head
    assert not req.has("upgrade"), req.raw_head
    assert "timeout=7, max=77" not in req.get_all("keep-alive"), req.raw_head
    assert not any("deflate" in v for v in req.get_all("te")), req.raw_head
    assert "x-custom-hop" not in req.tokens("connection"), req.raw_head
    for name, value in headers[7:]:
        assert req.get_all(name) == [value], (name, req.raw_head)


def test_websocket_upgrade_is_tunnelled(stack):
    s = stack()
    s.upstream.route("/ws", [up.send(up.head_bytes(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                         ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")])),
                             up.tunnel_echo()])
    conn = http.connect(s.addr)
    try:
        conn.send(http.build_request("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                    ("Sec-WebSocket-Version", "13")]))
        head = conn.read_head()
        assert head.status == 101 and head.get("upgrade", "").lower() == "websocket", head.raw
        frames = bytes(range(256)) * 4 + b"GET / HTTP/1.1\r\n\r\n"  # raw bytes, not HTTP
        conn.send(frames)
        got = b""
        while len(got) < len(frames):
            more = conn.read_available(2)
            assert more, f"tunnel stalled after {len(got)} bytes"
            got += more
        assert got == frames
    finally:
        conn.close()
    req = s.upstream.requests_for("/ws")[0]
    assert req.get("upgrade", "").lower() == "websocket" and "upgrade" in req.tokens("connection"), req.raw_head
    assert req.get("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ=="


def test_interim_1xx_then_final_response(stack):
    s = stack()
    s.upstream.route("/hints", [up.send(up.head_bytes(103, [("Link", "</a.css>; rel=preload")], reason="Early Hints"))]
                     + up.response(200, [("Content-Type", "text/plain")], b"final"))
    conn = http.connect(s.addr)
    try:
        r = conn.request("GET", "/hints")  # interim responses, if forwarded, are skipped by the client
        assert r.status == 200 and r.body.data == b"final"
        assert echoed(conn.request("GET", "/after-1xx"))["target"] == "/after-1xx"
    finally:
        conn.close()


def test_expect_100_continue(stack):
    s = stack()
    conn = http.connect(s.addr)
    try:
        conn.send(http.build_request("POST", "/upload", [("Expect", "100-continue"), ("Content-Length", "5")]))
        head = conn.read_head(timeout=3, allow_1xx=True)
        if head.status == 100:  # proxy (or origin) asked for the body
            conn.send(b"hello")
            head = conn.read_head()
        else:
            pytest.fail(f"no 100 Continue before the body was sent: {head.raw!r}")
        e = echoed(http.Response(head, conn.read_body(head)))
        assert e["body"] == b"hello"
    finally:
        conn.close()


@pytest.mark.timeout(40)
def test_concurrent_clients_never_mix_bytes(stack):
    import threading
    s = stack()
    for k in range(4):
        s.upstream.route(f"/stream/{k}", up.event_stream(
            [(0.05, f"id: {k}-{i}\ndata: stream {k} event {i}\n\n".encode()) for i in range(15)]))
    failures = []

    def keepalive_client(k):
        try:
            conn = http.connect(s.addr, 10)
            try:
                for i in range(8):
                    body = os.urandom(1000 + 997 * k + i)
                    e = echoed(conn.request("POST", f"/c/{k}/{i}", body=body, timeout=10))
                    if e["target"] != f"/c/{k}/{i}" or e["body"] != body:
                        failures.append(f"client {k} request {i}: got {e['target']}")
            finally:
                conn.close()
        except Exception as exc:
            failures.append(f"client {k}: {exc!r}")

    def stream_client(k):
        from harness.streams import fetch_stream
        from harness import sse
        try:
            head, body = fetch_stream(s.addr, f"/stream/{k}")
            expected = [f"stream {k} event {i}" for i in range(15)]
            if [e.data for e in sse.parse(body.data).events] != expected:
                failures.append(f"stream {k}: {body.data[:200]!r}")
        except Exception as exc:
            failures.append(f"stream {k}: {exc!r}")

    threads = [threading.Thread(target=keepalive_client, args=(k,)) for k in range(8)]
    threads += [threading.Thread(target=stream_client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures, failures
