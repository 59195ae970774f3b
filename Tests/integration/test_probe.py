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

nginx is looked up on PATH and in /usr/sbin; if it is missing the suite
tries `apt-get install nginx` (as root) and skips these tests, with the
reason shown by -ra, only if that is impossible.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zlib

import pytest

from harness import proxy as proxy_mod
from harness.upstream import event_stream, response

# Every test runs the sse-keepalive binary (the probe is a subcommand).
pytestmark = pytest.mark.proxy_only

PROBE_TIMEOUT = 20.0  # hard cap on one probe run (its --duration is far shorter)


# --- running the probe --------------------------------------------------------

def run_probe(url: str, *args: str, timeout: float = PROBE_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([proxy_mod.binary_path(), "probe", url, *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def probe_json(url: str, duration: str, *args: str) -> tuple[int, dict]:
    p = run_probe(url, "--duration", duration, "--json", "--quiet", *args)
    assert p.stdout.count("\n") == 1, f"--json prints one line; got:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p.returncode, json.loads(p.stdout)


def codes(report: dict, severity: str | None = None) -> list[str]:
    return [f["code"] for f in report["findings"] if severity is None or f["severity"] == severity]


def message(report: dict, code: str) -> str:
    return next(f["message"] for f in report["findings"] if f["code"] == code)


def url_of(addr, path: str) -> str:
    host, port = addr
    return f"http://{host}:{port}{path}"


# --- nginx --------------------------------------------------------------------

def _find_nginx() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _install_nginx() -> str:
    """apt-get install nginx; returns why it failed ("" on success)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root or no apt-get"
    # The per-test SIGALRM guard must not fire in the middle of apt-get.
    remaining = signal.setitimer(signal.ITIMER_REAL, 0)[0]
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", "nginx"]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        return "" if p.returncode == 0 else f"apt-get install nginx failed: {p.stderr.strip()[-300:]}"
    except (OSError, subprocess.SubprocessError) as e:
        return f"apt-get install nginx failed: {e}"
    finally:
        if remaining:
            signal.setitimer(signal.ITIMER_REAL, remaining)


@pytest.fixture(scope="module")
def nginx_binary():
    path = _find_nginx()
    if not path:
        why = _install_nginx()
        path = _find_nginx()
        if not path:
            pytest.skip(f"NGINX NOT AVAILABLE: the probe's nginx tests did not run ({why})")
    return path


NGINX_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
{user}
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{directives}
        }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground with a generated config, on a loopback port."""

    def __init__(self, binary: str, upstream: str, directives: list[str]):
        self.prefix = tempfile.mkdtemp(prefix="ssek-nginx-")
        self.port = proxy_mod.free_port()
        conf = NGINX_CONF.format(
            prefix=self.prefix, port=self.port, upstream=upstream,
            user="user root;" if os.geteuid() == 0 else "",
            directives="\n".join(f"            {d};" for d in directives))
        self.conf_path = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        self.error_log = os.path.join(self.prefix, "error.log")
        self.proc = subprocess.Popen([binary, "-p", self.prefix + "/", "-c", self.conf_path, "-e", self.error_log,
                                      "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.proc.stderr.read().decode()}"
                                     f"\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise AssertionError(f"nginx not listening within 5 s:\n{self.log()}")

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def log(self) -> str:
        try:
            with open(self.error_log) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.prefix, ignore_errors=True)


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
    assert r["response"]["cache_control"] == "no-cache"
    assert "comments (heartbeats) already arrive" in r["recommendation"]["reason"]


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

def test_gzip_encoded_stream_is_flagged(upstream):
    def gzipped(req):
        z = zlib.compressobj(wbits=31)  # gzip container
        pieces = [(0, z.compress(b"data: one\n\n") + z.flush(zlib.Z_SYNC_FLUSH)),
                  (0.2, z.compress(b"data: two\n\n") + z.flush(zlib.Z_SYNC_FLUSH))]
        return event_stream(pieces, headers=[("Content-Encoding", "gzip"), ("Cache-Control", "no-cache")], end="hang")

    upstream.route("/events", gzipped)
    rc, r = probe_json(url_of(upstream.addr, "/events"), "1s")
    assert rc == 1
    assert r["response"]["content_encoding"] == "gzip"
    assert "content_encoding" in codes(r, "problem")
    assert message(r, "content_encoding").startswith("Content-Encoding: gzip on the stream")
    assert r["timeline"]["payload_parsed"] is False and r["timeline"]["payload_bytes"] > 0
    assert r["end"]["reason"] == "duration_reached"


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

    p = run_probe("https://127.0.0.1:1/events")
    assert p.returncode == 1 and p.stdout == ""
    assert "https is not supported by probe; point it at the plain-HTTP side or use a local port-forward" in p.stderr

    p = run_probe("http://127.0.0.1:1/events", "--duration", "5 minutes")
    assert p.returncode == 1 and "--duration" in p.stderr
