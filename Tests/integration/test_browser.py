"""A real browser on the example page, through an idle-killing front:

    headless Chromium -> examples/idle_killer.py (cuts after 1.2 s idle)
                      -> sse-keepalive (heartbeat 400 ms)
                      -> examples/legacy_app.py (an event every 2 s, LEGACY_AUTH=header)

The page (examples/page/, served by the legacy app at /page through the
same path) opens `EventSource('/api/messages/stream?token=...')` and keeps a
summary in `window.sseDemo`. Checked:

- onmessage fires once per real event (the app's own count of events sent
  on that stream) and never for a heartbeat (the sidecar's metrics show it
  sent many; none reached onmessage, none had empty data);
- the ?token= page authenticates upstream through the header: the app is in
  header-only mode and reports the request carried Authorization and no
  `token` query parameter;
- the stream survives quiet periods (2 s) longer than the idle killer's
  timeout (1.2 s): one open, no error, no reconnect.

Controls prove the test would fail without the sidecar (idle killer straight
to the app: the browser sees the stream cut, and in header-only mode the
query token is refused) or with the sidecar sending no heartbeats.

How the browser is driven: Chromium is started with
`--headless=new --remote-debugging-pipe`, which speaks the DevTools protocol
as NUL-separated JSON on file descriptors 3 and 4, so the Python standard
library is enough (no WebSocket client, no Selenium). The test opens the page
with Target.createTarget and polls `window.sseDemo` with Runtime.evaluate, in
real time. `--dump-dom` with `--virtual-time-budget` was not used: virtual
time does not advance through real network waits, so a page that waits on a
live event stream gives no reliable snapshot.
"""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from debian_packages import ensure_debian_package
from harness import client as http
from harness.proxy import REPO_ROOT, base_config, free_port

pytestmark = pytest.mark.proxy_only

EXAMPLES = os.path.join(REPO_ROOT, "examples")
TOKEN = "t0k-Br0wser"
EVENT_INTERVAL = 2.0   # legacy app: seconds between events (the quiet period)
IDLE_CUT = 1.2         # idle killer: seconds without a byte before it cuts
HEARTBEAT = "400ms"    # sidecar: well below IDLE_CUT
STREAM = "/api/messages/stream"


# --- processes ---------------------------------------------------------------

def wait_port(addr, proc, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: "
                                 f"{proc.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            http.connect(addr, 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {addr} within {timeout} s")


def stop_proc(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(3)


@pytest.fixture
def processes():
    """Factory for the example processes; all stopped at teardown."""
    started = []

    def legacy_app(auth: str = "header"):
        port = free_port()
        env = dict(os.environ, LEGACY_INTERVAL=str(EVENT_INTERVAL), LEGACY_TOKEN=TOKEN, LEGACY_AUTH=auth)
        proc = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "legacy_app.py"), "--port", str(port)],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        started.append(proc)
        wait_port(("127.0.0.1", port), proc, "legacy app")
        return ("127.0.0.1", port)

    def idle_killer(target, idle: float = IDLE_CUT):
        port = free_port()
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "idle_killer.py"),
                                 "--listen", f"127.0.0.1:{port}", "--upstream", f"{target[0]}:{target[1]}",
                                 "--idle", str(idle)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        proc.log = log
        started.append(proc)
        wait_port(("127.0.0.1", port), proc, "idle killer")
        return ("127.0.0.1", port), proc

    yield legacy_app, idle_killer
    for proc in started:
        stop_proc(proc)


def killer_log(proc) -> str:
    proc.log.seek(0)
    return proc.log.read().decode(errors="replace")


def killer_logged(proc, text: str, within: float = 3.0) -> bool:
    """Whether the idle killer logs `text` within `within` s: it writes a
    connection's line only after closing both sockets, so the client may see
    the cut a moment before the line is there."""
    deadline = time.monotonic() + within
    while text not in killer_log(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# --- Chromium over the DevTools pipe -------------------------------------------

class Chromium:
    """Headless Chromium driven through --remote-debugging-pipe (fd 3: our
    commands in, fd 4: its answers out; messages are JSON ending in NUL)."""

    FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-default-apps", "--disable-domain-reliability",
             "--disable-features=Translate,MediaRouter,OptimizationHints", "--no-proxy-server",
             "--remote-debugging-pipe"]

    def __init__(self, binary: str):
        self.profile = tempfile.mkdtemp(prefix="ssek-chromium-")
        self.log = tempfile.TemporaryFile()
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_pipe():  # in the child, before exec: the pipe ends become fds 3 and 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen([binary] + self.FLAGS + [f"--user-data-dir={self.profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
                                     pass_fds=(3, 4), preexec_fn=wire_pipe, start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.call("Browser.getVersion", timeout=20)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 10.0):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, _, self._buf = self._buf.partition(b"\0")
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise AssertionError(f"DevTools {method}: {reply['error']}")
                    return reply["result"]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"DevTools {method}: no answer in {timeout} s\n{self.log_text()}")
            ready, _, _ = select.select([self._from_child], [], [], min(left, 0.5))
            if ready:
                data = os.read(self._from_child, 1 << 16)
                if not data:
                    raise AssertionError(f"Chromium closed the DevTools pipe\n{self.log_text()}")
                self._buf += data

    def open(self, url: str) -> "Tab":
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Tab(self, session)

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def close(self):
        try:
            os.close(self._to_child)  # Chromium exits when its pipe closes
        except OSError:
            pass
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group of the process we started
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        os.close(self._from_child)
        shutil.rmtree(self.profile, ignore_errors=True)


class Tab:
    def __init__(self, browser: Chromium, session: str):
        self.browser, self.session = browser, session

    def evaluate(self, expression: str):
        result = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                   session=self.session)
        return result.get("result", {}).get("value")

    def summary(self) -> dict | None:
        text = self.evaluate("window.sseDemo ? JSON.stringify(window.sseDemo) : null")
        return json.loads(text) if text else None

    def wait_summary(self, until, timeout: float) -> dict:
        """Poll window.sseDemo every 100 ms until `until(summary)` or timeout;
        returns the last summary (tests assert on it)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.summary()
            if last and until(last):
                return last
            time.sleep(0.1)
        return last or {}


@pytest.fixture(scope="module")
def chromium_bin():
    return ensure_debian_package("chromium", "chromium")


@pytest.fixture
def browser(chromium_bin):
    b = Chromium(chromium_bin)
    yield b
    b.close()


# --- helpers -----------------------------------------------------------------

def sidecar_config(app_addr, heartbeat=HEARTBEAT, admin_port=None) -> dict:
    cfg = base_config(f"{app_addr[0]}:{app_addr[1]}", heartbeat={"interval": heartbeat},
                      routes=[{"path": STREAM, "token": {}}])
    if admin_port:
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    return cfg


def app_streams(app_addr) -> list[dict]:
    r = http.request(app_addr, "GET", "/debug/streams")
    assert r.status == 200, r.head.raw
    return [s for s in json.loads(r.body.data)["streams"] if s["path"] == STREAM]


def heartbeats_sent(admin_port) -> int:
    text = http.request(("127.0.0.1", admin_port), "GET", "/metrics").body.data.decode()
    assert "sse_keepalive_heartbeats_total" in text, text
    m = re.search(r'^sse_keepalive_heartbeats_total\{route="%s"\} (\d+)' % re.escape(STREAM), text, re.M)
    return int(m.group(1)) if m else 0  # no line yet for a route without heartbeats


def page_url(front, token=TOKEN) -> str:
    return f"http://{front[0]}:{front[1]}/page?stream={STREAM}&token={token}"


# --- tests -------------------------------------------------------------------

@pytest.mark.timeout(40)
def test_page_through_sidecar_behind_idle_killer(browser, processes, start_proxy):
    legacy_app, idle_killer = processes
    app = legacy_app(auth="header")
    admin_port = free_port()
    proxy = start_proxy(sidecar_config(app, admin_port=admin_port))
    front, killer = idle_killer(proxy.addr)

    tab = browser.open(page_url(front))
    s = tab.wait_summary(lambda s: s["messages"] >= 3 or s["errors"] or s["state"] == "closed",
                         timeout=3 * EVENT_INTERVAL + 5)
    streams = app_streams(app)
    hb = heartbeats_sent(admin_port)
    context = (f"page summary: {json.dumps(s)[:1500]}\napp saw: {streams}\n"
               f"idle killer:\n{killer_log(killer)}\nsidecar log tail:\n{proxy.log_text()[-1500:]}")

    # The stream survived quiet periods longer than the killer's timeout.
    assert s.get("messages", 0) >= 3, "fewer than 3 events arrived\n" + context
    assert s["errors"] == 0 and s["opens"] == 1 and s["reconnects"] == 0 and s["state"] == "open", context
    assert EVENT_INTERVAL > IDLE_CUT + 0.5  # each gap between events is a quiet period the killer would cut

    # Token from the page's ?token= reached the app as a header only.
    assert len(streams) == 1, context
    seen = streams[0]
    assert seen["auth"] == "header" and seen["authorization_header"] is True, context
    assert "token" not in seen["query_keys"], context

    # onmessage: once per real event, never for a heartbeat.
    assert s["messages"] == seen["events_sent"], context
    numbers = [json.loads(e["data"])["n"] for e in s["events"]]
    assert numbers == list(range(1, s["messages"] + 1)), context
    assert all(e["type"] == "message" for e in s["events"]), context
    assert s["empty_data"] == 0 and s["named"] == 0, context
    assert hb >= 2 * s["messages"], f"expected heartbeats in every quiet gap, the sidecar sent {hb}\n" + context


@pytest.mark.timeout(40)
def test_control_without_sidecar_the_idle_killer_cuts_the_stream(browser, processes):
    """The same page with the sidecar removed (idle killer straight to the
    app, which accepts the query token here): the browser sees the stream cut
    within about the killer's timeout and has to reconnect."""
    legacy_app, idle_killer = processes
    app = legacy_app(auth="any")
    front, killer = idle_killer(app)
    tab = browser.open(page_url(front))
    s = tab.wait_summary(lambda s: s["errors"] >= 1, timeout=IDLE_CUT + 4)
    assert s.get("errors", 0) >= 1, f"the stream was not cut: {s}\n{killer_log(killer)}"
    assert killer_logged(killer, "cut after"), killer_log(killer)
    assert app_streams(app)[0]["auth"] == "query"  # directly, the token arrives in the URL


@pytest.mark.timeout(40)
def test_control_without_sidecar_header_only_app_refuses_query_token(browser, processes):
    """Without the sidecar, the header-only app refuses the page's ?token=:
    the browser gives up (401) and gets no events."""
    legacy_app, _ = processes
    app = legacy_app(auth="header")
    tab = browser.open(page_url(app))
    s = tab.wait_summary(lambda s: s["state"] == "closed", timeout=5)
    assert s.get("state") == "closed" and s["messages"] == 0, s
    assert app_streams(app)[0]["status"] == 401


@pytest.mark.timeout(40)
def test_control_sidecar_without_heartbeats_is_cut(browser, processes, start_proxy):
    """Through the sidecar with `heartbeat: off` (as if it stopped sending
    heartbeats): the stream is cut as without it."""
    legacy_app, idle_killer = processes
    app = legacy_app(auth="header")
    proxy = start_proxy(sidecar_config(app, heartbeat="off"))
    front, killer = idle_killer(proxy.addr)
    tab = browser.open(page_url(front))
    s = tab.wait_summary(lambda s: s["errors"] >= 1, timeout=IDLE_CUT + 4)
    assert s.get("errors", 0) >= 1, f"the stream was not cut: {s}\n{killer_log(killer)}"
    assert app_streams(app)[0]["auth"] == "header"


@pytest.mark.timeout(30)
def test_page_and_idle_killer_without_a_browser(processes, start_proxy):
    """What the browser tests rely on, checked with raw sockets (runs even
    where Chromium cannot be installed): the page and its script come through
    the sidecar, the header-only app sees the header, and the idle killer cuts
    a quiet stream without the sidecar but not through it."""
    from harness.streams import watch_stream

    legacy_app, idle_killer = processes
    app = legacy_app(auth="header")
    proxy = start_proxy(sidecar_config(app))
    for path, ctype in (("/page", "text/html"), ("/page/app.js", "text/javascript"), ("/page/style.css", "text/css")):
        r = http.request(proxy.addr, "GET", path)
        assert r.status == 200 and r.head.get("content-type", "").startswith(ctype), (path, r.head.raw)
    assert b"new EventSource(url)" in http.request(proxy.addr, "GET", "/page/app.js").body.data

    direct, direct_killer = idle_killer(app)
    head, body = watch_stream(direct, f"{STREAM}?token={TOKEN}", 3.0)
    assert head.status == 401  # header-only app, no sidecar to move the token
    started = time.monotonic()
    head, body = watch_stream(direct, STREAM, IDLE_CUT + 1.5, headers=[("Authorization", f"Bearer {TOKEN}")])
    lasted = time.monotonic() - started
    # The app's stream is close-delimited, so the cut shows as an early EOF.
    assert head.status == 200 and body.data == b"retry: 3000\n\n", body.data
    assert lasted < IDLE_CUT + 1.0, f"the killer did not cut the quiet stream ({lasted:.2f} s)"
    assert killer_logged(direct_killer, "cut after"), killer_log(direct_killer)

    front, front_killer = idle_killer(proxy.addr)
    head, body = watch_stream(front, f"{STREAM}?token={TOKEN}", EVENT_INTERVAL + 0.6)
    assert head.status == 200, head.raw
    assert body.data.count(b":heartbeat\n\n") >= 3 and b'"n": 1' in body.data, body.data
    assert "cut after" not in killer_log(front_killer), killer_log(front_killer)
    assert [s["auth"] for s in app_streams(app)] == [None, "header", "header"]
