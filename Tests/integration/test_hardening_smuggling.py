"""Issue 4 item 1: strict parsing against request smuggling (RFC 9112
sections 2.2, 3, 5, 6.1, 6.3, 7.1, 11.2), and the same strictness for
upstream responses.

Each hostile request carries a second, smuggled request (`GET /smuggled-...`)
placed where a lenient or differently-lenient parser would see a request
boundary. The proxy must answer exactly one error response, close the
connection, and the upstream must never receive the smuggled request.

All tests share one proxy (workers: 1) with an innocent event stream running
through the whole module; every test checks that it is still flowing.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from conftest import require_binary
from harness import client as http
from harness import upstream as up
from harness.hardening import Innocent, loud_lines, raw_exchange, read_all, wait_until
from harness.proxy import Proxy, base_config

pytestmark = pytest.mark.proxy_only

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
SMUGGLED_LEN = len(SMUGGLED)


@pytest.fixture(scope="module")
def shared():
    require_binary()
    with up.Upstream() as u:
        p = Proxy(base_config(u.config_addr, workers=1))
        inn = Innocent(p.addr, u, n_events=400)
        try:
            yield SimpleNamespace(up=u, proxy=p, innocent=inn)
        finally:
            inn.stop()
            p.stop()


@pytest.fixture
def s(shared):
    """Per test (hostile clients): the shared stack; afterwards the proxy must
    be alive, the innocent stream flowing, and a client's bad input is not
    logged at error or above (it is not the proxy's failure)."""
    n_lines = len(shared.proxy.lines)
    shared.n_requests = len(shared.up.requests)
    yield shared
    assert shared.proxy.alive(), f"proxy died:\n{shared.proxy.log_text()[-3000:]}"
    new = shared.proxy.lines[n_lines:]
    loud = [l.text for l in new if l.level in ("error", "critical")]
    assert not loud, f"bad input from a client logged as an error: {loud}"
    shared.innocent.assert_flowing(max_gap=1.0)


@pytest.fixture
def su(shared):
    """Per test (broken upstreams): as `s`, but a malformed upstream response
    must be logged at warning or error, naming the upstream address, and
    never at critical."""
    n_lines = len(shared.proxy.lines)
    yield shared
    assert shared.proxy.alive(), f"proxy died:\n{shared.proxy.log_text()[-3000:]}"
    addr = shared.up.config_addr

    def named_lines():
        return [l for l in shared.proxy.lines[n_lines:] if l.level in ("warning", "error") and addr in l.text]
    named = wait_until(named_lines, 1.0)  # the log is written asynchronously
    new = shared.proxy.lines[n_lines:]
    assert not [l.text for l in new if l.level == "critical"]
    assert named, f"malformed upstream response not logged at warning/error with {addr}:\n" + \
        "\n".join(l.text for l in new)
    shared.innocent.assert_flowing(max_gap=1.0)


def new_requests(s):
    time.sleep(0.1)  # anything the proxy was going to forward has arrived by now
    return s.up.requests[s.n_requests:]


def post(headers: bytes, body: bytes = b"", version: bytes = b"HTTP/1.1", target: bytes = b"/first") -> bytes:
    host = b"Host: a\r\n" if version == b"HTTP/1.1" and b"host:" not in headers.lower() else b""
    return b"POST " + target + b" " + version + b"\r\n" + host + headers + b"\r\n" + body


def get(headers: bytes = b"", target: bytes = b"/first", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + target + b" " + version + b"\r\n" + headers + b"\r\n"


H = b"Host: a\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
LAST = b"0\r\n\r\n"

# (id, raw bytes, accepted statuses, head_level). head_level: the request head
# itself is invalid, so nothing at all may reach the upstream. Body-level
# errors (chunked framing) may show up after the head was forwarded; the
# smuggled request never may.
HEAD_CASES = [
    # Content-Length together with Transfer-Encoding (RFC 9112 6.1, 11.2)
    ("cl_then_te", post(b"Content-Length: %d\r\n" % (5 + SMUGGLED_LEN) + CHUNKED, LAST + SMUGGLED), {400}),
    ("te_then_cl", post(CHUNKED + b"Content-Length: 3\r\n", LAST + SMUGGLED), {400}),
    ("te_then_cl_zero", post(CHUNKED + b"Content-Length: 0\r\n", b"5\r\nhello\r\n" + LAST + SMUGGLED), {400}),
    # differing or malformed Content-Length (RFC 9112 6.3 item 5)
    ("cl_twice_differing", post(b"Content-Length: 5\r\nContent-Length: %d\r\n" % (5 + SMUGGLED_LEN),
                                b"hello" + SMUGGLED), {400}),
    ("cl_list_differing", post(b"Content-Length: 5, %d\r\n" % (5 + SMUGGLED_LEN), b"hello" + SMUGGLED), {400}),
    ("cl_plus_sign", post(b"Content-Length: +5\r\n", b"hello" + SMUGGLED), {400}),
    ("cl_negative", post(b"Content-Length: -5\r\n", b"hello" + SMUGGLED), {400}),
    ("cl_hex", post(b"Content-Length: 0x5\r\n", b"hello" + SMUGGLED), {400}),
    ("cl_inner_space", post(b"Content-Length: 5 5\r\n", b"hello" + SMUGGLED), {400}),
    ("cl_trailing_garbage", post(b"Content-Length: 5abc\r\n", b"hello" + SMUGGLED), {400}),
    ("cl_empty", post(b"Content-Length: \r\n", b"hello" + SMUGGLED), {400}),
    ("cl_decimal_point", post(b"Content-Length: 5.0\r\n", b"hello" + SMUGGLED), {400}),
    # 2**64 + 5: wraps to 5 in a careless 64-bit parser
    ("cl_overflow_wraps", post(b"Content-Length: 18446744073709551621\r\n", b"hello" + SMUGGLED), {400}),
    ("cl_forty_digits", post(b"Content-Length: " + b"9" * 40 + b"\r\n", b"hello" + SMUGGLED), {400}),
    # Transfer-Encoding other than exactly chunked (RFC 9112 6.1, 6.3 item 4)
    ("te_identity", post(b"Transfer-Encoding: identity\r\n", LAST + SMUGGLED), {400, 501}),
    ("te_chunked_identity", post(b"Transfer-Encoding: chunked, identity\r\n", LAST + SMUGGLED), {400, 501}),
    ("te_xchunked", post(b"Transfer-Encoding: xchunked\r\n", LAST + SMUGGLED), {400, 501}),
    ("te_chunked_twice_one_line", post(b"Transfer-Encoding: chunked, chunked\r\n", LAST + SMUGGLED), {400, 501}),
    ("te_chunked_twice_two_lines", post(CHUNKED + CHUNKED, LAST + SMUGGLED), {400, 501}),
    ("te_chunked_then_gzip", post(CHUNKED + b"Transfer-Encoding: gzip\r\n", LAST + SMUGGLED), {400, 501}),
    ("te_gzip_chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", LAST + SMUGGLED), {400, 501}),
    ("te_vertical_tab", post(b"Transfer-Encoding:\x0bchunked\r\n", LAST + SMUGGLED), {400, 501}),
    ("te_quoted", post(b'Transfer-Encoding: "chunked"\r\n', LAST + SMUGGLED), {400, 501}),
    ("te_in_http10", post(CHUNKED, LAST + SMUGGLED, version=b"HTTP/1.0"), {400}),
    ("te_and_cl_in_http10", post(CHUNKED + b"Content-Length: %d\r\n" % (5 + SMUGGLED_LEN),
                                 LAST + SMUGGLED, version=b"HTTP/1.0"), {400}),
    # obs-fold (RFC 9112 5.2)
    ("obs_fold_space", get(H + b"X-Pad: a\r\n b\r\n"), {400}),
    ("obs_fold_tab", get(H + b"X-Pad: a\r\n\tb\r\n"), {400}),
    ("obs_fold_te", post(b"Transfer-Encoding:\r\n chunked\r\n", LAST + SMUGGLED), {400}),
    ("obs_fold_cl", post(b"X-Pad: 1\r\n Content-Length: %d\r\n" % SMUGGLED_LEN, SMUGGLED), {400}),
    # whitespace between field name and colon (RFC 9112 5.1: MUST 400)
    ("space_before_colon_te", post(b"Transfer-Encoding : chunked\r\n", LAST + SMUGGLED), {400}),
    ("tab_before_colon_cl", post(b"Content-Length\t: %d\r\n" % SMUGGLED_LEN, SMUGGLED), {400}),
    ("space_before_colon_host", b"GET /first HTTP/1.1\r\nHost : a\r\n\r\n"),
    # bare CR (RFC 9112 2.2: MUST reject or replace with SP; replacing would
    # forward `X-A: a Content-Length: ...` harmlessly, but the issue asks 400)
    ("bare_cr_in_value", get(H + b"X-A: a\rb\r\n"), {400}),
    ("bare_cr_line_end", post(b"X-A: a\rContent-Length: %d\r\n" % SMUGGLED_LEN, SMUGGLED), {400}),
    ("bare_cr_request_line", b"GET /first HTTP/1.1\rHost: a\r\n\r\n", {400}),
    ("bare_cr_in_target", b"GET /fi\rrst HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    # NUL and other control characters
    ("nul_in_value", get(H + b"X-A: a\x00b\r\n"), {400}),
    ("nul_in_name", get(H + b"X-\x00A: b\r\n"), {400}),
    ("soh_in_value", get(H + b"X-A: a\x01b\r\n"), {400}),
    ("us_in_value", get(H + b"X-A: a\x1fb\r\n"), {400}),
    ("del_in_name", get(H + b"X-\x7fA: b\r\n"), {400}),
    ("space_in_name", get(H + b"X A: b\r\n"), {400}),
    ("empty_name", get(H + b": b\r\n"), {400}),
    ("nul_in_target", b"GET /fi\x00rst HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("ctl_in_target", b"GET /fi\x01rst HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("space_in_target", b"GET /fi rst HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("double_space_request_line", b"GET  /first HTTP/1.1\r\nHost: a\r\n\r\n", {400}),
    ("lowercase_version", b"GET /first http/1.1\r\nHost: a\r\n\r\n", {400, 505}),
    # Host (RFC 9112 3.2: MUST 400 when missing or repeated on 1.1)
    ("missing_host", b"GET /first HTTP/1.1\r\nX-A: b\r\n\r\n", {400}),
    ("duplicate_host", b"GET /first HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    # unsupported major version
    ("http_2_0", b"GET /first HTTP/2.0\r\nHost: a\r\n\r\n", {505}),
    ("http_3_0", b"GET /first HTTP/3.0\r\nHost: a\r\n\r\n", {505}),
]
HEAD_CASES = [(c[0], c[1], c[2] if len(c) > 2 else {400}) for c in HEAD_CASES]

BODY_CASES = [
    ("chunk_size_not_hex", post(CHUNKED, b"zz\r\nhello\r\n" + LAST + SMUGGLED)),
    ("chunk_size_negative", post(CHUNKED, b"-1\r\nhello\r\n" + LAST + SMUGGLED)),
    ("chunk_size_0x_prefix", post(CHUNKED, b"0x5\r\nhello\r\n" + LAST + SMUGGLED)),
    ("chunk_size_plus", post(CHUNKED, b"+5\r\nhello\r\n" + LAST + SMUGGLED)),
    ("chunk_size_empty", post(CHUNKED, b"\r\nhello\r\n" + LAST + SMUGGLED)),
    ("chunk_size_leading_space", post(CHUNKED, b" 5\r\nhello\r\n" + LAST + SMUGGLED)),
    # 17 hex digits: 0x1_0000_0000_0000_0005 wraps to 5 in a careless parser,
    # which would then read `hello`, the last chunk and the smuggled request.
    ("chunk_size_overflow_wraps", post(CHUNKED, b"10000000000000005\r\nhello\r\n" + LAST + SMUGGLED)),
    ("chunk_size_ffff", post(CHUNKED, b"ffffffffffffffff\r\nhello\r\n" + LAST + SMUGGLED)),
    ("chunk_size_many_zeros", post(CHUNKED, b"0" * 40 + b"5\r\nhello\r\n" + LAST + SMUGGLED)),
    ("chunk_data_no_crlf", post(CHUNKED, b"5\r\nhelloXX" + LAST + SMUGGLED)),
    ("chunk_data_too_long", post(CHUNKED, b"3\r\nhello\r\n" + LAST + SMUGGLED)),
    ("chunk_size_bare_cr", post(CHUNKED, b"5\rhello\r\n" + LAST + SMUGGLED)),
    ("chunk_ext_bare_cr", post(CHUNKED, b"5;a=b\rc\r\nhello\r\n" + LAST + SMUGGLED)),
    ("chunk_ext_nul", post(CHUNKED, b"5;a\x00\r\nhello\r\n" + LAST + SMUGGLED)),
    ("trailer_obs_fold", post(CHUNKED, b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n" + SMUGGLED)),
    ("trailer_nul", post(CHUNKED, b"5\r\nhello\r\n0\r\nX-T: a\x00\r\n\r\n" + SMUGGLED)),
]


def check_one_error_then_close(s, raw, statuses, responses, rest, allbytes, closed):
    assert len(responses) == 1, f"expected exactly one response, got {len(responses)}:\n" \
                                f"sent {raw!r}\ngot  {allbytes[:600]!r}"
    head = responses[0].head
    assert head.status in statuses, f"sent {raw!r}\ngot {head.raw!r}"
    assert rest == b"", f"stray bytes after the error response: {rest[:200]!r}"
    assert closed, f"connection not closed after {head.status} (sent {raw!r})"
    text = responses[0].body.data.decode("utf-8", "replace").strip()
    assert text and "\n" not in text, f"error body is not one readable line: {text!r}"


@pytest.mark.parametrize("raw,statuses", [c[1:] for c in HEAD_CASES], ids=[c[0] for c in HEAD_CASES])
def test_malformed_request_head_rejected_and_never_forwarded(s, raw, statuses):
    responses, rest, allbytes, closed = raw_exchange(s.proxy.addr, raw, timeout=3)
    check_one_error_then_close(s, raw, statuses, responses, rest, allbytes, closed)
    got = new_requests(s)
    assert not got, f"forwarded to the upstream: {[r.raw_head for r in got]}"


@pytest.mark.parametrize("raw", [c[1] for c in BODY_CASES], ids=[c[0] for c in BODY_CASES])
def test_malformed_chunked_request_body_rejected_and_nothing_smuggled(s, raw):
    responses, rest, allbytes, closed = raw_exchange(s.proxy.addr, raw, timeout=3)
    check_one_error_then_close(s, raw, {400}, responses, rest, allbytes, closed)
    got = new_requests(s)
    assert not [r for r in got if "smuggled" in r.target], \
        f"smuggled request reached the upstream: {[r.raw_head for r in got]}"
    # A forwarded head must not have been completed into a valid request.
    for r in got:
        assert r.framing_error or r.body != b"hello", f"upstream got a complete request: {r.raw_head!r}"


def test_identical_content_length_repeated_is_one_request(s):
    """RFC 9112 6.3: identical repeated values may be accepted as one; either
    way, exactly one response and no request boundary inside the body."""
    body = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    raw = post(b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(body), len(body)), body)
    responses, rest, allbytes, closed = raw_exchange(s.proxy.addr, raw, timeout=1.5)
    assert len(responses) == 1 and responses[0].status in (200, 400), allbytes[:400]
    assert not [r for r in new_requests(s) if "smuggled" in r.target]


def test_valid_request_before_malformed_one_on_same_connection(s):
    """Keep-alive: a good request is answered, then a smuggling attempt on the
    same connection gets 400 and close; the upstream saw only the good one."""
    good = get(H, target=b"/good-1")
    bad = post(b"Content-Length: %d\r\n" % (5 + SMUGGLED_LEN) + CHUNKED, LAST + SMUGGLED)
    conn = http.connect(s.proxy.addr, timeout=3)
    try:
        conn.send(good)
        h1 = conn.read_head()
        b1 = conn.read_body(h1)
        assert h1.status == 200 and up.decode_echo(b1.data)["target"] == "/good-1"
        conn.send(bad)
        h2 = conn.read_head()
        assert h2.status == 400, h2.raw
        conn.read_body(h2)
        assert conn.wait_eof(2), "connection not closed after 400"
    finally:
        conn.close()
    assert [r.target for r in new_requests(s)] == ["/good-1"]


def test_oversized_chunk_size_line_rejected(s):
    """A chunk-size line that never ends (extension padding) is cut off."""
    raw = post(CHUNKED, b"5;" + b"x" * 70000 + b"\r\nhello\r\n" + LAST)
    conn = http.connect(s.proxy.addr, timeout=4)
    try:
        try:
            conn.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = read_all(conn, 4)
    finally:
        conn.close()
    assert closed, "proxy kept reading an endless chunk-size line"
    assert data == b"" or data.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413", b"HTTP/1.1 431")), data[:200]


# --- upstream responses -------------------------------------------------------

BAD_HEADS = [
    ("status_code_4_digits", b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"),
    ("status_code_missing", b"HTTP/1.1 OK\r\nContent-Length: 2\r\n\r\nok"),
    ("status_code_letters", b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok"),
    ("not_http", b"FOO/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ("http_2_status_line", b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ("garbage", b"\x00\xff\x13\x37garbage\r\n\r\n"),
    ("html_without_head", b"<html><body>hello</body></html>\n"),
    ("te_and_cl", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("cl_twice_differing", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!"),
    ("cl_not_a_number", b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok"),
    ("cl_negative", b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok"),
    ("nul_in_header", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"),
    ("head_cut_by_close", b"HTTP/1.1 200 OK\r\nContent-Le"),
]


@pytest.mark.parametrize("name,raw", BAD_HEADS, ids=[c[0] for c in BAD_HEADS])
def test_malformed_upstream_head_gives_502(su, name, raw):
    path = f"/bad-head/{name}"
    su.up.route(path, [up.send(raw), up.close()])
    conn = http.connect(su.proxy.addr, timeout=4)
    try:
        conn.send(http.build_request("GET", path))
        head = conn.read_head(timeout=4)
        body = conn.read_body(head, timeout=2)
        assert head.status == 502, f"upstream sent {raw!r}\nclient got {head.raw!r}{body.data[:200]!r}"
        text = body.data.decode("utf-8", "replace").strip()
        assert text and "\n" not in text, f"502 body is not one readable line: {text!r}"
        assert b"garbage" not in body.data and b"<html>" not in body.data, "upstream bytes leaked"
        # Either closed or still usable for the next request; never a second response.
        extra = conn.read_available(0.2)
        assert extra == b"", f"stray bytes after the 502: {extra[:200]!r}"
    finally:
        conn.close()


GOOD_PREFIX = b"data: one\n\n"
BAD_FRAMING = [
    ("chunk_size_not_hex", b"zz\r\ndata: x\n\n\r\n"),
    ("chunk_size_overflow", b"10000000000000005\r\nhello\r\n"),
    ("chunk_size_negative", b"-1\r\nhello\r\n"),
    ("chunk_data_no_crlf", b"5\r\nhelloXX5\r\nhello\r\n"),
    ("garbage_instead_of_chunk", b"\x00\xff\xfe\r\n"),
]


@pytest.mark.parametrize("name,bad", BAD_FRAMING, ids=[c[0] for c in BAD_FRAMING])
def test_bad_chunked_framing_after_event_stream_head_cuts_stream(su, name, bad):
    """The head and a first event went out already: the client's stream is cut
    (no final chunk, connection closed); nothing after the error is forwarded."""
    path = f"/bad-framing/{name}"
    su.up.route(path, [
        up.send(up.head_bytes(200, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")])),
        up.send(up.chunk(GOOD_PREFIX)), up.sleep(0.15), up.send(bad),
        up.send(up.chunk(b"data: after-the-error\n\n") + up.LAST_CHUNK), up.sleep(2), up.close()])
    conn = http.connect(su.proxy.addr, timeout=4)
    try:
        conn.send(http.build_request("GET", path, [("Accept", "text/event-stream")]))
        head = conn.read_head(timeout=4)
        assert head.status == 200, head.raw
        t0 = time.monotonic()
        body = conn.read_body(head, timeout=3, timeout_ok=True)
        elapsed = time.monotonic() - t0
    finally:
        conn.close()
    assert GOOD_PREFIX in body.data, body.data
    assert b"after-the-error" not in body.data, f"bytes after the framing error forwarded: {body.data!r}"
    assert not body.complete, f"stream ended with a final chunk as if complete: {body.data!r}"
    assert elapsed < 1.5, f"client stream not cut promptly ({elapsed:.2f}s; upstream kept the socket open)"


def test_bad_chunked_framing_in_plain_response_never_looks_complete(su):
    """Non-SSE response: 502 if the proxy still could, else a cut stream;
    never a complete-looking body."""
    path = "/bad-plain-framing"
    su.up.route(path, [up.send(up.head_bytes(200, [("Transfer-Encoding", "chunked")]) +
                              up.chunk(b"hello") + b"zz\r\nworld\r\n" + up.LAST_CHUNK), up.sleep(2), up.close()])
    conn = http.connect(su.proxy.addr, timeout=4)
    try:
        conn.send(http.build_request("GET", path))
        head = conn.read_head(timeout=4)
        body = conn.read_body(head, timeout=3, timeout_ok=True)
        if head.status == 200:
            assert not body.complete, f"cut body forwarded as complete: {body.data!r}"
            assert b"world" not in body.data
            assert conn.wait_eof(1.5), "connection not closed after the upstream framing error"
        else:
            assert head.status == 502, head.raw
    finally:
        conn.close()


def test_endless_upstream_head_gives_502_not_unbounded_buffering(su):
    """An upstream head far larger than any sane limit (2 MiB of one header)
    is refused with 502 promptly, not buffered until the response timeout."""
    path = "/huge-upstream-head"
    su.up.route(path, [up.send(b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * (2 << 20)), up.hang(5)])
    t0 = time.monotonic()
    conn = http.connect(su.proxy.addr, timeout=5)
    try:
        conn.send(http.build_request("GET", path))
        head = conn.read_head(timeout=5)
    finally:
        conn.close()
    assert head.status == 502, head.raw[:300]
    assert time.monotonic() - t0 < 2.5, "huge upstream head not refused before the response timeout"


def test_upstream_100_continue_then_garbage(su):
    path = "/continue-garbage"
    su.up.route(path, [up.send(b"HTTP/1.1 100 Continue\r\n\r\n"), up.send(b"\x00garbage\r\n\r\n"), up.close()])
    conn = http.connect(su.proxy.addr, timeout=4)
    try:
        conn.send(http.build_request("GET", path))
        head = conn.read_head(timeout=4)
        assert head.status == 502, head.raw
    finally:
        conn.close()


def test_innocent_stream_survived_the_whole_module(shared):
    """Runs last: the stream shared by every test above kept its cadence."""
    assert shared.proxy.alive()
    shared.innocent.check(max_gap=1.0)
    assert not [l for l in loud_lines(shared.proxy, "critical")]
