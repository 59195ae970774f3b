"""Upstream keep-alive: idle upstream connections are reused by later requests
(what nginx's `keepalive` and HAProxy's `http-reuse` do), and a pooled
connection that the upstream closed never costs a client its response."""
import time

import pytest

from harness import client as http
from harness import upstream as up

pytestmark = pytest.mark.proxy_only


def conn_ids(s, path):
    return [r.conn_id for r in s.upstream.requests_for(path)]


def test_sequential_clients_share_one_upstream_connection(stack):
    s = stack(workers=1)
    for i in range(5):
        resp = http.request(s.addr, "GET", f"/reuse/{i}")
        assert resp.status == 200
    ids = conn_ids(s, "/reuse")
    assert len(ids) == 5 and len(set(ids)) == 1, f"upstream connections used: {ids}"
    assert "close" not in s.upstream.requests_for("/reuse")[0].tokens("connection")


def test_request_bodies_travel_on_reused_connections(stack):
    s = stack(workers=1)
    for i in range(3):
        body = f"body {i}".encode() * 100
        resp = http.request(s.addr, "POST", "/post", [("Content-Type", "text/plain")], body)
        assert up.decode_echo(resp.body.data)["body"] == body
    assert len(set(conn_ids(s, "/post"))) == 1


def test_connection_close_and_close_delimited_responses_are_not_reused(stack):
    s = stack(workers=1)
    s.upstream.route("/cc", up.response(200, [("Connection", "close")], b"bye") + [up.close()])
    s.upstream.route("/cd", up.response(200, [], b"until close", framing="close"))
    for path in ("/cc", "/cc", "/cd", "/cd"):
        assert http.request(s.addr, "GET", path).status == 200
    assert len(set(conn_ids(s, "/cc"))) == 2
    assert len(set(conn_ids(s, "/cd"))) == 2


def test_upstream_closing_idle_connections_never_fails_a_request(stack):
    # The upstream answers and then silently closes: the next request may find a
    # dead pooled connection, and must be retried on a fresh one (bodyless GET).
    s = stack(workers=1)
    s.upstream.route("/flaky", up.response(200, [], b"ok") + [up.sleep(0.02), up.close()])
    for i in range(30):
        resp = http.request(s.addr, "GET", "/flaky")
        assert resp.status == 200 and resp.body.data == b"ok", (i, resp.head.raw)
        time.sleep(0.01 * (i % 4))
    assert not [l for l in s.proxy.lines if l.level in ("warning", "error", "critical")]


def test_connections_idle_for_long_are_not_handed_out(stack):
    s = stack(workers=1)
    assert http.request(s.addr, "GET", "/idle-pool/a").status == 200
    time.sleep(1.3)  # longer than the pool's reuse window (1 s)
    assert http.request(s.addr, "GET", "/idle-pool/b").status == 200
    ids = conn_ids(s, "/idle-pool")
    assert len(set(ids)) == 2, ids


def test_idle_pooled_connections_are_closed_after_the_reuse_window(stack):
    s = stack(workers=1)
    assert http.request(s.addr, "GET", "/sweep").status == 200
    record = s.upstream.connections[-1]
    time.sleep(0.5)
    assert record.closed_by_peer is None, "the pooled connection closed too early"
    deadline = time.monotonic() + 4
    while record.closed_by_peer is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert record.closed_by_peer is not None, "an idle pooled upstream connection was never closed"
