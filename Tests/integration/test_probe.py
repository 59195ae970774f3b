"""`sse-keepalive probe` against real local setups (issue 8).

A scripted backend (harness.upstream), a real nginx from Debian in front of
it (started per test from a generated config under a temp prefix, loopback
only), and optionally the sidecar between the two:

  (a) the backend goes quiet behind nginx with proxy_read_timeout 2s: the
      probe names an idle timeout within 1 s of 2 s and exits 1;
  (b) the sidecar (heartbeat 500ms) between nginx and the same backend: a
      healthy stream with heartbeats, exit 0;
  (c) a buffering nginx (proxy_buffering on, 1k buffers) and a backend
      trickling small timestamped events: buffering is flagged (by send
      times, and by bursts when the events carry no timestamps);
  (d) a gzip-encoded stream: flagged.

nginx only holds partial buffers when the upstream body has no length
framing (close-delimited): for a chunked upstream body it forwards each
chunk as it parses it, even with proxy_buffering on. So the buffering
backend here answers close-delimited, as many legacy SSE apps do.

nginx comes from Debian (debian_packages.ensure_debian_package installs it
when missing, or skips loudly). The verdicts for other paths (held
responses, HAProxy, lifetime limits, compression, https) are in
test_probe_paths.py and test_probe_tls.py.
"""
from __future__ import annotations

import re
import time
import zlib

import pytest

from debian_packages import ensure_debian_package
from harness import proxy as proxy_mod
from harness.probing import Nginx, codes, finding, message, probe_json, run_probe, url_of
from harness.upstream import event_stream, response

# Every test runs the sse-keepalive binary (the probe is a subcommand).
pytestmark = pytest.mark.proxy_only


# --- nginx --------------------------------------------------------------------

@pytest.fixture(scope="module")
def nginx_binary():
    return ensure_debian_package("nginx", "nginx", candidates=["/usr/sbin/nginx"])


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


STREAMING = ["proxy_buffering off"]
BUFFERING = ["proxy_buffering on", "proxy_buffer_size 1k", "proxy_buffers 4 1k", "proxy_busy_buffers_size 1k",
             "proxy_max_temp_file_size 0", "proxy_read_timeout 30s"]


def quiet_backend(req):
    """Two events, then nothing (the connection stays open)."""
    return event_stream([(0, b"retry: 5000\n\n"), (0.1, b"id: 1\ndata: one\n\n"), (0.1, b"id: 2\ndata: two\n\n")],
                        headers=[("Cache-Control", "no-cache")], end="hang")


# --- (a) idle timeout behind nginx ---------------------------------------------

def test_idle_timeout_behind_nginx_is_measured(upstream, start_nginx):
    upstream.route("/events", quiet_backend)
    nginx = start_nginx(upstream.config_addr, "proxy_read_timeout 2s", *STREAMING)
    rc, r = probe_json(url_of(nginx.addr, "/events"), "10s")
    assert rc == 1, r
    assert not r["healthy"]
    assert r["end"]["reason"] in ("server_closed", "reset", "response_complete"), r["end"]
    assert r["idle_timeout_s"] is not None, r["findings"]
    assert abs(r["idle_timeout_s"] - 2.0) <= 1.0, r["idle_timeout_s"]
    assert re.fullmatch(r"(closed|reset) after (\d+\.\d) s of silence: an idle timeout of about \2 s on the path",
                        message(r, "idle_timeout")), r["findings"]
    assert r["end"]["at_s"] < 5.0
    assert r["timeline"]["events"] == 2 and r["response"]["retry_ms"] == 5000
    assert r["response"]["event_stream"] and r["response"]["status"] == 200
    assert r["recommendation"]["heartbeat"] == "1s", r["recommendation"]
    assert "interval: 1s" in r["recommendation"]["config"]


# --- (b) the sidecar between nginx and the backend -----------------------------

def test_sidecar_behind_nginx_keeps_the_stream_healthy(upstream, start_proxy, start_nginx):
    upstream.route("/events", quiet_backend)
    sidecar = start_proxy(proxy_mod.base_config(upstream.config_addr, heartbeat={"interval": "500ms"}))
    host, port = sidecar.addr
    nginx = start_nginx(f"{host}:{port}", "proxy_read_timeout 2s", *STREAMING)
    rc, r = probe_json(url_of(nginx.addr, "/events"), "4s")
    assert rc == 0, r["findings"]
    assert r["healthy"] and r["exit_status"] == 0
    assert r["end"]["reason"] == "duration_reached"
    assert r["idle_timeout_s"] is None
    assert codes(r, "problem") == []
    assert r["timeline"]["events"] == 2
    assert r["timeline"]["comments"] >= 5, r["timeline"]
    heartbeats = [m for m in r["messages"] if m["kind"] == "comment"]
    assert {m["text"] for m in heartbeats} == {"heartbeat"}
    assert r["timeline"]["gaps"]["max_s"] < 1.0, r["timeline"]["gaps"]
    assert r["timeline"]["longest_silence_s"] < 1.0
    assert r["response"]["cache_control"] == "no-cache, no-transform"
    assert "comments (heartbeats) already arrive" in r["recommendation"]["reason"]
    # Never raised beyond what the path was seen to carry (nginx's documented 60 s would allow 15 s).
    assert r["recommendation"]["heartbeat"] == "500ms", r["recommendation"]
    assert r["observed_heartbeat_s"] == pytest.approx(0.5, abs=0.1)
    assert [h["name"] for h in r["intermediaries"]] == ["nginx"]


# --- (c) buffering nginx -------------------------------------------------------

def trickle(count: int, interval: float, stamped: bool):
    """Close-delimited stream: `count` events of ~100 bytes, one every `interval` s;
    with `stamped`, each carries its planned send time in epoch ms."""

    def behaviour(req):
        t0 = int(time.time() * 1000)
        pad = "x" * 60
        pieces = []
        for i in range(count):
            body = f'{{"ts":{t0 + int(i * interval * 1000)},"seq":{i},"pad":"{pad}"}}' if stamped \
                else f'{{"kind":"tick","pad":"{pad}{pad[:20]}"}}'
            pieces.append((interval if i else 0, f"data: {body}\n\n".encode()))
        return event_stream(pieces, framing="close", headers=[("Cache-Control", "no-cache")], end="hang")

    return behaviour


def test_buffering_nginx_is_flagged_by_send_times(upstream, start_nginx):
    upstream.route("/events", trickle(count=60, interval=0.1, stamped=True))
    nginx = start_nginx(upstream.config_addr, *BUFFERING)
    rc, r = probe_json(url_of(nginx.addr, "/events"), "3500ms")
    assert rc == 1, r["findings"]
    b = r["buffering"]
    assert b["detected"] and b["method"] == "timestamps", b
    assert b["send_time"] == {"source": "data", "index": 0, "kind": "epoch milliseconds"}
    assert b["max_delay_s"] >= 0.7, b
    assert message(r, "buffering").startswith("events arrive in bursts: something on the path buffers the stream")
    assert r["timeline"]["events"] >= 10


def test_buffering_nginx_is_flagged_by_bursts(upstream, start_nginx):
    upstream.route("/events", trickle(count=60, interval=0.1, stamped=False))
    nginx = start_nginx(upstream.config_addr, *BUFFERING)
    rc, r = probe_json(url_of(nginx.addr, "/events"), "4500ms")
    assert rc == 1, r["findings"]
    b = r["buffering"]
    assert b["send_time"] is None
    assert b["detected"] and b["method"] == "bursts", b
    assert len(b["bursts"]) >= 2 and all(x["events"] >= 3 and x["gap_before_s"] >= 0.5 for x in b["bursts"])
    # Bursts carry about one of nginx's 1k buffers at a time (wire bytes, chunk framing included).
    assert 500 <= b["burst_bytes"] <= 8192, b["burst_bytes"]
    assert "the bursts carry about" in message(r, "buffering")
    assert "buffering" in codes(r, "problem")


def test_unbuffered_nginx_is_not_flagged(upstream, start_nginx):
    """Control for (c): the same trickle through a streaming nginx."""
    upstream.route("/events", trickle(count=30, interval=0.1, stamped=True))
    nginx = start_nginx(upstream.config_addr, *STREAMING)
    rc, r = probe_json(url_of(nginx.addr, "/events"), "2s")
    assert r["buffering"]["send_time"] is not None
    assert not r["buffering"]["detected"], r["buffering"]
    assert rc == 0, r["findings"]


# --- (d) gzip ------------------------------------------------------------------

@pytest.mark.parametrize("coding,wbits", [("gzip", 31), ("deflate", 15), ("deflate", -15)])
def test_compressed_stream_is_decoded_and_counted(upstream, coding, wbits):
    """gzip, zlib-wrapped deflate and raw deflate: decoded, events counted,
    flagged as a note (this path did not hold the events), no-transform reported."""
    def compressed(req):
        z = zlib.compressobj(wbits=wbits)
        pieces = [(0, z.compress(b"data: one\n\n") + z.flush(zlib.Z_SYNC_FLUSH)),
                  (0.2, z.compress(b"id: 2\ndata: two\n\n") + z.flush(zlib.Z_SYNC_FLUSH)),
                  (0.2, z.compress(b":ping\n\n") + z.flush(zlib.Z_SYNC_FLUSH))]
        return event_stream(pieces, headers=[("Content-Encoding", coding), ("Cache-Control", "no-cache")], end="hang")

    upstream.route("/events", compressed)
    rc, r = probe_json(url_of(upstream.addr, "/events"), "1s")
    assert rc == 0, r["findings"]
    assert r["response"]["content_encoding"] == coding and r["response"]["no_transform"] is False
    f = finding(r, "content_encoding")
    assert f["severity"] == "note"
    assert f["message"].startswith(f"Content-Encoding: {coding} on the stream")
    assert f"decoded {coding}:" in f["evidence"] and "2 events counted" in f["evidence"], f
    assert "Cache-Control has no no-transform" in f["evidence"]
    t = r["timeline"]
    assert t["payload_parsed"] is True and t["decoded"] == coding and t["events"] == 2 and t["comments"] == 1, t
    assert t["decoded_bytes"] == len(b"data: one\n\nid: 2\ndata: two\n\n:ping\n\n")
    assert [m["text"] for m in r["messages"]] == ["one", "two", "ping"]
    assert r["end"]["reason"] == "duration_reached"


def test_undecodable_coding_is_named(upstream):
    upstream.route("/events", event_stream([(0, b"\x0b\x05\x80data: x\n\n\x03")],
                                           headers=[("Content-Encoding", "br"), ("Cache-Control", "no-cache, no-transform")],
                                           end="hang"))
    rc, r = probe_json(url_of(upstream.addr, "/events"), "600ms")
    assert r["timeline"]["payload_parsed"] is False and r["timeline"]["decoded"] is None
    f = finding(r, "content_encoding")
    assert "the probe cannot decode br, so events were not counted" in f["message"]
    assert f["evidence"] == "Cache-Control has no-transform" and r["response"]["no_transform"] is True


# --- the command line -------------------------------------------------------------

def test_text_report_and_progress_line(upstream):
    upstream.route("/events", event_stream([(0, b"data: a\n\n"), (0.1, b":ping\n\n"), (1.2, b"")],
                                           framing="close", headers=[("Cache-Control", "no-cache")]))
    p = run_probe(url_of(upstream.addr, "/events"), "--duration", "5s")
    assert p.returncode == 1, p.stdout
    out = p.stdout
    for needle in ("sse-keepalive probe http://127.0.0.1:", "\nResponse\n", "\nTimeline (seconds since start)\n",
                   "\nDiagnosis\n", "\nRecommendation\n", "    heartbeat:\n", "not healthy (exit 1)"):
        assert needle in out, out
    m = re.search(r"closed after (\d+\.\d) s of silence: an idle timeout of about \1 s on the path", out)
    assert m and abs(float(m.group(1)) - 1.2) <= 0.3, out
    assert re.search(r"probe 0\.\d s  events \d+  comments \d+  last gap", p.stderr), p.stderr


def test_request_is_eventsource_like_and_a_healthy_stream_exits_0(upstream):
    upstream.route("/events", event_stream([(0, b"data: a\n\n"), (0.2, b"data: b\n\n")],
                                           headers=[("Cache-Control", "no-cache")], end="hang"))
    rc, r = probe_json(url_of(upstream.addr, "/events?x=1"), "800ms",
                       "--header", "Authorization: Bearer s3cret", "--header", "X-Extra:1", "--last-event-id", "41")
    assert rc == 0, r["findings"]
    assert r["healthy"] and r["end"]["reason"] == "duration_reached" and 0.75 <= r["end"]["at_s"] <= 1.5
    req = upstream.requests_for("/events")[0]
    assert (req.method, req.target, req.version) == ("GET", "/events?x=1", "HTTP/1.1")
    assert req.get("Accept") == "text/event-stream"
    assert req.get("Cache-Control") == "no-cache"
    assert req.get("Last-Event-ID") == "41"
    assert req.get("Authorization") == "Bearer s3cret" and req.get("X-Extra") == "1"
    assert req.get("Host") == f"127.0.0.1:{upstream.addr[1]}"


def test_not_a_stream_and_unreachable_and_https(upstream):
    upstream.route("/missing", response(404, [("Content-Type", "text/plain")], b"no such stream\n"))
    rc, r = probe_json(url_of(upstream.addr, "/missing"), "5s")
    assert rc == 1 and r["end"]["reason"] == "not_a_stream" and r["end"]["at_s"] < 2
    assert "status" in codes(r) and r["recommendation"] is None

    port = proxy_mod.free_port()
    rc, r = probe_json(f"http://127.0.0.1:{port}/events", "5s")
    assert rc == 1 and r["end"]["reason"] == "connect_failed" and r["response"] is None

    p = run_probe("ftp://127.0.0.1:1/events")
    assert p.returncode == 1 and p.stdout == ""
    assert 'unsupported scheme "ftp": probe speaks http:// and https://' in p.stderr
    p = run_probe("http://127.0.0.1:1/events", "--insecure")
    assert p.returncode == 1 and "--insecure applies to https:// URLs only" in p.stderr

    p = run_probe("http://127.0.0.1:1/events", "--duration", "5 minutes")
    assert p.returncode == 1 and "--duration" in p.stderr
