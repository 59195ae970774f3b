"""systemd readiness (issue 15): with NOTIFY_SOCKET set, the proxy sends
READY=1 once its listeners accept, RELOADING=1 (with MONOTONIC_USEC) and
READY=1 around every reload, STOPPING=1 when draining, and WATCHDOG=1 at half
of WATCHDOG_USEC. The "service manager" is a datagram socket of the test's
own (a path and an abstract name), which records every message in order."""
import os
import signal
import socket
import tempfile
import time
import uuid

import pytest

from harness import client as http
from harness import upstream as up
from harness.ops import sighup, wait_until, write_config
from harness.proxy import Proxy, base_config

pytestmark = pytest.mark.proxy_only


@pytest.fixture(autouse=True)
def _binary():
    from conftest import require_binary
    require_binary()


class NotifySocket:
    """A bound SOCK_DGRAM unix socket; `messages` in arrival order."""

    def __init__(self, abstract: bool = False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"ssek-notify-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            self.dir = tempfile.mkdtemp(prefix="ssek-notify-")
            path = os.path.join(self.dir, "notify.sock")
            self.sock.bind(path)
            self.env_value = path
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []

    def drain(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def texts(self) -> list[str]:
        self.drain()
        return [m for _, m in self.messages]

    def wait_count(self, n: int, timeout: float = 5.0) -> list[str]:
        return wait_until(lambda: (t := self.texts()) and len(t) >= n and t, timeout) or self.texts()

    def close(self):
        self.sock.close()


def first_lines(messages):
    return [m.split("\n")[0] for m in messages]


def run_proxy(notify: NotifySocket, upstream, extra_env=None, config=None) -> Proxy:
    env = {"NOTIFY_SOCKET": notify.env_value}
    env.update(extra_env or {})
    for name in ("WATCHDOG_USEC", "WATCHDOG_PID"):
        env.setdefault(name, "")
    return Proxy(config or base_config(upstream.config_addr), env=env)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_reloading_ready_and_stopping_in_order(upstream, abstract):
    """READY=1 after the listeners accept; a good and a rejected SIGHUP each
    give RELOADING=1 (MONOTONIC_USEC from CLOCK_MONOTONIC, which Python's
    time.monotonic reads too) then READY=1; SIGTERM gives STOPPING=1 and
    nothing after it; the proxy still exits 0."""
    upstream.route("/", up.response(200, [("Content-Type", "text/plain")], b"hello"))
    notify = NotifySocket(abstract=abstract)
    p = run_proxy(notify, upstream)
    try:
        got = notify.wait_count(1)
        assert got == ["READY=1"], got
        # READY means serving: a request goes through at once
        assert http.request(p.addr, "GET", "/x").body.data == b"hello"

        before_reload = time.monotonic()
        assert sighup(p, base_config(upstream.config_addr, listen_port=p.addr[1], heartbeat={"interval": "1s"}))
        after_reload = time.monotonic()
        got = notify.wait_count(3)
        assert first_lines(got) == ["READY=1", "RELOADING=1", "READY=1"], got
        fields = dict(line.split("=", 1) for line in got[1].split("\n"))
        assert set(fields) == {"RELOADING", "MONOTONIC_USEC"}, got[1]
        stamp = int(fields["MONOTONIC_USEC"]) / 1e6
        assert before_reload - 1.0 <= stamp <= after_reload + 1.0, (before_reload, stamp, after_reload)
        assert "STATUS=configuration reloaded" in got[2].split("\n"), got[2]

        write_config(p, "listen: [\nheartbeat: 5s\n")  # a YAML syntax error
        assert sighup(p, expect=r"reload rejected")
        got = notify.wait_count(5)
        assert first_lines(got) == ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1"], got
        status = [line for line in got[4].split("\n") if line.startswith("STATUS=")]
        assert status and "reload rejected" in status[0] and "sse-keepalive.yaml" in status[0], got[4]

        assert p.stop() == 0
        got = notify.wait_count(6)
        assert first_lines(got) == ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], got
        time.sleep(0.2)
        assert len(notify.texts()) == 6, notify.texts()
    finally:
        p.stop()
        notify.close()


@pytest.mark.timeout(30)
def test_ready_comes_after_listening_and_not_before(upstream):
    """The first datagram arrives only when the port accepts connections."""
    notify = NotifySocket()
    p = run_proxy(notify, upstream)
    try:
        got = notify.wait_count(1)
        assert got == ["READY=1"]
        s = socket.create_connection(p.addr, timeout=2)
        s.close()
    finally:
        p.stop()
        notify.close()


@pytest.mark.timeout(30)
def test_watchdog_pings_at_half_of_watchdog_usec(upstream):
    """WATCHDOG_USEC=600000: a WATCHDOG=1 about every 300 ms (counted over
    3 s with a wide tolerance), and they keep coming while draining."""
    notify = NotifySocket()
    p = run_proxy(notify, upstream, {"WATCHDOG_USEC": "600000", "WATCHDOG_PID": str(os.getpid())},
                  config=None)
    try:
        notify.wait_count(1)
        # WATCHDOG_PID names the test process, not the proxy: no pings at all
        time.sleep(1.0)
        assert [m for m in notify.texts() if m == "WATCHDOG=1"] == [], notify.texts()
    finally:
        p.stop()
        notify.close()

    notify = NotifySocket()
    p = run_proxy(notify, upstream, {"WATCHDOG_USEC": "600000"})
    try:
        notify.wait_count(1)
        start = time.monotonic()
        time.sleep(3.0)
        notify.drain()
        pings = [t for t, m in notify.messages if m == "WATCHDOG=1" and t >= start]
        assert 5 <= len(pings) <= 14, len(pings)
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert max(gaps) < 0.6, gaps  # never a whole watchdog period without a ping
        assert notify.texts()[0] == "READY=1"
    finally:
        p.stop()
        notify.close()


@pytest.mark.timeout(30)
def test_without_notify_socket_nothing_is_sent_and_a_bad_one_is_a_warning(upstream):
    """An unsupported NOTIFY_SOCKET (relative) is a warning, not a failure;
    one that nobody listens on does not stop the proxy either."""
    p = Proxy(base_config(upstream.config_addr), env={"NOTIFY_SOCKET": "relative.sock"})
    try:
        assert p.wait_for_log(r"systemd notifications off: NOTIFY_SOCKET=relative.sock", level="warning")
        assert p.alive()
    finally:
        assert p.stop() == 0
    gone = os.path.join(tempfile.mkdtemp(prefix="ssek-notify-"), "nobody.sock")
    p = Proxy(base_config(upstream.config_addr), env={"NOTIFY_SOCKET": gone})
    try:
        assert p.wait_for_log(r"systemd notification not sent", level="warning")
        upstream.route("/", up.response(200, [], b"ok"))
        assert http.request(p.addr, "GET", "/").body.data == b"ok"
    finally:
        assert p.stop() == 0
