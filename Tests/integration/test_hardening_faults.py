"""Issue 4 item 5: faults on either side end that exchange cleanly, with the
right status or close, the right log level (ECONNRESET/EPIPE/EOF at debug,
docs/behaviour.md, "Logs"), no leaked file descriptors, and no effect on an innocent stream
on the same proxy (workers: 1).

The tests share one proxy; each one also checks that the proxy's fd count
returns to where it was."""
from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest

from conftest import require_binary
from harness import client as http
from harness import upstream as up
from harness.hardening import (Innocent, fd_count, fd_targets, raw_exchange, read_all, rss_bytes,
                               settle_fd_count, wait_until)
from harness.proxy import Proxy, base_config
from harness.streams import SSE_ACCEPT

pytestmark = pytest.mark.proxy_only

FD_MARGIN = 2
EVENT = b"data: tick\n\n"
SSE = [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]


def routes(u: up.Upstream):
    u.route("/f/upstream-reset", up.event_stream([(0, EVENT), (0.1, b"data: half")], end="reset"))
    u.route("/f/upstream-close-mid-chunk", [up.send(up.head_bytes(200, SSE) + up.chunk(EVENT)),
                                            up.sleep(0.1), up.send(b"20\r\ndata: cut inside"), up.close()])
    u.route("/f/plain-close-mid-length", [up.send(up.head_bytes(200, [("Content-Length", "100000")]) +
                                                  b"p" * 30000), up.sleep(0.05), up.close()])
    u.route("/f/plain-close-mid-chunk", [up.send(up.head_bytes(200, [("Transfer-Encoding", "chunked")]) +
                                                 up.chunk(b"q" * 5000) + b"1000\r\nqqq"), up.sleep(0.05), up.close()])
    u.route("/f/long-stream", up.event_stream([(0.05, EVENT)] * 100))
    u.route("/f/big", up.response(200, [("Content-Type", "application/octet-stream")], b"z" * 4_000_000))
    u.route("/f/silent", [up.hang(5)])
    u.route("/f/garbage", [up.send(b"\x00\xffnot http at all\r\n\r\n"), up.close()])
    u.route("/f/accept-close", [up.close()])
    u.route("/f/accept-reset", [up.reset()])
    u.route("/f/slow", [up.sleep(0.5)] + up.response(200, [], b"slow"))


@pytest.fixture(scope="module")
def shared():
    require_binary()
    with up.Upstream() as u:
        routes(u)
        p = Proxy(base_config(u.config_addr, workers=1, timeouts={"response": "1s"}))
        inn = Innocent(p.addr, u, n_events=400)
        try:
            yield SimpleNamespace(up=u, proxy=p, innocent=inn, pid=p.proc.pid)
        finally:
            inn.stop()
            p.stop()


@pytest.fixture
def f(shared):
    """Per test: afterwards the proxy is alive, the innocent stream flowing,
    and the fd count back where it was (within FD_MARGIN)."""
    shared.n_lines = len(shared.proxy.lines)
    fd0 = fd_count(shared.pid)
    targets0 = fd_targets(shared.pid)
    yield shared
    assert shared.proxy.alive(), f"proxy died:\n{shared.proxy.log_text()[-3000:]}"
    shared.innocent.assert_flowing(max_gap=1.0)
    n = settle_fd_count(shared.pid, fd0, FD_MARGIN)
    assert n <= fd0 + FD_MARGIN, (f"fd leak: {fd0} before, {n} after\nbefore {targets0}\n"
                                  f"after  {fd_targets(shared.pid)}")


def new_lines(f):
    time.sleep(0.1)
    return f.proxy.lines[f.n_lines:]


def assert_quiet(f):
    """Disconnects by reset, broken pipe or EOF: debug only (docs/behaviour.md, "Logs")."""
    assert wait_until(lambda: [l for l in f.proxy.lines[f.n_lines:] if l.level == "debug"], 1.0), \
        "no debug line about the disconnect"
    lines = new_lines(f)
    loud = [l.text for l in lines if l.level in ("warning", "error", "critical")]
    assert not loud, f"disconnect logged at warning or above: {loud}"


def open_sse(f, path):
    conn = http.connect(f.proxy.addr, timeout=5)
    conn.send(http.build_request("GET", path, [SSE_ACCEPT]))
    return conn, conn.read_head()


def last_upstream_conn_closed(f, timeout=3.0):
    rec = f.up.connections[-1]
    return wait_until(lambda: rec.closed_by_peer is not None, timeout)


# --- upstream faults -----------------------------------------------------------------


def test_upstream_reset_mid_stream_cuts_client_stream_quietly(f):
    conn, head = open_sse(f, "/f/upstream-reset")
    try:
        assert head.status == 200
        body = conn.read_body(head, timeout=3, timeout_ok=True)
        assert body.data.startswith(EVENT), body.data
        assert not body.complete and conn.eof, "reset upstream: the client stream must be cut (no last chunk, EOF)"
        assert b"data: half" in body.data or body.data == EVENT
    finally:
        conn.close()
    assert_quiet(f)


def test_upstream_close_mid_chunk_cuts_client_stream_quietly(f):
    conn, head = open_sse(f, "/f/upstream-close-mid-chunk")
    try:
        assert head.status == 200
        body = conn.read_body(head, timeout=3, timeout_ok=True)
        assert body.data.startswith(EVENT), body.data
        assert not body.complete and conn.eof, f"cut upstream chunk: client stream must be cut, got {body.data!r}"
    finally:
        conn.close()
    assert_quiet(f)


@pytest.mark.parametrize("path", ["/f/plain-close-mid-length", "/f/plain-close-mid-chunk"])
def test_upstream_close_mid_plain_body_never_looks_complete(f, path):
    conn = http.connect(f.proxy.addr, timeout=5)
    try:
        conn.send(http.build_request("GET", path))
        head = conn.read_head()
        assert head.status == 200, head.raw
        body = conn.read_body(head, timeout=3, timeout_ok=True)
        assert not body.complete, f"truncated upstream body forwarded as complete ({len(body.data)} bytes, " \
                                  f"framing {body.framing})"
        assert conn.eof, "client connection not closed after a truncated upstream body"
    finally:
        conn.close()
    assert_quiet(f)


@pytest.mark.parametrize("path", ["/f/accept-close", "/f/accept-reset", "/f/garbage"])
def test_upstream_gone_or_garbage_before_head_gives_502(f, path):
    r = http.request(f.proxy.addr, "GET", path, timeout=4)
    assert r.status == 502, r.head.raw
    text = r.body.data.decode("utf-8", "replace").strip()
    assert text and "\n" not in text, f"502 body not one readable line: {r.body.data!r}"
    assert not [l for l in new_lines(f) if l.level == "critical"]


def test_upstream_accepts_and_never_answers_gives_504(f):
    t0 = time.monotonic()
    r = http.request(f.proxy.addr, "GET", "/f/silent", timeout=5)
    elapsed = time.monotonic() - t0
    assert r.status == 504, r.head.raw
    assert 0.8 <= elapsed <= 2.5, f"504 after {elapsed:.2f}s with response 1s"
    text = r.body.data.decode("utf-8", "replace").strip()
    assert text and "\n" not in text
    assert last_upstream_conn_closed(f), "the silent upstream connection was left open after the 504"


def test_upstream_closing_idle_keepalive_connection_does_not_fail_next_request(f):
    """The upstream answers with keep-alive, then closes that connection
    while idle (a routine event). The next client request must not get a 502
    from a stale pooled connection."""
    f.up.route("/f/ka-then-close", up.response(200, [], b"first") + [up.sleep(0.1), up.close()])
    conn = http.connect(f.proxy.addr, timeout=4)
    try:
        r1 = conn.request("GET", "/f/ka-then-close")
        assert r1.status == 200 and r1.body.data == b"first"
        time.sleep(0.4)
        r2 = conn.request("GET", "/f/after-upstream-closed")
        assert r2.status == 200, f"request after the upstream closed its idle connection: {r2.head.raw!r}"
    finally:
        conn.close()
    assert not [l.text for l in new_lines(f) if l.level in ("error", "critical")]


# --- client faults ---------------------------------------------------------------------


def test_client_reset_mid_stream_closes_upstream_quietly(f):
    conn, head = open_sse(f, "/f/long-stream")
    assert head.status == 200
    conn.read_body(head, timeout=0.3, timeout_ok=True)
    conn.reset()
    assert last_upstream_conn_closed(f), "upstream connection left open after the client reset"
    assert_quiet(f)


def test_client_reset_during_big_response_is_quiet(f):
    """The proxy's writes fail with ECONNRESET/EPIPE: debug only."""
    conn = http.connect(f.proxy.addr, timeout=5)
    conn.send(http.build_request("GET", "/f/big"))
    head = conn.read_head()
    assert head.status == 200
    conn.read_available(0.05)
    conn.reset()
    assert last_upstream_conn_closed(f), "upstream connection left open after the client reset"
    assert_quiet(f)


def test_client_reset_while_upstream_thinks(f):
    conn = http.connect(f.proxy.addr, timeout=5)
    conn.send(http.build_request("GET", "/f/slow"))
    time.sleep(0.1)
    conn.reset()
    time.sleep(0.6)  # the upstream answers into a dead client
    assert not [l.text for l in new_lines(f) if l.level in ("warning", "error", "critical")]


def test_client_gone_mid_request_body_is_not_forwarded_as_complete(f):
    n0 = len(f.up.requests)
    conn = http.connect(f.proxy.addr, timeout=5)
    conn.send(http.build_request("POST", "/f/partial-body", [("Content-Length", "100000")]) + b"b" * 1000)
    time.sleep(0.1)
    conn.reset()
    time.sleep(0.3)
    complete = [r for r in f.up.requests[n0:] if r.path == "/f/partial-body" and len(r.body) == 100000]
    assert not complete, "a request whose client vanished mid-body reached the upstream complete"
    assert not [l.text for l in new_lines(f) if l.level in ("warning", "error", "critical")]


def test_client_half_close_after_request(f):
    """shutdown(SHUT_WR) right after a full request: like HAProxy, the
    response is still delivered and the connection then closed. (A proxy may
    instead treat it as an abort; then it must close without sending a
    partial response.)"""
    responses, rest, raw, closed = raw_exchange(f.proxy.addr, http.build_request("GET", "/f/half"),
                                                timeout=3, shut_wr=True)
    assert closed, "connection not closed after the client half-closed and the exchange ended"
    if responses:
        assert len(responses) == 1 and responses[0].status == 200 and responses[0].body.complete, raw[:300]
        assert up.decode_echo(responses[0].body.data)["target"] == "/f/half"
        assert rest == b""
    else:
        assert raw == b"", f"partial response after a client half-close: {raw[:300]!r}"
    assert not [l.text for l in new_lines(f) if l.level in ("warning", "error", "critical")]


def test_client_half_close_during_stream(f):
    """A client that half-closes while streaming: the stream either goes on
    (the client can still read) or is closed cleanly; then a full close
    releases the upstream too."""
    conn, head = open_sse(f, "/f/long-stream")
    assert head.status == 200
    conn.read_body(head, timeout=0.2, timeout_ok=True)
    conn.sock.shutdown(socket.SHUT_WR)
    data, closed = read_all(conn, 0.5)
    if not closed:
        assert b"data: tick" in data, "half-closed client neither served nor closed"
    conn.close()
    assert last_upstream_conn_closed(f), "upstream connection left open after the client closed"
    assert not [l.text for l in new_lines(f) if l.level in ("warning", "error", "critical")]


# --- a batch of faults -------------------------------------------------------------------


def _fault_upstream_reset(addr):
    c = http.connect(addr, timeout=3)
    c.send(http.build_request("GET", "/f/upstream-reset", [SSE_ACCEPT]))
    h = c.read_head()
    c.read_body(h, timeout=2, timeout_ok=True)
    c.close()


def _fault_mid_chunk(addr):
    c = http.connect(addr, timeout=3)
    c.send(http.build_request("GET", "/f/plain-close-mid-chunk"))
    h = c.read_head()
    c.read_body(h, timeout=2, timeout_ok=True)
    c.close()


def _fault_client_reset_stream(addr):
    c = http.connect(addr, timeout=3)
    c.send(http.build_request("GET", "/f/long-stream", [SSE_ACCEPT]))
    h = c.read_head()
    c.read_body(h, timeout=0.08, timeout_ok=True)
    c.reset()


def _fault_client_reset_big(addr):
    c = http.connect(addr, timeout=3)
    c.send(http.build_request("GET", "/f/big"))
    c.read_head()
    c.reset()


def _fault_half_close(addr):
    raw_exchange(addr, http.build_request("GET", "/f/half"), timeout=2, shut_wr=True)


def _fault_garbage(addr):
    assert http.request(addr, "GET", "/f/garbage", timeout=3).status == 502


def _fault_accept_close(addr):
    assert http.request(addr, "GET", "/f/accept-reset", timeout=3).status == 502


def _fault_partial_body(addr):
    c = http.connect(addr, timeout=3)
    c.send(http.build_request("POST", "/f/partial-body", [("Content-Length", "5000")]) + b"b" * 100)
    time.sleep(0.02)
    c.reset()


def _fault_bad_request(addr):
    raw_exchange(addr, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                 timeout=2)


def _fault_silent_upstream(addr, out):
    try:
        out.append(http.request(addr, "GET", "/f/silent", timeout=4).status)
    except Exception as e:  # noqa: BLE001
        out.append(repr(e))


SEQUENTIAL_FAULTS = [_fault_upstream_reset, _fault_mid_chunk, _fault_client_reset_stream, _fault_client_reset_big,
                     _fault_half_close, _fault_garbage, _fault_accept_close, _fault_partial_body, _fault_bad_request]


@pytest.mark.timeout(40)
def test_batch_of_fifty_faults_leaks_no_fds_and_keeps_innocent_stream(f):
    addr = f.proxy.addr
    for fault in SEQUENTIAL_FAULTS:  # warm-up: lazily allocated things exist before counting
        fault(addr)
    time.sleep(0.3)
    fd_before = settle_fd_count(f.pid, 0, 10**6, timeout=0)
    targets_before = fd_targets(f.pid)
    rss_before = rss_bytes(f.pid)
    n_lines = len(f.proxy.lines)
    statuses: list = []
    silent = [threading.Thread(target=_fault_silent_upstream, args=(addr, statuses), daemon=True)
              for _ in range(5)]
    for t in silent:
        t.start()
    count = len(silent)
    t_end = time.monotonic() + 20
    for round_ in range(5):
        for fault in SEQUENTIAL_FAULTS:
            if time.monotonic() > t_end:
                break
            fault(addr)
            count += 1
    for t in silent:
        t.join(6)
    assert count >= 50, f"only {count} faults ran in the time budget"
    assert statuses == [504] * 5, f"silent upstreams: {statuses}"
    n = settle_fd_count(f.pid, fd_before, FD_MARGIN, timeout=5)
    assert n <= fd_before + FD_MARGIN, (f"fd leak after {count} faults: {fd_before} -> {n}\n"
                                        f"before {targets_before}\nafter  {fd_targets(f.pid)}")
    growth = rss_bytes(f.pid) - rss_before
    assert growth < 10 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB over {count} faults"
    lines = f.proxy.lines[n_lines:]
    # The disconnect kinds (reset, EPIPE, EOF, half-close) stay at debug;
    # upstreams that fail a request before its head (garbage, reset before
    # answering, silent: the client gets 502/504) may be logged louder.
    noisy_kinds = ("malformed", "before sending a response", "no response within")
    loud = [l.text for l in lines if l.level in ("warning", "error", "critical")
            and not any(k in l.text for k in noisy_kinds)]
    assert not loud, f"disconnect faults logged at warning or above: {loud[:10]}"
    assert not [l.text for l in lines if l.level == "critical"]
    f.innocent.assert_flowing(max_gap=1.0)


def test_innocent_stream_survived_the_whole_module(shared):
    assert shared.proxy.alive()
    shared.innocent.check(max_gap=1.0)
