"""A real nginx (Debian's package) in front of the sidecar, running the
shipped nginx/sse-keepalive.conf with its ports and timeouts scaled down:

    raw-socket client -> nginx -> sse-keepalive -> scripted upstream

- events and heartbeats go through nginx as they are written (no buffering
  delay), and the payload is the upstream's plus heartbeats only;
- with `proxy_read_timeout 2s` and heartbeats every 500 ms, a stream whose
  upstream is quiet for 6 s (the "90-second quiet" scaled down) stays open
  and delivers the event that follows;
- controls: the same stream with nginx straight to the upstream, or through
  the sidecar with heartbeats off, is cut by nginx after ~2 s. These prove
  the survival test fails when the sidecar is removed or stops sending
  heartbeats.

nginx is installed with apt-get when missing (as root, or through sudo); the
tests skip with a loud message only when that is impossible.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from harness import client as http
from harness import sse
from harness import upstream as up
from harness.proxy import REPO_ROOT, base_config, free_port
from harness.streams import open_stream
from debian_packages import ensure_debian_package

pytestmark = pytest.mark.proxy_only

SHIPPED_CONF = os.path.join(REPO_ROOT, "nginx", "sse-keepalive.conf")
SSE_HEAD = [("Content-Type", "text/event-stream")]


@pytest.fixture(scope="module")
def nginx_bin():
    return ensure_debian_package("nginx", "nginx", candidates=["/usr/sbin/nginx"])


# --- nginx -------------------------------------------------------------------

def _replace_once(text: str, pattern: str, replacement: str) -> str:
    new, n = re.subn(pattern, replacement, text, flags=re.M)
    assert n == 1, f"nginx/sse-keepalive.conf: expected exactly one match of {pattern!r}, found {n}"
    return new


def render_conf(target: str, port: int, read_timeout: str = "2s") -> str:
    """The shipped config with the test's addresses and timeouts."""
    with open(SHIPPED_CONF) as f:
        text = f.read()
    text = _replace_once(text, r"^(\s*)server 127\.0\.0\.1:8080;", rf"\g<1>server {target};")
    text = _replace_once(text, r"^(\s*)listen 80;", rf"\g<1>listen 127.0.0.1:{port};")
    text = _replace_once(text, r"^(\s*)proxy_read_timeout \S+;", rf"\g<1>proxy_read_timeout {read_timeout};")
    return text


class Nginx:
    """nginx with its own prefix in a temp dir, in the foreground."""

    def __init__(self, binary: str, site_conf: str):
        self.binary = binary
        self.prefix = tempfile.mkdtemp(prefix="ssek-nginx-")
        for d in ("conf", "logs", "tmp"):
            os.makedirs(os.path.join(self.prefix, d))
        os.chmod(self.prefix, 0o755)
        self.error_log = os.path.join(self.prefix, "logs", "error.log")
        self.access_log = os.path.join(self.prefix, "logs", "access.log")
        with open(os.path.join(self.prefix, "conf", "sse-keepalive.conf"), "w") as f:
            f.write(site_conf)
        tmp = os.path.join(self.prefix, "tmp")
        self.conf = os.path.join(self.prefix, "conf", "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(f"""
worker_processes 1;
pid {self.prefix}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 256; }}
http {{
    access_log {self.access_log};
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {self.prefix}/conf/sse-keepalive.conf;
}}
""")
        self.argv = [binary, "-p", self.prefix + "/", "-c", self.conf, "-e", self.error_log]
        self.proc = None

    def test_config(self) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv + ["-t"], capture_output=True, text=True, timeout=10)

    def start(self, port: int):
        self.proc = subprocess.Popen(self.argv + ["-g", "daemon off;"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}:\n"
                                     f"{self.proc.stderr.read().decode(errors='replace')}\n{self.errors()}")
            try:
                http.connect(("127.0.0.1", port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"nginx did not listen on {port} within 10 s:\n{self.errors()}")

    def errors(self) -> str:
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown: open streams are cut
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.prefix, ignore_errors=True)


@pytest.fixture
def start_nginx(nginx_bin):
    """Factory: start_nginx(target, read_timeout=...) -> (addr, Nginx)."""
    started: list[Nginx] = []

    def start(target: str, read_timeout: str = "2s"):
        port = free_port()
        n = Nginx(nginx_bin, render_conf(target, port, read_timeout))
        started.append(n)
        checked = n.test_config()
        assert checked.returncode == 0, f"nginx -t failed:\n{checked.stderr}"
        n.start(port)
        return ("127.0.0.1", port), n

    yield start
    for n in started:
        n.stop()


def sidecar_config(upstream_addr: str, interval: str = "500ms", **routes_overrides) -> dict:
    return base_config(upstream_addr, heartbeat={"interval": interval},
                       timeouts={"connect": "1s", "response": "3s"}, **routes_overrides)


# --- helpers -----------------------------------------------------------------

def event(n: int) -> bytes:
    return f"id: {n}\nevent: update\ndata: {{\"n\": {n}}}\n\n".encode()


def script(pieces, end="finish"):
    """An event stream; pieces are (delay before, bytes). Returns the steps and
    the upstream payload."""
    return up.event_stream(pieces, framing="chunked", headers=SSE_HEAD[1:], end=end), \
        b"".join(p for _, p in pieces)


def read_until(conn, head, deadline_s: float, marker: bytes | None = None) -> http.Body:
    return http.read_stream(conn, head, deadline_s, until=(lambda d: marker in d) if marker else None)


def first_arrival(body: http.Body, marker: bytes) -> float | None:
    """When the piece completing the first occurrence of `marker` arrived."""
    seen = b""
    for t, data in body.pieces:
        seen += data
        if marker in seen:
            return t
    return None


# --- tests -------------------------------------------------------------------

def test_shipped_config_passes_nginx_t(start_nginx, nginx_bin):
    """The file users copy is valid nginx syntax, unmodified apart from ports."""
    n = Nginx(nginx_bin, render_conf("127.0.0.1:9", free_port()))
    try:
        r = n.test_config()
        assert r.returncode == 0, r.stderr
        assert "syntax is ok" in r.stderr
    finally:
        n.stop()
    with open(SHIPPED_CONF) as f:
        text = f.read()
    for directive in ("proxy_http_version 1.1;", 'proxy_set_header Connection "";', "proxy_buffering off;",
                      "proxy_cache off;", "keepalive 32;"):
        assert directive in text, directive


@pytest.mark.timeout(30)
def test_events_and_heartbeats_arrive_through_nginx_without_delay(upstream, start_proxy, start_nginx):
    """(a) Each event reaches the client within a few hundred ms of the
    upstream writing it, heartbeats come at the sidecar's cadence, and the
    payload is the upstream's plus heartbeats (nothing re-split or held)."""
    pieces = [(0.0, b"retry: 1000\n\n"), (0.3, event(1)), (1.2, event(2)), (0.2, event(3)), (0.3, b"")]
    steps, payload = script(pieces)
    upstream.route("/stream", steps)
    proxy = start_proxy(sidecar_config(upstream.config_addr, "300ms"))
    addr, nginx = start_nginx(proxy.config["listen"], read_timeout="2s")

    conn, head = open_stream(addr, "/stream")
    try:
        assert head.status == 200, head.raw
        assert head.get("content-type") == "text/event-stream", head.raw
        assert not head.has("content-length"), head.raw
        assert head.get("cache-control") == "no-cache, no-transform", head.raw
        body = conn.read_body(head, timeout=6, timeout_ok=True)
    finally:
        conn.close()
    assert body.complete, f"stream did not end properly: {body.data!r}\n{nginx.errors()}"

    req = upstream.requests_for("/stream")[0]
    sent_at, late = req.time, []
    for n, (delay, data) in enumerate(pieces):
        sent_at += delay
        if data.startswith(b"id: "):
            arrived = first_arrival(body, data)
            assert arrived is not None, f"event missing: {data!r} in {body.data!r}"
            if arrived - sent_at > 0.25:
                late.append((data, round(arrived - sent_at, 3)))
    assert not late, f"events held back on the way through nginx: {late}"

    a = sse.align(body.data, payload)
    assert a.ok, sse.describe(body.data, payload, a)
    hb_in_gap = [ins for ins in a.insertions if ins.offset == len(pieces[0][1]) + len(event(1))]
    assert 2 <= len(hb_in_gap) <= 5, f"expected ~4 heartbeats in the 1.2 s gap, got {sse.offsets(a)}"
    assert [e.data for e in sse.parse(body.data).events] == ['{"n": 1}', '{"n": 2}', '{"n": 3}']


@pytest.mark.timeout(30)
def test_quiet_stream_survives_nginx_read_timeout_with_sidecar(upstream, start_proxy, start_nginx):
    """(b) nginx proxy_read_timeout 2s, heartbeats every 500 ms, upstream
    quiet for 6 s (3x nginx's timeout): the stream stays open, heartbeats
    keep coming through nginx, and the event after the quiet arrives."""
    pieces = [(0.0, b"retry: 1000\n\n"), (0.1, event(1)), (6.0, event(2)), (0.2, b"")]
    steps, payload = script(pieces)
    upstream.route("/quiet", steps)
    proxy = start_proxy(sidecar_config(upstream.config_addr, "500ms"))
    addr, nginx = start_nginx(proxy.config["listen"], read_timeout="2s")

    conn, head = open_stream(addr, "/quiet")
    try:
        assert head.status == 200, head.raw
        body = conn.read_body(head, timeout=10, timeout_ok=True)
    finally:
        conn.close()
    assert event(2) in body.data, (f"the stream died during the quiet period: {body.data!r}\n"
                                   f"nginx error log:\n{nginx.errors()[-2000:]}")
    assert body.complete, body.data
    a = sse.align(body.data, payload)
    assert a.ok, sse.describe(body.data, payload, a)
    assert len(a.insertions) >= 8, f"expected ~12 heartbeats in 6 s, got {len(a.insertions)}"
    times = [t for t, _ in body.pieces]
    worst = max(b - a_ for a_, b in zip(times, times[1:]))
    assert worst < 1.5, f"a {worst:.2f} s gap on the client side (nginx times out at 2 s)"
    assert "upstream timed out" not in nginx.errors()


def quiet_stream_through(start_nginx, target: str, upstream_obj) -> tuple[http.Body, float, str]:
    pieces = [(0.0, b"retry: 1000\n\n"), (0.1, event(1)), (6.0, event(2)), (0.2, b"")]
    steps, _ = script(pieces)
    upstream_obj.route("/quiet", steps)
    addr, nginx = start_nginx(target, read_timeout="2s")
    conn, head = open_stream(addr, "/quiet")
    try:
        assert head.status == 200, head.raw
        started = time.monotonic()
        body = conn.read_body(head, timeout=5, timeout_ok=True)
        ended = time.monotonic() - started
    finally:
        conn.close()
    time.sleep(0.1)
    return body, ended, nginx.errors()


@pytest.mark.timeout(30)
def test_control_quiet_stream_dies_without_sidecar(upstream, start_nginx):
    """(c) The same quiet stream with nginx straight to the upstream is cut
    after ~2 s (nginx: "upstream timed out"): removing the sidecar makes the
    survival test above fail."""
    body, ended, errors = quiet_stream_through(start_nginx, upstream.config_addr, upstream)
    assert event(2) not in body.data
    assert not body.complete, "nginx should cut the response, not end it"
    assert 1.5 < ended < 4.0, f"cut after {ended:.2f} s, expected ~2 s"
    assert "upstream timed out" in errors, errors[-2000:]


@pytest.mark.timeout(30)
def test_control_quiet_stream_dies_when_sidecar_sends_no_heartbeats(upstream, start_proxy, start_nginx):
    """(c') Through the sidecar but with `heartbeat: off` on the route, nginx
    cuts the stream too: the survival is the heartbeats' doing."""
    proxy = start_proxy(sidecar_config(upstream.config_addr, "500ms",
                                       routes=[{"path": "/quiet", "heartbeat": "off"}]))
    body, ended, errors = quiet_stream_through(start_nginx, proxy.config["listen"], upstream)
    assert event(2) not in body.data
    assert b":heartbeat" not in body.data
    assert 1.5 < ended < 4.0, f"cut after {ended:.2f} s, expected ~2 s"
    assert "upstream timed out" in errors, errors[-2000:]


@pytest.mark.timeout(30)
def test_ordinary_requests_and_token_route_through_nginx(upstream, start_proxy, start_nginx):
    """Non-SSE traffic and the query-token rewrite work behind nginx; nginx
    reuses its keep-alive connections to the sidecar (upstream keepalive)."""
    admin_port = free_port()
    cfg = sidecar_config(upstream.config_addr, "500ms", routes=[{"path": "/api/notifications/stream", "token": {}}])
    cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    proxy = start_proxy(cfg)
    addr, nginx = start_nginx(proxy.config["listen"])
    for i in range(3):
        r = http.request(addr, "GET", f"/plain?i={i}")
        assert r.status == 200 and r.head.get("x-echo") == "1", r.head.raw
        echoed = up.decode_echo(r.body.data)
        assert echoed["target"] == f"/plain?i={i}"
        names = {k.lower() for k, _ in echoed["headers"]}
        assert {"x-forwarded-for", "x-real-ip", "x-forwarded-proto"} <= names, names
    r = http.request(addr, "GET", "/api/notifications/stream?a=1&token=s3cr%2Bt&b=2")
    echoed = up.decode_echo(r.body.data)
    assert echoed["target"] == "/api/notifications/stream?a=1&b=2", echoed["target"]
    assert ["Authorization", "Bearer s3cr+t"] in echoed["headers"], echoed["headers"]
    assert "s3cr" not in proxy.log_text()
    metrics = http.request(("127.0.0.1", admin_port), "GET", "/metrics").body.data.decode()
    m = re.search(r"^sse_keepalive_connections_accepted_total (\d+)", metrics, re.M)
    assert m, metrics
    assert int(m.group(1)) < 4, f"nginx opened a connection per request (no upstream keepalive):\n{metrics}"
