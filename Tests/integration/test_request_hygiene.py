"""Issue 17 items 3 and 5: header names with `_` are not forwarded; response
heads the proxy sends (no Content-Length on 204, HEAD of an event stream
gets the same header policy as GET)."""
from __future__ import annotations

import pytest

from harness import client as http
from harness import upstream as up

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
