"""examples/: the legacy app behaves like the backends we front, and the
example config fronts it (with ports and intervals shrunk for the test)."""
import os
import re
import subprocess
import sys
import time

import pytest

from harness import client as http
from harness import sse
from harness.proxy import REPO_ROOT, free_port, run_cli
from harness.streams import watch_stream

EXAMPLES = os.path.join(REPO_ROOT, "examples")


@pytest.fixture
def legacy_app():
    port = free_port()
    env = dict(os.environ, LEGACY_INTERVAL="0.8", LEGACY_TOKEN="t0k")
    proc = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "legacy_app.py"), "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            http.connect(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield ("127.0.0.1", port), proc
    proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(3)


def test_legacy_app_direct(legacy_app):
    addr, proc = legacy_app
    root = http.request(addr, "GET", "/")
    assert root.status == 200 and b"legacy" in root.body.data
    assert http.request(addr, "GET", "/events").status == 401
    head, body = watch_stream(addr, "/events?token=t0k", 1.2)
    assert head.get("content-type") == "text/event-stream"
    assert [e.type for e in sse.parse(body.data).events] == ["tick"]
    head, body = watch_stream(addr, "/api/notifications/stream", 1.2, headers=[("Authorization", "Bearer t0k")])
    assert b"event: notification" in body.data and b"heartbeat" not in body.data


@pytest.mark.proxy_only
def test_example_config_is_valid():
    r = run_cli(["check", "--config", os.path.join(EXAMPLES, "sse-keepalive.yaml")])
    assert r.returncode == 0, r.stderr
    assert "/api/notifications/stream" in r.stdout and "/events" in r.stdout


@pytest.mark.proxy_only
def test_example_config_fronts_legacy_app(legacy_app, start_proxy):
    addr, _ = legacy_app
    with open(os.path.join(EXAMPLES, "sse-keepalive.yaml")) as f:
        text = f.read()
    port = free_port()
    text = text.replace('"127.0.0.1:8080"', f'"127.0.0.1:{port}"').replace('"127.0.0.1:3000"', f'"{addr[0]}:{addr[1]}"')
    text = re.sub(r"heartbeat: 10s", "heartbeat: 300ms", text)
    text = re.sub(r"heartbeat: 5s", "heartbeat: 200ms", text)
    p = start_proxy(text)
    head, body = watch_stream(p.addr, "/api/notifications/stream?token=t0k", 1.5)
    assert head.status == 200, head.raw
    assert b":heartbeat\n\n" in body.data, body.data
    assert [e.type for e in sse.parse(body.data).events][:1] == ["notification"], body.data
