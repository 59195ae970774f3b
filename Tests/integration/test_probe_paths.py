"""`sse-keepalive probe` verdicts against real intermediaries (issue 13).

Each test starts a scripted origin (harness.upstream) and, where named, a
real nginx or HAProxy from Debian in front of it, runs the probe with
--json, and asserts the verdict, the measured timeout (within 1 s of the
configured one), the recommended interval and the exit status:

- nginx with its default buffering and a short proxy_read_timeout, origin
  sends its head and `retry:` at once and then nothing: the whole response
  is held, then cut ("held_response"), recommendation below the timeout;
- the same with gzip on event streams: also decoded and counted;
- nginx with proxy_buffering off and gzip on: compression is a note, events
  arrive as sent, no "late" verdict;
- HAProxy with a short `timeout server`: an idle timeout;
- an origin that ends streams after a fixed lifetime while sending: a
  lifetime limit, not an idle timeout;
- head and first event together, seconds after connecting: head held.
- the sidecar (heartbeats every 500 ms) behind an nginx with a 2 s read
  timeout: the recommendation stays at the observed 500 ms.
"""
from __future__ import annotations

import pytest

from debian_packages import ensure_debian_package
from harness import proxy as proxy_mod
from harness.probing import HAProxy, Nginx, codes, finding, probe_json, url_of
from harness.upstream import chunk, event_stream, hang, head_bytes, send, sleep

pytestmark = pytest.mark.proxy_only

SSE = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]


@pytest.fixture(scope="module")
def nginx_binary():
    return ensure_debian_package("nginx", "nginx", candidates=["/usr/sbin/nginx"])


@pytest.fixture(scope="module")
def haproxy_binary():
    return ensure_debian_package("haproxy", "haproxy", candidates=["/usr/sbin/haproxy"])


@pytest.fixture
def start_nginx(nginx_binary):
    started: list[Nginx] = []

    def start(upstream: str, *directives: str) -> Nginx:
        n = Nginx(nginx_binary, upstream, list(directives))
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


def head_and_retry_then_quiet(req):
    """What many legacy apps do: head and `retry:` at once, then nothing; the
    body is close-delimited (no chunked framing), so a buffering nginx holds
    it (for a chunked body nginx forwards each chunk as it parses it)."""
    return event_stream([(0, b"retry: 5000\n\n")], framing="close", headers=[("Cache-Control", "no-cache")], end="hang")


def assert_recommends(r: dict, heartbeat: str):
    rec = r["recommendation"]
    assert rec is not None and rec["heartbeat"] == heartbeat, rec
    assert f"interval: {heartbeat}\n" in rec["config"]


# --- nginx defaults: the whole response held, then cut ----------------------------

def test_buffering_nginx_with_short_read_timeout_holds_then_cuts(upstream, start_nginx):
    upstream.route("/events", head_and_retry_then_quiet)
    nginx = start_nginx(upstream.config_addr, "proxy_read_timeout 3s")
    rc, r = probe_json(url_of(nginx.addr, "/events"), "8s")
    assert rc == 1 and not r["healthy"]
    assert r["held_response"] is True
    assert "held_response" in codes(r, "problem"), r["findings"]
    assert "idle_timeout" not in codes(r) and "stream_ended" not in codes(r) and "lifetime_limit" not in codes(r)
    assert abs(r["idle_timeout_s"] - 3.0) <= 1.0, r["idle_timeout_s"]
    f = finding(r, "held_response")
    assert f["message"].startswith("nothing, not even the response head, for ")
    assert "a buffering hop held the whole response, and an idle timeout of about" in f["message"]
    assert "first byte at" in f["evidence"] and "the close within" in f["evidence"], f
    t = r["timeline"]
    assert t["first_byte_s"] >= 2.0 and r["end"]["at_s"] - t["first_byte_s"] <= 0.25, (t, r["end"])
    # Below 3 s with margin, never the 15 s default; and buffering must go too.
    assert_recommends(r, "1s")
    assert "turn its buffering off too" in r["recommendation"]["reason"]
    assert [h["name"] for h in r["intermediaries"]] == ["nginx"]


def test_buffering_nginx_with_gzip_is_held_and_decoded(upstream, start_nginx):
    upstream.route("/events", lambda req: event_stream(
        [(0, b"retry: 5000\n\n"), (0.1, b"data: " + b"x" * 300 + b"\n\n")], framing="close",
        headers=[("Cache-Control", "no-cache")], end="hang"))
    nginx = start_nginx(upstream.config_addr, "proxy_read_timeout 3s", "gzip on", "gzip_types text/event-stream",
                        "gzip_min_length 1")
    rc, r = probe_json(url_of(nginx.addr, "/events"), "8s")
    assert rc == 1
    assert r["response"]["content_encoding"] == "gzip"
    # nginx drops what it held when the timeout fires; what did arrive was decoded.
    assert r["timeline"]["decoded"] == "gzip" and r["timeline"]["payload_parsed"] is True, r["timeline"]
    assert r["held_response"] is True and abs(r["idle_timeout_s"] - 3.0) <= 1.0, r["findings"]
    assert finding(r, "content_encoding")["severity"] == "note"
    assert "idle_timeout" not in codes(r) and "stream_ended" not in codes(r)
    assert_recommends(r, "1s")


# --- nginx streaming with gzip: compression noted, not called late -----------------

def test_streaming_nginx_with_gzip_counts_events_without_a_late_verdict(upstream, start_nginx):
    upstream.route("/events", lambda req: event_stream(
        [(0.5 if i else 0, f"id: {i}\ndata: tick {i}\n\n".encode()) for i in range(6)], headers=[("Cache-Control", "no-cache")],
        end="hang"))
    nginx = start_nginx(upstream.config_addr, "proxy_buffering off", "gzip on", "gzip_types text/event-stream",
                        "gzip_min_length 1")
    rc, r = probe_json(url_of(nginx.addr, "/events"), "3500ms")
    assert r["response"]["content_encoding"] == "gzip"
    assert r["timeline"]["decoded"] == "gzip"
    assert r["timeline"]["events"] == 6, r["timeline"]
    gaps = r["timeline"]["gaps"]
    assert 0.3 <= gaps["median_s"] <= 0.7, gaps
    f = finding(r, "content_encoding")
    assert f["severity"] == "note" and "6 events counted" in f["evidence"], f
    assert "arrive late" not in f["message"]
    assert not r["buffering"]["detected"]
    assert codes(r, "problem") == [], r["findings"]
    assert rc == 0
    # nginx's documented 60 s proxy_read_timeout default bounds the recommendation.
    assert_recommends(r, "15s")
    assert "nginx's documented default proxy_read_timeout of 60 s" in r["recommendation"]["reason"]


# --- HAProxy: timeout server ---------------------------------------------------------

def test_haproxy_timeout_server_is_an_idle_timeout(upstream, haproxy_binary):
    upstream.route("/events", lambda req: event_stream(
        [(0, b"retry: 5000\n\n"), (0.1, b"data: one\n\n"), (0.3, b"data: two\n\n")], headers=[("Cache-Control", "no-cache")],
        end="hang"))
    hap = HAProxy(haproxy_binary, upstream.config_addr, ["timeout server 2s"])
    try:
        rc, r = probe_json(url_of(hap.addr, "/events"), "8s")
    finally:
        hap.stop()
    assert rc == 1
    assert "idle_timeout" in codes(r, "problem"), r["findings"]
    assert abs(r["idle_timeout_s"] - 2.0) <= 1.0, r["idle_timeout_s"]
    assert r["timeline"]["events"] == 2 and r["held_response"] is False
    assert_recommends(r, "1s")
    assert "measured on this path" in r["recommendation"]["reason"]


# --- an origin with a stream lifetime -----------------------------------------------

def test_stream_lifetime_limit_is_not_an_idle_timeout(upstream):
    events = [(0.2 if i else 0, f"data: {i}\n\n".encode()) for i in range(15)]  # 3 s of events, then close
    upstream.route("/events", lambda req: event_stream(events, framing="close", headers=[("Cache-Control", "no-cache")]))
    rc, r = probe_json(url_of(upstream.addr, "/events"), "8s")
    assert rc == 1
    assert "lifetime_limit" in codes(r, "problem"), r["findings"]
    assert r["idle_timeout_s"] is None
    assert abs(r["lifetime_limit_s"] - 2.8) <= 1.0, r["lifetime_limit_s"]
    assert "while bytes kept flowing" in finding(r, "lifetime_limit")["message"]
    assert r["timeline"]["events"] == 15
    assert "which no heartbeat prevents" in r["recommendation"]["reason"]
    assert_recommends(r, "15s")


# --- the head held until the first event ---------------------------------------------

def test_head_held_until_the_first_event(upstream):
    """The wire signature of a hop that holds the head until the body starts:
    head and first event in one read, 2 s after connecting."""
    head = head_bytes(200, SSE + [("Transfer-Encoding", "chunked")])
    upstream.route("/events", lambda req: [sleep(2.0), send(head + chunk(b"data: first\n\n")),
                                           sleep(0.3), send(chunk(b"data: second\n\n")), hang()])
    rc, r = probe_json(url_of(upstream.addr, "/events"), "3500ms")
    assert rc == 1, r["findings"]
    assert codes(r, "problem") == ["head_held"], r["findings"]
    assert abs(r["head_held_s"] - 2.0) <= 0.5
    f = finding(r, "head_held")
    assert "a hop holds the head until the body starts (Cloudflare does)" in f["message"]
    assert "heartbeat.on_open" in f["message"]
    assert r["end"]["reason"] == "duration_reached" and r["timeline"]["events"] == 2


# --- the sidecar already sends heartbeats ---------------------------------------------

def test_sidecar_heartbeats_are_not_raised_behind_a_short_timeout(upstream, start_proxy, start_nginx):
    upstream.route("/events", head_and_retry_then_quiet)
    sidecar = start_proxy(proxy_mod.base_config(upstream.config_addr, heartbeat={"interval": "1s"}))
    host, port = sidecar.addr
    nginx = start_nginx(f"{host}:{port}", "proxy_read_timeout 3s", "proxy_buffering off")
    rc, r = probe_json(url_of(nginx.addr, "/events"), "5s")
    assert rc == 0, r["findings"]
    assert r["timeline"]["comments"] >= 3
    assert abs(r["observed_heartbeat_s"] - 1.0) <= 0.2
    assert_recommends(r, "1s")
    assert "do not raise it beyond 1s" in r["recommendation"]["reason"], r["recommendation"]
