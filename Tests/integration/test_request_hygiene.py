"""Issue 17 items 3 and 5: header names with `_` are not forwarded; response
heads the proxy sends (no Content-Length on 204, HEAD of an event stream
gets the same header policy as GET)."""
from __future__ import annotations

import pytest

from harness import client as http
from harness import upstream as up
from harness.proxy import base_config, free_port

pytestmark = pytest.mark.proxy_only


def test_underscored_header_names_are_not_forwarded_by_default(stack):
    s = stack()
    headers = [("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded-For", "1.1.1.1"), ("Transfer_Encoding", "chunked"),
               ("X_Auth_User", "admin"), ("Accept", "*/*")]
    resp = http.request(s.addr, "GET", "/u", headers)
    assert resp.status == 200
    [req] = s.upstream.requests_for("/u")
    names = [k for k, _ in req.headers]
    assert not [n for n in names if "_" in n], names
    assert req.get_all("x-forwarded-for") == ["1.1.1.1"]
    assert req.get("accept") == "*/*"
    assert req.framing == "none"


def test_dropped_underscored_fields_are_counted_and_logged(start_proxy, upstream):
    admin = free_port()
    p = start_proxy(base_config(upstream.config_addr, admin={"listen": f"127.0.0.1:{admin}"},
                                log={"level": "debug"}, routes=[{"path": "/r"}]))
    resp = http.request(p.addr, "GET", "/r/x", [("X_A", "1"), ("X_B", "2"), ("X-C", "3")])
    assert resp.status == 200
    text = http.request(("127.0.0.1", admin), "GET", "/metrics").body.data.decode()
    assert 'sse_keepalive_request_headers_dropped_total{route="/r"} 2' in text, text
    line = p.wait_for_log("X_A", timeout=2, level="debug")
    assert line and "X_B" in line.text, p.log_text()[-2000:]


@pytest.mark.parametrize("top, route, forwarded", [(True, None, True), (False, True, True), (True, False, False)])
def test_underscored_fields_forwarded_with_the_switch(start_proxy, upstream, top, route, forwarded):
    r = {"path": "/r"}
    if route is not None:
        r["headers"] = {"allow_underscores": route}
    p = start_proxy(base_config(upstream.config_addr, headers={"allow_underscores": top}, routes=[r]))
    assert http.request(p.addr, "GET", "/r/x", [("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded-For", "1.1.1.1")]).status == 200
    [req] = upstream.requests_for("/r")
    assert req.get_all("x_forwarded_for") == (["6.6.6.6"] if forwarded else [])
    assert req.get_all("x-forwarded-for") == ["1.1.1.1"]


def test_interim_response_has_no_content_length(stack):
    s = stack()
    s.upstream.route("/hints", [
        up.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nContent-Length: 0\r\n\r\n"),
        *up.response(200, body=b"ok")])
    conn = http.connect(s.addr)
    try:
        conn.send(http.build_request("GET", "/hints"))
        hint = conn.read_head(allow_1xx=True)
        assert hint.status == 103 and hint.get("link") == "</a.css>; rel=preload"
        assert not hint.has("content-length"), hint.headers
        assert conn.read_head().status == 200
    finally:
        conn.close()


def test_204_has_no_content_length(stack):
    s = stack()
    s.upstream.route("/nc", [up.send(up.head_bytes(204, [("Content-Length", "0"), ("X-A", "1")], reason="No Content"))])
    conn = http.connect(s.addr)
    try:
        resp = conn.request("GET", "/nc")
        assert resp.status == 204
        assert not resp.head.has("content-length"), resp.head.headers
        assert resp.head.get("x-a") == "1"
        # the connection stays usable
        assert conn.request("GET", "/after").status == 200
    finally:
        conn.close()


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_head_of_event_stream_gets_the_same_headers_as_get(stack, version):
    s = stack()
    upstream_headers = [("Content-Type", "text/event-stream"), ("Cache-Control", "private, max-age=60"),
                        ("X-Accel-Buffering", "yes"), ("X-App", "1")]

    def answer(req):
        if req.method == "HEAD":
            return [up.send(up.head_bytes(200, upstream_headers + [("Transfer-Encoding", "chunked")]))]
        return up.event_stream([(0, b"data: x\n\n")], headers=upstream_headers[1:])  # it adds Content-Type
    s.upstream.route("/stream", answer)

    def head_of(method):
        conn = http.connect(s.addr)
        try:
            conn.send(http.build_request(method, "/stream", [("Accept", "text/event-stream")], version=version))
            head = conn.read_head()
            if method == "GET":
                http.read_stream(conn, head, 2.0)
            return head
        finally:
            conn.close()

    get, head = head_of("GET"), head_of("HEAD")
    assert head.status == get.status == 200
    assert head.get_all("cache-control") == get.get_all("cache-control") == ["no-cache, no-transform"]
    assert head.get_all("x-accel-buffering") == ["no"]
    assert not head.has("content-length")

    def end_to_end(h):
        return sorted((k.lower(), v) for k, v in h.headers if k.lower() not in ("connection", "date"))
    assert end_to_end(head) == end_to_end(get)
