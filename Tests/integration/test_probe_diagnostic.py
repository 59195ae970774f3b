"""The sidecar's diagnostic route (`diagnostic: true`) and `probe
--through-sidecar` (issue 13): the sidecar answers the route itself with a
scripted stream (events of growing size with their scheduled send times,
then announced silences of growing length, heartbeats off), and the probe
reads the path's buffering threshold and idle timeout from it.

- straight to the sidecar: the script runs to its end, nothing held, exit 0,
  and the upstream never sees the request;
- behind nginx with proxy_read_timeout 3s: silences of 1 and 2 s survive,
  the 4 s one is cut, the idle timeout is measured (within 1 s of 3 s) and
  the recommendation is 1s;
- behind an nginx that buffers (it ignores X-Accel-Buffering and talks
  HTTP/1.0 to the sidecar, so the body is close-delimited): the head is held
  and a buffering threshold of a few KiB is measured;
- refusals: 405 for POST, 400 for a bad query, 429 with Retry-After past two
  streams at once on a worker; `check` shows the key.
"""
from __future__ import annotations

import subprocess
import time

import pytest

from debian_packages import ensure_debian_package
from harness import client as http
from harness import proxy as proxy_mod
from harness.probing import Nginx, codes, finding, probe_json

pytestmark = pytest.mark.proxy_only

ROUTE = "/.well-known/sse-keepalive/probe"
QUICK = "head_wait=500&gap=100&max_size=1024"


def sidecar_config(upstream, workers: int = 2) -> dict:
    return proxy_mod.base_config(upstream.config_addr, workers=workers, routes=[{"path": ROUTE, "diagnostic": True}])


@pytest.fixture(scope="module")
def nginx_binary():
    return ensure_debian_package("nginx", "nginx", candidates=["/usr/sbin/nginx"])


@pytest.fixture
def nginx_in_front(nginx_binary):
    started: list[Nginx] = []

    def start(target, *directives, http_version="1.1") -> Nginx:
        host, port = target
        n = Nginx(nginx_binary, f"{host}:{port}", list(directives), http_version=http_version)
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


def test_straight_to_the_sidecar(upstream, start_proxy):
    sidecar = start_proxy(sidecar_config(upstream))
    host, port = sidecar.addr
    rc, r = probe_json(f"http://{host}:{port}{ROUTE}?{QUICK}", "8s", "--through-sidecar")
    assert rc == 0, r["findings"]
    d = r["diagnostic"]
    assert d["reached_end"] is True and d["buffering_threshold_bytes"] is None and d["threshold_above_bytes"] is None, d
    assert d["silences_ms"] == [1000, 2000] and d["survived_silences"] == 2, d  # what fits in 8 s
    assert r["url"].endswith(f"?{QUICK}&silence_to=2000")
    assert r["end"]["reason"] == "response_complete" and r["healthy"]
    assert finding(r, "buffer_threshold")["severity"] == "note"
    assert r["response"]["x_accel_buffering"] == "no" and r["response"]["cache_control"] == "no-cache, no-transform"
    assert r["timeline"]["comments"] == 0, "no heartbeats on the diagnostic stream"
    assert upstream.requests_for(ROUTE) == [], "answered by the sidecar, never forwarded"
    assert sidecar.wait_for_log(r"access .*" + ROUTE.replace(".", r"\.") + r".* 200 .*end=complete", timeout=5)


def test_behind_nginx_the_idle_timeout_is_bracketed(upstream, start_proxy, nginx_in_front):
    sidecar = start_proxy(sidecar_config(upstream))
    nginx = nginx_in_front(sidecar.addr, "proxy_read_timeout 3s")
    rc, r = probe_json(f"http://127.0.0.1:{nginx.port}{ROUTE}?{QUICK}", "15s", "--through-sidecar")
    assert rc == 1
    d = r["diagnostic"]
    assert d["silences_ms"][:3] == [1000, 2000, 4000], d
    assert d["longest_survived_silence_ms"] == 2000 and d["fatal_silence_ms"] == 4000, d
    assert abs(r["idle_timeout_s"] - 3.0) <= 1.0, r["idle_timeout_s"]
    assert "idle_timeout" in codes(r, "problem")
    assert finding(r, "silences")["message"] == "the path carried silences up to 2.0 s; the stream was cut during the 4.0 s silence"
    assert r["recommendation"]["heartbeat"] == "1s", r["recommendation"]
    assert "routes:" not in r["recommendation"]["config"], "no per-route form for the diagnostic route"


def test_behind_a_buffering_nginx_the_threshold_is_measured(upstream, start_proxy, nginx_in_front):
    sidecar = start_proxy(sidecar_config(upstream))
    nginx = nginx_in_front(sidecar.addr, "proxy_read_timeout 30s", "proxy_ignore_headers X-Accel-Buffering",
                           http_version="1.0")
    rc, r = probe_json(f"http://127.0.0.1:{nginx.port}{ROUTE}?max_size=16384&silence_to=0", "12s")
    assert rc == 1
    threshold = r["diagnostic"]["buffering_threshold_bytes"]
    assert threshold is not None and 1000 <= threshold <= 16384, r["diagnostic"]
    f = finding(r, "buffer_threshold")
    assert f["severity"] == "problem" and f"until about {threshold} bytes had been sent" in f["message"]
    assert "head_held" in codes(r, "problem"), r["findings"]


def test_refusals_and_check(upstream, start_proxy):
    sidecar = start_proxy(sidecar_config(upstream, workers=1))
    post = http.request(sidecar.addr, "POST", ROUTE, body=b"x")
    assert post.head.status == 405 and post.head.get("Allow") == "GET"
    bad = http.request(sidecar.addr, "GET", ROUTE + "?gap=1")
    assert bad.head.status == 400
    assert bad.body.data == b"400 Bad Request: diagnostic stream: gap must be between 50 and 2000\n"
    # Two streams at once per worker; the third is refused.
    held = []
    for _ in range(2):
        conn = http.connect(sidecar.addr, 5)
        conn.send(f"GET {ROUTE}?head_wait=5000 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert conn.read_head(5).status == 200
        held.append(conn)
    busy = http.request(sidecar.addr, "GET", ROUTE)
    assert busy.head.status == 429 and busy.head.get("Retry-After") == "10"
    for conn in held:
        conn.close()
    # Slots come back when the streams end.
    deadline = time.monotonic() + 5
    while True:
        again = http.connect(sidecar.addr, 5)
        again.send(f"GET {ROUTE}?head_wait=0&silence_to=0&max_size=128 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status = again.read_head(5).status
        again.close()
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200
    assert upstream.requests_for(ROUTE) == []
    check = subprocess.run([proxy_mod.binary_path(), "check", "--config", sidecar.config_path],
                           capture_output=True, text=True, timeout=10)
    assert check.returncode == 0 and f'  - path: "{ROUTE}"' in check.stdout and "    diagnostic: true" in check.stdout, check.stdout
