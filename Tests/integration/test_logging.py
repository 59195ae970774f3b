"""Logs (issue 3; docs/behaviour.md "Logs" and "Query token", and the `log` keys of docs/configuration.md): tokens never
logged at any level, JSON lines, access-log fields and endings, `log.access`
and the `--log-level` override."""
import contextlib
import json
import re
import secrets
import signal
import time
from urllib.parse import quote

import pytest

from harness import client as http
from harness import upstream as up
from harness.ops import (access_entries, scrape, sighup, wait_access, wait_admin, wait_port, wait_until)
from harness.proxy import LEVELS, Proxy, base_config, free_port
from harness.streams import open_stream

pytestmark = pytest.mark.proxy_only

HB = b":heartbeat\n\n"


@pytest.fixture(autouse=True)
def _binary():
    from conftest import require_binary
    require_binary()


@contextlib.contextmanager
def own_proxy(config, **kwargs):
    """A proxy this test stops itself, so that its shutdown lines are checked too."""
    p = Proxy(config, **kwargs)
    try:
        yield p
    finally:
        p.stop()


def hanging_stream(seconds=20.0):
    return [up.send(up.head_bytes(200, [("Content-Type", "text/event-stream"),
                                        ("Transfer-Encoding", "chunked")])), up.hang(seconds)]


# --- 9. tokens never logged -----------------------------------------------------------

def token_forms(token: str) -> set[str]:
    """Every way the token could show up in a log line: as sent (raw), percent-
    encoded (upper/lower hex), every byte encoded, and its random core."""
    every = "".join(f"%{b:02X}" for b in token.encode())
    enc = quote(token, safe="")
    return {token, enc, enc.lower(), every, every.lower(), token[1:]}


@pytest.mark.timeout(25)
def test_tokens_never_appear_in_trace_logs_error_pages_or_metrics(upstream):
    hexes = [secrets.token_hex(10) for _ in range(10)]
    t_raw, t_enc, t_every, t_at, t_open, t_open_at, t_dup, t_dead, t_hdr, t_q = [f"T{h}" for h in hexes]
    t_enc = f"E{hexes[1]}/x+y.z~w=="  # a Bearer token that is percent-encoded in a query
    dead = free_port()
    admin = free_port()
    upstream.route("/tok/stream", up.event_stream([(0.1, b"data: hi\n\n")], end="hang"))
    cfg = base_config(upstream.config_addr, admin={"listen": f"127.0.0.1:{admin}"},
                      log={"level": "trace", "access": True}, routes=[
                          {"path": "/tok", "token": {}},
                          {"path": "/at", "token": {"query": "access_token"}},
                          {"path": "/dead", "token": {}, "upstream": f"127.0.0.1:{dead}"},
                      ])
    every_encoded = "".join(f"%{b:02X}" for b in t_every.encode())
    requests = [  # (target, extra headers, expected status, expected Authorization upstream or None)
        (f"/tok/stream?token={t_raw}&x=1", [("Accept", "text/event-stream")], 200, f"Bearer {t_raw}"),
        (f"/tok/plain?a=1&token={quote(t_enc, safe='')}", [], 200, f"Bearer {t_enc}"),
        (f"/tok/plain?token={every_encoded}", [], 200, f"Bearer {t_every}"),
        (f"/at/plain?access_token={t_at}&b=2", [], 200, f"Bearer {t_at}"),
        (f"/open/plain?token={t_open}", [], 200, None),
        (f"/open/plain?access_token={t_open_at}", [], 200, None),
        (f"/tok/plain?token={t_dup}&token={t_dup}x", [], 400, None),
        (f"/dead/x?token={t_dead}", [], 502, None),
        (f"/tok/plain?token={t_q}", [("Authorization", f"Bearer {t_hdr}")], 200, f"Bearer {t_hdr}"),
    ]
    all_tokens = [t_raw, t_enc, t_every, t_at, t_open, t_open_at, t_dup, t_dead, t_hdr, t_q]
    with own_proxy(cfg, log_level="trace") as p:
        wait_admin(p)
        pages = []
        for target, headers, status, _ in requests:
            if target.startswith("/tok/stream"):
                conn, head = open_stream(p.addr, target)
                body = http.read_stream(conn, head, 0.8)
                conn.close()
                assert head.status == 200 and HB in body.data and b"data: hi" in body.data, body.data
            else:
                resp = http.request(p.addr, "GET", target, headers)
                assert resp.status == status, (target, resp.head.raw, resp.body.data)
                if status != 200:  # the proxy's own error pages (200s are the upstream's echo)
                    pages.append(resp.head.raw + resp.body.data)
        metrics = scrape(("127.0.0.1", admin)).text
        for target in (f"/nope?token={t_raw}", f"/metrics/x?access_token={t_at}"):
            resp = http.request(("127.0.0.1", admin), "GET", target)
            assert resp.status == 404, resp.head.raw
            pages.append(resp.head.raw + resp.body.data)
        assert wait_until(lambda: len(access_entries(p)) >= len(requests), 3), \
            f"{len(access_entries(p))} access lines for {len(requests)} requests"
        p.proc.send_signal(signal.SIGHUP)  # reload and shutdown lines are in the search too
        assert p.wait_for_log("configuration reloaded", timeout=3)
        assert p.stop() == 0
        lines = [l.text for l in p.lines]

    # the token routes sent the header upstream; the others forwarded the URL untouched
    for target, _, status, auth in requests:
        path = target.split("?")[0]
        if auth:
            reqs = [r for r in upstream.requests if r.path == path and r.get("authorization") == auth]
            assert reqs, f"upstream never saw Authorization {auth!r} for {path}: " \
                         f"{[(r.target, r.get('authorization')) for r in upstream.requests]}"
            assert all("token=" not in (r.query or "") for r in reqs), [r.target for r in reqs]
    assert {r.target for r in upstream.requests_for("/open")} == \
        {f"/open/plain?token={t_open}", f"/open/plain?access_token={t_open_at}"}

    assert any(re.match(r"trace ", l) for l in lines), "no trace lines: not a trace-level run"
    for token in all_tokens:
        for form in token_forms(token):
            leaks = [l for l in lines if form in l]
            assert not leaks, f"token form {form!r} logged:\n" + "\n".join(leaks[:5])
            assert form not in metrics, f"token form {form!r} in /metrics"
            for page in pages:
                assert form.encode() not in page, f"token form {form!r} in a response: {page[:300]!r}"

    # access lines show the parameter as [REDACTED], the rest of the target as sent
    targets = {e["target"] for e in access_entries(p)}
    for expected in ("/tok/stream?token=[REDACTED]&x=1", "/tok/plain?a=1&token=[REDACTED]",
                     "/at/plain?access_token=[REDACTED]&b=2", "/open/plain?token=[REDACTED]",
                     "/open/plain?access_token=[REDACTED]", "/dead/x?token=[REDACTED]"):
        assert expected in targets, f"{expected!r} not among access targets {sorted(targets)}"
    for line in lines:
        for m in re.finditer(r"(?:access_token|token)=([^&\s\"]*)", line):
            assert m.group(1) in ("[REDACTED]", ""), line


# --- 10. JSON lines ---------------------------------------------------------------------

ISO_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")
ACCESS_KEYS = {"ts", "level", "msg", "bytes_sent", "client", "duration_ms", "end", "heartbeats", "method",
               "route", "status", "target"}
ACCESS_TYPES = {"bytes_sent": int, "duration_ms": int, "heartbeats": int, "status": int,
                "client": str, "end": str, "method": str, "route": str, "target": str}


@pytest.mark.timeout(20)
def test_json_format_every_line_is_an_object_with_ts_level_msg_first(upstream):
    upstream.route("/events", up.event_stream([(0.8, b"data: one\n\n")]))
    dead = free_port()
    cfg = base_config(upstream.config_addr, log={"level": "debug", "format": "json"},
                      routes=[{"path": "/events", "heartbeat": "300ms"},
                              {"path": "/dead", "upstream": f"127.0.0.1:{dead}"}])
    with own_proxy(cfg) as p:
        conn = http.connect(p.addr)
        client_port = conn.sock.getsockname()[1]
        resp = conn.request("GET", "/plain?q=1")
        conn.close()
        assert resp.status == 200
        conn, head = open_stream(p.addr, "/events/x")
        body = conn.read_body(head, timeout=5)
        conn.close()
        assert body.complete and HB in body.data
        assert http.request(p.addr, "GET", "/dead/x").status == 502
        assert http.request(p.addr, "GET", "/plain?token=zzJsonSecretzz&b=1").status == 200
        http.request(p.addr, "GET", "/bad\x01path")  # a 400 with a control character to escape
        assert wait_until(lambda: sum('"msg":"access"' in l.text for l in p.lines) >= 3, 3), p.log_text()
        assert p.stop() == 0
        lines = list(p.lines)

    assert len(lines) >= 8
    access = []
    for l in lines:
        try:
            pairs = json.loads(l.text, object_pairs_hook=lambda kv: kv)
        except ValueError:
            pytest.fail(f"not a JSON line: {l.text!r}")
        assert isinstance(pairs, list), l.text
        keys = [k for k, _ in pairs]
        assert keys[:3] == ["ts", "level", "msg"], f"first keys {keys[:3]}: {l.text}"
        assert len(set(keys)) == len(keys), f"duplicate keys: {l.text}"
        obj = dict(pairs)
        assert isinstance(obj["ts"], str) and ISO_TS.match(obj["ts"]), obj["ts"]
        assert obj["level"] in LEVELS, obj["level"]
        assert isinstance(obj["msg"], str) and obj["msg"], l.text
        if obj["msg"] == "access":
            access.append(obj)

    by_target = {a["target"]: a for a in access}
    assert set(by_target) >= {"/plain?q=1", "/events/x", "/dead/x"}, sorted(by_target)
    for a in access:
        assert set(a) == ACCESS_KEYS, f"access keys {sorted(a)}"
        for k, t in ACCESS_TYPES.items():
            assert type(a[k]) is t, f"{k}={a[k]!r} is {type(a[k]).__name__}, expected {t.__name__}"
        assert a["level"] == "info"
        assert re.fullmatch(r"127\.0\.0\.1:\d+", a["client"]), a["client"]
    plain, stream, bad = by_target["/plain?q=1"], by_target["/events/x"], by_target["/dead/x"]
    assert plain["method"] == stream["method"] == bad["method"] == "GET"
    assert plain["client"] == f"127.0.0.1:{client_port}"
    assert (plain["status"], plain["end"], plain["route"], plain["heartbeats"]) == (200, "complete", "default", 0)
    assert plain["bytes_sent"] == len(resp.head.raw) + len(resp.body.data), plain
    assert (stream["status"], stream["end"], stream["route"]) == (200, "complete", "/events")
    assert stream["heartbeats"] == body.data.count(HB) >= 2, stream
    assert 700 <= stream["duration_ms"] <= 3000, stream
    assert (bad["status"], bad["end"], bad["route"]) == (502, "error", "/dead")
    assert "/plain?token=[REDACTED]&b=1" in by_target, sorted(by_target)
    assert not [l.text for l in lines if "zzJsonSecretzz" in l.text]


# --- 11. access-log fields and endings ----------------------------------------------------

@pytest.mark.timeout(25)
def test_access_log_fields_for_each_way_a_request_ends(upstream, start_proxy):
    dead = free_port()
    upstream.route("/events", hanging_stream())
    upstream.route("/cut", up.event_stream([(0, b"data: a\n\n"), (0.3, b"data: b\n")], end="reset"))
    upstream.route("/silent", [up.hang(10)])
    p = start_proxy(base_config(upstream.config_addr, log={"level": "info", "access": True},
                                timeouts={"connect": "1s", "response": "1s"}, routes=[
                                    {"path": "/events", "heartbeat": "300ms"},
                                    {"path": "/dead", "upstream": f"127.0.0.1:{dead}"},
                                ]), log_level=None)

    # complete: an ordinary request, bytes = exactly what the client received
    conn = http.connect(p.addr)
    client_port = conn.sock.getsockname()[1]
    resp = conn.request("POST", "/plain?case=complete", body=b"hello")
    conn.close()
    assert resp.status == 200
    e = wait_access(p, "/plain?case=complete")
    assert e, f"no access line:\n{p.log_text()}"
    assert e["line"].level == "info"
    assert (e["client"], e["method"], e["status"], e["route"], e["heartbeats"], e["end"]) == \
        (f"127.0.0.1:{client_port}", "POST", 200, "default", 0, "complete"), e
    assert e["bytes"] == len(resp.head.raw) + len(resp.body.data), (e["bytes"], resp.head.raw)
    assert e["ms"] < 1000

    # client_closed: the client leaves an open event stream after some heartbeats
    conn, head = open_stream(p.addr, "/events/1?case=client")
    got = http.read_stream(conn, head, 2, until=lambda d: d.count(HB) >= 2)
    conn.close()
    e = wait_access(p, "/events/1?case=client")
    assert e, f"no access line:\n{p.log_text()}"
    assert (e["status"], e["route"], e["end"]) == (200, "/events", "client_closed"), e
    assert e["heartbeats"] == got.data.count(HB) >= 2, (e, got.data)
    assert e["bytes"] >= len(head.raw) + len(got.data), e
    assert 500 <= e["ms"] <= 2500, e

    # upstream_closed: the upstream resets in the middle of the stream
    conn, head = open_stream(p.addr, "/cut?case=upstream")
    body = conn.read_body(head, timeout=5, timeout_ok=True)
    conn.close()
    assert not body.complete
    e = wait_access(p, "/cut?case=upstream")
    assert e, f"no access line:\n{p.log_text()}"
    assert (e["status"], e["route"], e["end"]) == (200, "default", "upstream_closed"), e

    # error: the upstream is unreachable -> 502
    resp = http.request(p.addr, "GET", "/dead/x?case=502")
    assert resp.status == 502
    e = wait_access(p, "/dead/x?case=502")
    assert e, f"no access line:\n{p.log_text()}"
    assert (e["status"], e["route"], e["end"], e["heartbeats"]) == (502, "/dead", "error", 0), e
    assert e["bytes"] == len(resp.head.raw) + len(resp.body.data), e

    # timeout: the upstream says nothing within timeouts.response -> 504
    resp = http.request(p.addr, "GET", "/silent?case=504", timeout=6)
    assert resp.status == 504
    e = wait_access(p, "/silent?case=504")
    assert e, f"no access line:\n{p.log_text()}"
    assert (e["status"], e["route"], e["end"]) == (504, "default", "timeout"), e
    assert 800 <= e["ms"] <= 3000, e

    # one line per request, nothing for the ones not made
    entries = access_entries(p)
    assert sorted(x["target"] for x in entries) == sorted([
        "/plain?case=complete", "/events/1?case=client", "/cut?case=upstream", "/dead/x?case=502",
        "/silent?case=504"]), [x["line"].text for x in entries]


@pytest.mark.timeout(10)
def test_pipelined_requests_get_one_access_line_each_in_order(upstream, start_proxy):
    p = start_proxy(base_config(upstream.config_addr, log={"level": "info", "access": True}), log_level=None)
    conn = http.connect(p.addr)
    try:
        conn.send(b"".join(http.build_request("GET", f"/pipe/{i}") for i in range(3)))
        for i in range(3):
            head = conn.read_head()
            conn.read_body(head)
            assert head.status == 200
    finally:
        conn.close()
    assert wait_until(lambda: len(access_entries(p)) >= 3, 2), p.log_text()
    time.sleep(0.2)
    entries = access_entries(p)
    assert [e["target"] for e in entries] == ["/pipe/0", "/pipe/1", "/pipe/2"], [e["line"].text for e in entries]
    assert all(e["end"] == "complete" and e["status"] == 200 for e in entries)
    assert len({e["client"] for e in entries}) == 1


# --- 12. access off, --log-level override ------------------------------------------------

@pytest.mark.timeout(15)
def test_access_false_writes_no_access_lines(upstream, start_proxy):
    upstream.route("/events", up.event_stream([(0.4, b"data: x\n\n")]))
    p = start_proxy(base_config(upstream.config_addr, log={"level": "debug", "access": False}), log_level=None)
    assert http.request(p.addr, "GET", "/plain").status == 200
    conn, head = open_stream(p.addr, "/events")
    conn.read_body(head, timeout=3)
    conn.close()
    assert http.request(p.addr, "GET", "/gone?token=abc").status == 200
    # the debug line of the last request proves its logging happened
    assert p.wait_for_log(r"GET /gone", timeout=2), p.log_text()
    time.sleep(0.3)
    assert not access_entries(p), [e["line"].text for e in access_entries(p)]
    assert not [l.text for l in p.lines if re.match(r"\S+ \S+ access ", l.text)]


@pytest.mark.timeout(15)
def test_log_level_flag_overrides_the_file_also_after_a_reload(upstream):
    dead = free_port()
    port = free_port()
    cfg = base_config(upstream.config_addr, listen_port=port, log={"level": "debug", "access": True},
                      routes=[{"path": "/dead", "upstream": f"127.0.0.1:{dead}"}])
    with own_proxy(cfg, log_level="warning", wait_ready=False) as p:
        addr = ("127.0.0.1", port)
        assert wait_port(addr), f"proxy not listening:\n{p.log_text()}"
        assert http.request(addr, "GET", "/plain").status == 200
        assert http.request(addr, "GET", "/dead/1").status == 502
        assert p.wait_for_log(rf"127\.0\.0\.1:{dead}", timeout=2, level="error"), \
            f"no error line for the unreachable upstream (logging works at all?):\n{p.log_text()}"
        # a reload of a file that says debug keeps the command line's level
        p.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert http.request(addr, "GET", "/plain").status == 200
        assert http.request(addr, "GET", "/dead/2").status == 502
        assert wait_until(lambda: len(p.lines_at("error")) >= 2, 2), p.log_text()
        time.sleep(0.2)
        quiet = [l.text for l in p.lines if l.level in ("trace", "debug", "info", "notice")]
        assert not quiet, "lines below warning with --log-level warning:\n" + "\n".join(quiet[:10])
        assert all(l.level in ("warning", "error", "critical") for l in p.lines), p.log_text()


@pytest.mark.timeout(15)
def test_reload_applies_the_file_log_level_and_access_setting(upstream, start_proxy):
    port = free_port()

    def cfg(level, access):
        return base_config(upstream.config_addr, listen_port=port, log={"level": level, "access": access})

    p = start_proxy(cfg("info", True), log_level=None)
    assert http.request(p.addr, "GET", "/one").status == 200
    assert wait_access(p, "/one"), p.log_text()
    assert not p.lines_at("debug"), "debug lines with log.level info"

    assert sighup(p, cfg("debug", False)), p.log_text()
    assert http.request(p.addr, "GET", "/two").status == 200
    assert p.wait_for_log(r"GET /two", timeout=2, level="debug"), \
        f"no debug line after reloading to log.level debug:\n{p.log_text()}"
    time.sleep(0.3)
    assert not wait_access(p, "/two", timeout=0.1), "access line after reloading to log.access false"

    assert sighup(p, cfg("info", True)), p.log_text()
    n_debug = len(p.lines_at("debug"))
    assert http.request(p.addr, "GET", "/three").status == 200
    assert wait_access(p, "/three"), "no access line after reloading to log.access true"
    time.sleep(0.2)
    assert len(p.lines_at("debug")) == n_debug, [l.text for l in p.lines_at("debug")][n_debug:]
