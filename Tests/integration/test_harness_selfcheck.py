"""Checks of the harness itself (parser, heartbeat stripping, alignment,
client framing, upstream). They run without the binary, in every mode."""
import base64
import json
import os

from harness import sse
from harness import client as http
from harness import upstream as up
from harness.proxy import to_yaml

DATA = os.path.join(os.path.dirname(__file__), "data", "wpt-eventsource-corpus.json")


def corpus():
    with open(DATA) as f:
        return {e["name"]: base64.b64decode(e["body_b64"]) for e in json.load(f)}


def datas(payload):
    return [e.data for e in sse.parse(payload).events]


def test_parser_matches_wpt_expectations():
    c = corpus()
    assert datas(c["wpt-format-utf-8"]) == ["ok\u2026"]
    assert datas(c["wpt-format-field-data"]) == ["", "\n", "test"]
    assert datas(c["wpt-format-bom"]) == ["1", "3"]
    assert datas(c["wpt-format-bom-2"]) == ["2", "3"]
    assert datas(c["wpt-format-null-character"]) == ["\0"]
    assert datas(c["wpt-format-leading-space"]) == ["\ttest\n\ntest"]
    assert datas(c["wpt-format-comments"]) == ["1\n2\n3\n4"]
    assert datas(c["wpt-format-field-unknown"]) == ["test\n\ntest"]
    r = sse.parse(c["wpt-format-data-before-final-empty-line"])
    assert datas(c["wpt-format-data-before-final-empty-line"]) == ["test1"]
    assert r.retry == 1000 and r.last_event_id == ""
    e = sse.parse(c["wpt-readable-stream-bom-mixed"]).events
    assert e == [sse.Event("named", "first\nsecond", "\u03b1")]
    assert sse.parse(b"event:test\ndata:x\n\ndata:x\n\n").events[0].type == "test"


def test_parser_discards_incomplete_event_and_unterminated_line():
    assert datas(b"data:a\n\ndata:b\n") == ["a"]
    assert datas(b"data:a\n\ndata:b\n\r") == ["a", "b"]
    assert datas(b"data:a\n\ndata:b") == ["a"]


def test_strip_heartbeats_only_whole_lines_at_safe_points():
    hb = b":heartbeat\n\n"
    assert sse.strip_heartbeats(hb + b"data: x\n" + b":heartbeat\n" + b"\n") == b"data: x\n\n"
    # the upstream's own blank line after an in-event heartbeat is kept
    assert sse.strip_heartbeats(b"data: x\n:heartbeat\n\n") == b"data: x\n\n"
    # not a whole line, or after a lone CR: left in place
    assert sse.strip_heartbeats(b"data: x:heartbeat\n\n") == b"data: x:heartbeat\n\n"
    assert sse.strip_heartbeats(b"data: x\r:heartbeat\n\n") == b"data: x\r:heartbeat\n\n"
    assert sse.strip_heartbeats(b":heartbeats\n\n") == b":heartbeats\n\n"
    assert sse.strip_heartbeats(b":ka\n", comment="ka", blank_line=False) == b""


def test_align_accepts_correct_and_rejects_wrong_insertions():
    upstream = b"\xef\xbb\xbfdata: a\n\ndata: b\r\n"
    good = b":heartbeat\n\n" + b"data: a\n\n:heartbeat\n\ndata: b\r\n:heartbeat\n"
    a = sse.align(good, upstream)
    assert a.ok, a.problems
    assert a.bom_dropped and sse.offsets(a) == [0, 12, 21]
    assert not sse.align(b":heartbeat\n\n" + upstream, upstream).ok  # BOM kept after heartbeat
    assert sse.align(upstream, upstream).ok  # BOM kept without heartbeat
    assert not sse.align(b"\xef\xbb\xbfdata: a\n\ndata: b\r:heartbeat\n\n\n", upstream).ok
    assert not sse.align(b"\xef\xbb\xbfdata: a\n\ndata: b\r\n:heartbeat\n\n", upstream).ok  # wrong form
    assert not sse.align(b"\xef\xbb\xbfdata: a\n\n", upstream).ok  # truncated
    assert not sse.align(b"\xef\xbb\xbfdata: :heartbeat\n\na\n\ndata: b\r\n", upstream).ok  # mid-line


def test_yaml_emitter_shapes():
    text = to_yaml({"listen": "[::1]:8080", "admin": "off", "heartbeat": {"interval": "300ms",
                    "blank_line": False}, "routes": [{"path": "/a", "token": {}}]})
    assert 'listen: "[::1]:8080"' in text and "admin: off" in text
    assert "  blank_line: false" in text and "  - path: /a\n    token: {}" in text


def test_client_and_upstream_roundtrip_keepalive_and_chunked():
    with up.Upstream() as u:
        u.route("/chunked", up.response(200, [("X-A", "1")], b"hello world" * 50, framing="chunked"))
        conn = http.connect(u.addr)
        try:
            r1 = conn.request("POST", "/echo?q=1", [("Transfer-Encoding", "chunked")],
                              http.chunked(b"abcdefghij" * 10, extensions=True, trailers=[("X-T", "1")]))
            echo = up.decode_echo(r1.body.data)
            assert echo["body"] == b"abcdefghij" * 10 and echo["framing"] == "chunked"
            assert echo["framing_error"] is None
            r2 = conn.request("GET", "/chunked")
            assert r2.body.framing == "chunked" and r2.body.data == b"hello world" * 50
            assert r2.body.chunk_sizes == [550]
        finally:
            conn.close()
        assert [r.conn_id for r in u.requests] == [1, 1]


def test_iter_stream_yields_timestamped_pieces():
    with up.Upstream() as u:
        u.route("/s", up.event_stream([(0, b"data: 1\n\n"), (0.2, b"data: 2\n\n")]))
        conn = http.connect(u.addr)
        try:
            conn.send(http.build_request("GET", "/s"))
            head = conn.read_head()
            pieces = list(http.iter_stream(conn, head, 3))
        finally:
            conn.close()
        assert [d for _, d in pieces] == [b"data: 1\n\n", b"data: 2\n\n"]
        assert pieces[1][0] - pieces[0][0] >= 0.15
