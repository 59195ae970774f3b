"""Shared streams (`share` on a route): one upstream event stream for many
identical clients, with replay, proxy-added ids, per-client isolation,
linger, metrics and config. Real proxy, real upstream processes over
loopback (the scriptable origin, and harness/legacy_app.py: a one-request-
at-a-time app), raw-socket clients, and Chromium for the browser check."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import MODE
from harness import client as http
from harness import sse
from harness import upstream as up
from harness.fanout import Fanout
from harness.legacy_app import PREAMBLE as APP_PREAMBLE
from harness.legacy_app import event_bytes, read_state
from harness.ops import scrape, sighup, wait_admin, wait_until
from harness.proxy import Proxy, base_config, free_port, run_cli, to_yaml
from harness.streams import open_stream

pytestmark = pytest.mark.skipif(MODE == "direct", reason="sidecar feature")

HARNESS = os.path.join(os.path.dirname(__file__), "harness")
HEAD = up.send(up.head_bytes(200, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]))
PREAMBLE = b": welcome\nretry: 1000\n\n"


def ev(k, name=None) -> bytes:
    return (b"id: %s\n" % name.encode() if name else b"") + b"data: event %d\ndata: line two\n\n" % k


def gate(event: threading.Event, limit: float = 15.0):
    """An upstream step that waits until the test sets `event`."""
    def run(sock, pending) -> bool:
        event.wait(limit)
        return True
    return up.call(run)


def config(upstream_addr, routes, admin_port=None, **overrides):
    cfg = base_config(upstream_addr, routes=routes, timeouts={"connect": "2s", "response": "10s"}, **overrides)
    if admin_port:
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    return cfg


def metric(admin, name, route):
    return scrape(admin).value(name, route=route)


def assert_sse_head(c):
    assert c.status == 200, c.head
    assert (c.get("content-type") or "").startswith("text/event-stream"), c.head
    assert c.get("cache-control") == "no-cache, no-transform", c.head
    assert (c.get("x-accel-buffering") or "").lower() == "no", c.head
    assert c.chunked, c.head


# --- the one-request-at-a-time legacy app ---------------------------------------

class LegacyApp:
    def __init__(self, tmp_path, gated: bool):
        self.port = free_port()
        self.addr = ("127.0.0.1", self.port)
        self.state_path = str(tmp_path / "app-state.json")
        self.gate_path = str(tmp_path / "gate") if gated else None
        argv = [sys.executable, os.path.join(HARNESS, "legacy_app.py"), "--port", str(self.port),
                "--state", self.state_path] + (["--gate", self.gate_path] if gated else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode(errors="replace")
            if os.path.exists(self.state_path):
                try:
                    socket.create_connection(self.addr, timeout=0.2).close()  # counts as a connection
                    break
                except OSError:
                    pass
            time.sleep(0.05)
        # The probe above is the app's first connection (no request: `no_request`).
        assert wait_until(lambda: self.state()["closed"] >= 1, 12), "legacy app did not come up"
        self.baseline = self.state()["accepted"]

    def state(self) -> dict:
        return read_state(self.state_path)

    def accepted(self) -> int:
        """Connections accepted since the startup probe."""
        return self.state()["accepted"] - self.baseline

    def open_gate(self):
        with open(self.gate_path, "w"):
            pass

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)


@pytest.fixture
def legacy_app(tmp_path):
    apps = []

    def start(gated: bool = False) -> LegacyApp:
        app = LegacyApp(tmp_path, gated)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.stop()


@pytest.mark.timeout(80)
def test_500_clients_share_one_connection_to_a_one_request_app(legacy_app, start_proxy):
    app = legacy_app(gated=True)
    n_events = 8
    proxy = start_proxy(config(f"127.0.0.1:{app.port}", [{"path": "/events", "share": True}]))
    target = f"/events?n={n_events}&interval=0.05"
    expected = APP_PREAMBLE + b"".join(event_bytes(k) for k in range(1, n_events + 1))
    with Fanout(proxy.addr, target, 500) as fan:
        assert fan.wait(lambda c: c.payload().startswith(APP_PREAMBLE), 40), \
            f"{sum(1 for c in fan.clients if c.head is None)} of 500 without a head; app: {app.accepted()} connections"
        assert app.accepted() == 1, app.state()
        app.open_gate()
        assert fan.wait(lambda c: c.complete, 30), \
            f"{sum(1 for c in fan.clients if not c.complete)} of 500 streams did not end"
        parsed = sse.parse(expected)
        for c in fan.clients:
            assert_sse_head(c)
            got = c.payload()
            assert got == expected, f"client payload differs: {got[-200:]!r}"
            assert sse.parse(bytes(c.body)).events == parsed.events
    state = app.state()
    assert app.accepted() == 1, state
    assert state["connections"][-1]["end"] == "complete" and state["connections"][-1]["events_sent"] == n_events
    # The upstream ended: the next request opens a new upstream stream.
    with Fanout(proxy.addr, target, 1) as again:
        assert again.wait(lambda c: c.complete, 10), again.clients[0].raw[-200:]
        assert again.clients[0].payload() == expected
    assert app.accepted() == 2, app.state()


@pytest.mark.timeout(60)
def test_without_share_the_app_serves_one_client_at_a_time(legacy_app, start_proxy):
    app = legacy_app()
    routes = [{"path": "/events", "share": True}]
    shared = start_proxy(config(f"127.0.0.1:{app.port}", routes))
    unshared = start_proxy(config(f"127.0.0.1:{app.port}", []))
    target = "/events?n=400&interval=0.05"  # 20 s of events at most

    # Unshared: the second client waits (nothing at all) while the first is open.
    with Fanout(unshared.addr, target, 1) as first:
        assert first.wait(lambda c: b"data: event 2\n" in c.body, 10), first.clients[0].raw
        with Fanout(unshared.addr, target, 1) as second:
            second.pump(time.monotonic() + 1.5)
            assert second.clients[0].raw == b"", second.clients[0].raw
            assert app.accepted() == 1, app.state()
            first.close()
            assert second.wait(lambda c: b"data: event 2\n" in c.body, 10), second.clients[0].raw
            assert second.clients[0].status == 200
    assert wait_until(lambda: app.state()["closed"] - app.baseline >= 2, 5), app.state()
    assert app.accepted() == 2, app.state()

    # Shared: both clients get events from one app connection.
    with Fanout(shared.addr, target, 1) as first:
        assert first.wait(lambda c: b"data: event 2\n" in c.body, 10), first.clients[0].raw
        with Fanout(shared.addr, target, 1) as second:
            assert second.wait(lambda c: len(c.events()) >= 3, 5), second.clients[0].raw
            assert app.accepted() == 3, app.state()
            b = [e.data for e in second.clients[0].events()]
            assert first.wait(lambda c: b[-1] in [e.data for e in c.events()], 5)
            a = [e.data for e in first.clients[0].events()]
            i = a.index(b[0])
            assert a[i:i + len(b)] == b, (a, b)


# --- who shares -----------------------------------------------------------------

def ticking(n=200, every=0.1):
    return [HEAD, up.send(up.chunk(PREAMBLE))] + \
        [s for k in range(1, n + 1) for s in (up.sleep(every), up.send(up.chunk(ev(k))))] + [up.hang(30)]


def test_share_key_credentials_and_key_headers(upstream, start_proxy):
    for path in ("/feed", "/tenant", "/open"):
        upstream.route(path, ticking())
    routes = [{"path": "/feed", "share": True},
              {"path": "/tenant", "share": {"key_headers": ["Authorization", "Cookie", "X-Tenant"]}},
              {"path": "/open", "share": {"key_headers": []}}]
    proxy = start_proxy(config(upstream.config_addr, routes))
    cases = [  # (target, headers of client 1, headers of client 2, upstream streams expected)
        ("/feed?c=1", [("Authorization", "Bearer a")], [("Authorization", "Bearer b")], 2),
        ("/feed?c=2", [("Authorization", "Bearer a")], [("Authorization", "Bearer a")], 1),
        ("/feed?c=3", [("Authorization", "Bearer a"), ("Cookie", "s=1")], [("Authorization", "Bearer a"), ("Cookie", "s=2")], 2),
        ("/feed?c=4", [("Authorization", "")], [], 2),  # absent and empty differ
        ("/tenant?c=5", [("Authorization", "Bearer a"), ("X-Tenant", "1")], [("Authorization", "Bearer a"), ("X-Tenant", "2")], 2),
        ("/tenant?c=6", [("Authorization", "Bearer a"), ("x-tenant", "1")], [("AUTHORIZATION", "Bearer a"), ("X-Tenant", "1")], 1),
        ("/open?c=7", [("Authorization", "Bearer a")], [("Authorization", "Bearer b")], 1),  # the unsafe setting
    ]
    fans = []
    try:
        for target, h1, h2, _ in cases:
            f1 = Fanout(proxy.addr, target, 1, h1)
            assert f1.wait(lambda c: len(c.events()) >= 1, 5), (target, f1.clients[0].raw)
            f2 = Fanout(proxy.addr, target, 1, h2)
            fans += [f1, f2]
            assert f2.wait(lambda c: len(c.events()) >= 1, 5), (target, f2.clients[0].raw)
        for target, h1, h2, streams in cases:
            seen = [r for r in upstream.requests if r.target == target]
            assert len(seen) == streams, (target, [r.raw_head for r in seen])
            # The upstream request is the first joiner's.
            first_auth = dict((k.lower(), v) for k, v in h1).get("authorization")
            assert seen[0].get("Authorization") == first_auth, seen[0].raw_head
    finally:
        for f in fans:
            f.close()


def test_a_moved_query_token_keys_the_stream_as_its_header(upstream, start_proxy):
    upstream.route("/feed", ticking())
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "token": {}, "share": True}]))
    fans = []
    try:
        for target in ("/feed?token=a&x=1", "/feed?token=b&x=1", "/feed?token=a&x=1"):
            f = Fanout(proxy.addr, target, 1)
            fans.append(f)
            assert f.wait(lambda c: len(c.events()) >= 1, 5), f.clients[0].raw
        seen = upstream.requests_for("/feed")
        assert len(seen) == 2, [r.raw_head for r in seen]  # a, b; the second "a" joined the first
        assert sorted(r.get("Authorization") for r in seen) == ["Bearer a", "Bearer b"]
        assert all(r.target == "/feed?x=1" for r in seen), [r.target for r in seen]
    finally:
        for f in fans:
            f.close()


def test_other_methods_and_http10_on_a_shared_route(upstream, start_proxy):
    upstream.route("/feed", ticking())
    upstream.route("/feed/post", up.echo)
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "share": True}]))
    for body in (b"one", b"two"):
        r = http.request(proxy.addr, "POST", "/feed/post", body=body, headers=[("Content-Type", "text/plain")])
        assert r.status == 200 and up.decode_echo(r.body.data)["body"] == body, r.head.raw
    assert len([r for r in upstream.requests if r.method == "POST"]) == 2
    with Fanout(proxy.addr, "/feed", 1) as keeper:
        assert keeper.wait(lambda c: len(c.events()) >= 1, 5)
        conn, head = open_stream(proxy.addr, "/feed", version="HTTP/1.0")
        try:
            assert head.status == 200 and head.framing == "close", head.raw
            body = conn.read_body(head, timeout=1.0, timeout_ok=True)
            got = sse.strip_heartbeats(body.data)
            assert got.startswith(PREAMBLE) and re.match(rb"(data: event \d+\ndata: line two\n\n)+$", got[len(PREAMBLE):]), got
        finally:
            conn.close()
    assert len([r for r in upstream.requests if r.method == "GET"]) == 1


# --- joining mid-stream ---------------------------------------------------------

@pytest.mark.parametrize("split", ["boundary", "mid_event", "mid_line"])
def test_late_joiner_gets_head_preamble_then_whole_events(upstream, start_proxy, split):
    first, rest = {"boundary": (b"", ev(2)), "mid_event": (b"data: event 2\n", b"data: line two\n\n"),
                   "mid_line": (b"data: ev", b"ent 2\ndata: line two\n\n")}[split]
    assert first + rest == ev(2)
    release = threading.Event()
    steps = [HEAD, up.send(up.chunk(PREAMBLE + ev(1) + first)), gate(release),
             up.send(up.chunk(rest + ev(3))), up.sleep(0.1), up.send(up.chunk(ev(4))), up.hang(30)]
    upstream.route("/feed", steps)
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "share": True}]))
    try:
        with Fanout(proxy.addr, "/feed", 1) as early:
            assert early.wait(lambda c: ev(1) in c.payload(), 5), early.clients[0].raw
            time.sleep(0.3)  # the partial event reaches the proxy
            late = early.add("/feed", 1)[0]
            # The upstream is held mid-stream: nothing but the preamble can come, however long we wait.
            assert early.wait(lambda c: c.payload().startswith(PREAMBLE), 5, [late]), late.raw
            early.pump(time.monotonic() + 0.4)
            assert_sse_head(late)
            assert late.payload() == PREAMBLE, f"before the next event, only the preamble: {late.payload()!r}"
            release.set()
            assert early.wait(lambda c: ev(4) in c.payload(), 5), [c.raw for c in early.clients]
            a, b = early.clients
            assert a.payload() == PREAMBLE + ev(1) + ev(2) + ev(3) + ev(4), a.payload()
            allowed = [PREAMBLE + ev(2) + ev(3) + ev(4)] + ([PREAMBLE + ev(3) + ev(4)] if split != "boundary" else [])
            assert b.payload() in allowed, b.payload()
            assert len(upstream.requests_for("/feed")) == 1
    finally:
        release.set()


# --- replay and ids ---------------------------------------------------------------

def test_replay_known_last_event_id_then_live_unknown_id_live_only(upstream, start_proxy):
    g1, g2 = threading.Event(), threading.Event()
    ids = [str(k) for k in range(1, 11)]
    steps = [HEAD, up.send(up.chunk(PREAMBLE))] + [up.send(up.chunk(ev(k, ids[k - 1]))) for k in range(1, 5)] + \
        [gate(g1)] + [up.send(up.chunk(ev(k, ids[k - 1]))) for k in range(5, 8)] + \
        [gate(g2)] + [up.send(up.chunk(ev(k, ids[k - 1]))) for k in range(8, 11)] + [up.hang(30)]
    upstream.route("/feed", steps)
    admin_port = free_port()
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "share": {"replay": {"events": 50, "age": "5m"}}}],
                               admin_port=admin_port))
    wait_admin(proxy)
    admin = ("127.0.0.1", admin_port)
    evs = lambda ks: b"".join(ev(k, ids[k - 1]) for k in ks)  # noqa: E731
    try:
        with Fanout(proxy.addr, "/feed", 1, [("Last-Event-ID", "zzz")]) as fan:
            keeper = fan.clients[0]
            assert fan.wait(lambda c: c.payload() == PREAMBLE + evs(range(1, 5)), 5), keeper.payload()
            (req,) = upstream.requests_for("/feed")
            assert not req.has("Last-Event-ID"), req.raw_head
            resumed = fan.add("/feed", 1, [("Last-Event-ID", "2")])[0]
            unknown = fan.add("/feed", 1, [("Last-Event-ID", "nope")])[0]
            fresh = fan.add("/feed", 1)[0]
            assert fan.wait(lambda c: c.payload().startswith(PREAMBLE), 5, [resumed, unknown, fresh])
            assert fan.wait(lambda c: c.payload() == PREAMBLE + evs([3, 4]), 5, [resumed]), resumed.payload()
            fan.pump(time.monotonic() + 0.4)  # the upstream is held: nothing more may come
            assert resumed.payload() == PREAMBLE + evs([3, 4]), resumed.payload()
            assert unknown.payload() == PREAMBLE and fresh.payload() == PREAMBLE, (unknown.payload(), fresh.payload())
            # Two ids were unknown ("zzz" of the first joiner, "nope"): a debug line each.
            assert wait_until(lambda: len(re.findall(r"Last-Event-ID.* is not in the replay buffer.*live stream only",
                                                     proxy.log_text())) == 2, 3), proxy.log_text()[-2000:]
            assert metric(admin, "sse_keepalive_replayed_events_total", "/feed") == 2
            g1.set()
            assert fan.wait(lambda c: ev(7, "7") in c.payload(), 5), [c.payload() for c in fan.clients]
            assert keeper.payload() == PREAMBLE + evs(range(1, 8))
            assert resumed.payload() == PREAMBLE + evs(range(3, 8))
            assert unknown.payload() == fresh.payload() == PREAMBLE + evs(range(5, 8))
            # The resumed client drops and reconnects with the last id it saw.
            fan.close([resumed])
            again = fan.add("/feed", 1, [("Last-Event-ID", "5")])[0]
            assert fan.wait(lambda c: c.payload() == PREAMBLE + evs([6, 7]), 5, [again]), again.payload()
            g2.set()
            assert fan.wait(lambda c: ev(10, "10") in c.payload(), 5, [keeper, again, fresh])
            assert again.payload() == PREAMBLE + evs(range(6, 11))
            assert [e.data for e in again.events()] == [f"event {k}\nline two" for k in range(6, 11)]
            m = scrape(admin)
            assert m.value("sse_keepalive_replayed_events_total", route="/feed") == 4, m.text
            assert m.value("sse_keepalive_shared_upstreams", route="/feed") == 1, m.text
            assert m.value("sse_keepalive_shared_clients", route="/feed") == 4, m.text
            assert len(upstream.requests_for("/feed")) == 1
    finally:
        g1.set()
        g2.set()


ID_RX = re.compile(r"^(.+)-(\d+)$")


def test_ids_added_to_an_id_less_upstream_and_never_over_upstream_ids(upstream, start_proxy):
    g = threading.Event()
    plain = [b"data: one\n\n", b": just a comment\n\n", b"event: x\ndata: two\n\n", b"data: three\n\n"]
    later = [b"id: u7\ndata: seven\n\n", b"data: eight\n\n"]
    steps = [HEAD, up.send(up.chunk(PREAMBLE))] + [up.send(up.chunk(p)) for p in plain] + [gate(g)] + \
        [up.send(up.chunk(p)) for p in later] + [up.hang(30)]
    upstream.route("/feed", steps)
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "share": {"ids": True, "replay": {"events": 50, "age": "5m"}}}]))
    try:
        with Fanout(proxy.addr, "/feed", 1) as fan:
            first = fan.clients[0]
            assert fan.wait(lambda c: [e.data for e in c.events()] == ["one", "two", "three"], 5), first.payload()
            got = [e.last_event_id for e in first.events()]
            m = [ID_RX.match(i) for i in got]
            assert all(m), got
            assert len({x.group(1) for x in m}) == 1 and [int(x.group(2)) for x in m] == [1, 2, 3], got
            expected = PREAMBLE + b"id: %s\n" % got[0].encode() + plain[0] + plain[1] + \
                b"id: %s\n" % got[1].encode() + plain[2] + b"id: %s\n" % got[2].encode() + plain[3]
            assert first.payload() == expected, first.payload()
            # The proxy's ids are known to replay.
            resumed = fan.add("/feed", 1, [("Last-Event-ID", got[0])])[0]
            assert fan.wait(lambda c: len(c.events()) >= 2, 5, [resumed]), resumed.payload()
            # Comment-only blocks are not kept for replay.
            assert resumed.payload() == PREAMBLE + b"id: %s\n" % got[1].encode() + plain[2] + \
                b"id: %s\n" % got[2].encode() + plain[3], resumed.payload()
            assert [e.data for e in resumed.events()] == ["two", "three"], resumed.payload()
            g.set()
            assert fan.wait(lambda c: b"data: eight\n\n" in c.payload(), 5), [c.payload() for c in fan.clients]
            for c in fan.clients:
                assert c.payload().endswith(later[0] + later[1]), c.payload()[-120:]
                assert [e.last_event_id for e in c.events()][-2:] == ["u7", "u7"]
    finally:
        g.set()


# --- isolation ------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


@pytest.mark.timeout(60)
def test_a_stalled_client_among_100_is_dropped_the_others_get_everything(upstream, start_proxy):
    g = threading.Event()
    done = {}
    # The kernel alone holds ~3 MiB for a client that reads nothing (the proxy's socket send
    # buffer grows to tcp_wmem's 4 MiB), so the stream must be well beyond that: 5 MiB.
    payload = b"x" * 1012
    events = [b"data: %04d %s\n\n" % (k, payload) for k in range(1, 5121)]  # 1 KiB each
    batches = [b"".join(events[i:i + 16]) for i in range(0, len(events), 16)]  # 16 KiB every 5 ms

    def mark_done(sock, pending):
        done["t"] = time.monotonic()
        return True
    steps = [HEAD, up.send(up.chunk(PREAMBLE)), gate(g)] + \
        [s for b in batches for s in (up.send(up.chunk(b)), up.sleep(0.005))] + \
        [up.call(mark_done), up.send(up.LAST_CHUNK)]
    upstream.route("/feed", steps)
    admin_port = free_port()
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "share": True}], admin_port=admin_port,
                               limits={"stream_buffer": "64KiB"}, heartbeat={"interval": "10s", "on_open": False}))
    wait_admin(proxy)
    admin = ("127.0.0.1", admin_port)
    expected = PREAMBLE + b"".join(events)
    try:
        with Fanout(proxy.addr, "/feed", 99) as fan:
            stalled = fan.add("/feed", 1, rcvbuf=4096, read=False)[0]
            readers = fan.clients[:99]
            assert fan.wait(lambda c: c.payload() == PREAMBLE, 15, readers), "not every client joined"
            assert wait_until(lambda: metric(admin, "sse_keepalive_shared_clients", "/feed") == 100, 5), scrape(admin).text
            rss_before = rss_kib(proxy.proc.pid)
            g.set()
            started = time.monotonic()
            assert fan.wait(lambda c: c.complete, 30, readers), \
                f"{sum(1 for c in readers if not c.complete)} of 99 readers did not get the whole stream"
            finished = time.monotonic()
            rss_after = rss_kib(proxy.proc.pid)
            log = proxy.log_text()[-3000:]
            assert "t" in done, f"the upstream did not get to send everything: {upstream.errors}\n{log}"
            # On time, with generous bounds: the upstream paces 5 MiB over ~1.6 s; neither it nor the
            # readers were held back by the stalled client (which never read during this).
            assert done["t"] - started < 12, f"the upstream was slowed: {done['t'] - started:.1f} s"
            assert finished - done["t"] < 8, f"the readers lagged {finished - done['t']:.1f} s behind the upstream"
            for c in readers:  # (heartbeats are 10 s apart here: the body is compared as it is, fast)
                assert bytes(c.body) == expected, f"a reader missed bytes: {len(c.body)} of {len(expected)}\n{log}"
            m = scrape(admin)
            assert m.value("sse_keepalive_shared_clients_dropped_total", route="/feed") == 1, m.text
            assert proxy.wait_for_log(r"dropped from .*shared stream.*/feed: \d+ bytes queued for it", 3), proxy.log_text()[-2000:]
            # A queue without a bound would hold the whole 5 MiB stream for the stalled client.
            assert rss_after - rss_before < 64 * 1024, f"RSS grew {rss_after - rss_before} KiB"
            # The stalled client now reads what it was given: a prefix of the stream, then the end (the
            # proxy cannot finish an event for a client that reads nothing, so the cut may be mid-event).
            stalled.sock.setblocking(True)
            stalled.sock.settimeout(5)
            for _ in range(10000):  # bounded: the stream is 5 MiB
                data = stalled.sock.recv(1 << 16)
                if not data:
                    stalled.on_eof()
                    break
                stalled.feed(data)
            got = bytes(stalled.body)
            assert expected.startswith(got) and len(got) < len(expected), (len(got), got[-60:])
            assert stalled.eof_at is not None
    finally:
        g.set()


def test_a_burst_larger_than_the_stream_buffer_drops_no_reading_client(upstream, start_proxy):
    """The app writes 256 KiB of small events at once (a backlog flushed); each event is 1 KiB,
    far below `limits.stream_buffer` (64 KiB). Clients that read (and have nothing queued)
    are not dropped; they get every event."""
    g = threading.Event()
    events = [b"data: %04d %s\n\n" % (k, b"y" * 1012) for k in range(1, 257)]
    upstream.route("/feed", [HEAD, up.send(up.chunk(PREAMBLE)), gate(g), up.send(up.chunk(b"".join(events))),
                             up.sleep(0.3), up.send(up.LAST_CHUNK)])
    admin_port = free_port()
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "share": True}], admin_port=admin_port,
                               limits={"stream_buffer": "64KiB"}))
    wait_admin(proxy)
    try:
        with Fanout(proxy.addr, "/feed", 3) as fan:
            assert fan.wait(lambda c: c.payload() == PREAMBLE, 5), [c.raw for c in fan.clients]
            g.set()
            assert fan.wait(lambda c: c.complete, 10), [len(c.body) for c in fan.clients]
            m = scrape(("127.0.0.1", admin_port))
            for c in fan.clients:
                assert c.payload() == PREAMBLE + b"".join(events), \
                    f"got {len(c.payload())} of {len(PREAMBLE) + 256 * 1024} bytes\n{proxy.log_text()[-1500:]}"
            assert m.value("sse_keepalive_shared_clients_dropped_total", route="/feed") == 0, m.text
    finally:
        g.set()


# --- lifetime: linger, end of the upstream, errors ---------------------------------

@pytest.mark.timeout(40)
def test_linger_keeps_the_upstream_for_a_rejoin_then_closes_it(upstream, start_proxy):
    upstream.route("/feed", ticking(n=300, every=0.05))
    admin_port = free_port()
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "share": {"linger": "2s"}}], admin_port=admin_port))
    wait_admin(proxy)
    admin = ("127.0.0.1", admin_port)
    with Fanout(proxy.addr, "/feed", 1) as a:
        assert a.wait(lambda c: len(c.events()) >= 2, 5)
    time.sleep(0.3)
    with Fanout(proxy.addr, "/feed", 1) as b:
        assert b.wait(lambda c: len(c.events()) >= 2, 5)
        assert len(upstream.connections) == 1 and len(upstream.requests_for("/feed")) == 1
    left = time.monotonic()
    time.sleep(0.5)
    m = scrape(admin)
    assert upstream.connections[0].closed_by_peer is None, "closed before the linger was over"
    assert m.value("sse_keepalive_shared_upstreams", route="/feed") == 1, m.text
    assert m.value("sse_keepalive_shared_clients", route="/feed") == 0, m.text
    assert wait_until(lambda: upstream.connections[0].closed_by_peer, 8), "upstream not closed after the linger"
    assert upstream.connections[0].closed_by_peer - left >= 1.0, "closed well before the 2 s linger"
    assert wait_until(lambda: metric(admin, "sse_keepalive_shared_upstreams", "/feed") == 0, 3), scrape(admin).text
    with Fanout(proxy.addr, "/feed", 1) as c:
        assert c.wait(lambda c: len(c.events()) >= 1, 5)
        assert len(upstream.requests_for("/feed")) == 2


def test_upstream_end_ends_every_client_at_the_same_event(upstream, start_proxy):
    g = threading.Event()
    upstream.route("/feed", [HEAD, up.send(up.chunk(PREAMBLE)), gate(g), up.send(up.chunk(ev(1) + ev(2))),
                             up.sleep(0.05), up.send(up.chunk(ev(3) + b"data: cut off")), up.send(up.LAST_CHUNK)])
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "share": True}]))
    try:
        with Fanout(proxy.addr, "/feed", 5) as fan:
            assert fan.wait(lambda c: c.payload() == PREAMBLE, 5), [c.raw for c in fan.clients]
            g.set()
            assert fan.wait(lambda c: c.complete and c.eof_at is not None, 5), [c.raw[-100:] for c in fan.clients]
            for c in fan.clients:
                assert c.payload() == PREAMBLE + ev(1) + ev(2) + ev(3), c.payload()
        with Fanout(proxy.addr, "/feed", 1) as again:  # a new upstream stream (the gate is open now)
            assert again.wait(lambda c: c.complete, 5), again.clients[0].raw
            assert again.clients[0].payload() == PREAMBLE + ev(1) + ev(2) + ev(3)
        assert len(upstream.requests_for("/feed")) == 2
    finally:
        g.set()


def test_a_non_stream_answer_goes_to_every_waiting_client(upstream, start_proxy):
    answers = [[up.sleep(0.8)] + up.response(503, [("Content-Type", "text/plain")], b"busy\n"), ticking()]
    upstream.route("/feed", lambda req: answers.pop(0) if len(answers) > 1 else answers[0])
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "share": True}]))
    with Fanout(proxy.addr, "/feed", 3) as fan:
        assert fan.wait(lambda c: c.eof_at is not None, 6), [c.raw for c in fan.clients]
        for c in fan.clients:
            assert c.status == 503 and bytes(c.body) == b"busy\n", c.raw
            assert "close" in (c.get("connection") or "").lower(), c.head
    assert len(upstream.requests_for("/feed")) == 1
    with Fanout(proxy.addr, "/feed", 1) as fan:
        assert fan.wait(lambda c: len(c.events()) >= 1, 5), fan.clients[0].raw
    assert len(upstream.requests_for("/feed")) == 2


def test_each_client_gets_the_routes_retry_hint_before_the_preamble(upstream, start_proxy):
    upstream.route("/feed", [HEAD, up.send(up.chunk(b": welcome\n\n")), up.sleep(0.3), up.send(up.chunk(ev(1))), up.hang(30)])
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "share": True, "retry": {"base": "2s", "jitter": "1s"}}]))
    with Fanout(proxy.addr, "/feed", 3) as fan:
        assert fan.wait(lambda c: ev(1) in c.payload(), 5), [c.raw for c in fan.clients]
        for c in fan.clients:
            m = re.fullmatch(rb"retry: (\d+)\n\n: welcome\n\n" + re.escape(ev(1)), c.payload())
            assert m and 2000 <= int(m.group(1)) <= 3000, c.payload()
    assert len(upstream.requests_for("/feed")) == 1


def test_reload_keeps_clients_and_changed_share_settings_open_a_new_stream(upstream, start_proxy):
    upstream.route("/feed", ticking(n=200, every=0.05))
    cfg = config(upstream.config_addr, [{"path": "/feed", "share": {"linger": "5s"}}])
    proxy = start_proxy(cfg)
    with Fanout(proxy.addr, "/feed", 1) as fan:
        old = fan.clients[0]
        assert fan.wait(lambda c: len(c.events()) >= 2, 5)
        cfg["routes"] = [{"path": "/feed", "share": {"linger": "6s"}}]
        assert sighup(proxy, cfg), proxy.log_text()[-1500:]
        before = len(old.events())
        new = fan.add("/feed", 1)[0]
        assert fan.wait(lambda c: len(c.events()) >= 3, 5, [new]), new.raw
        assert len(old.events()) > before and old.eof_at is None, "the open stream lost its client on reload"
        assert len(upstream.requests_for("/feed")) == 2, "new share settings must not join the old stream"
        same = fan.add("/feed", 1)[0]
        assert fan.wait(lambda c: len(c.events()) >= 1, 5, [same])
        assert len(upstream.requests_for("/feed")) == 2, "a join with the new settings reuses the new stream"
        # Each client sees an unbroken run of events (byte-exact, no gaps) from where it joined.
        for c in fan.clients:
            got = [int(e.data.split()[1]) for e in c.events()]
            assert got == list(range(got[0], got[0] + len(got))), got


@pytest.mark.timeout(30)
def test_sigterm_ends_each_shared_client_at_an_event_boundary(upstream, tmp_path):
    # Events of two writes each: a stream is mid-event half of the time.
    steps = [HEAD, up.send(up.chunk(PREAMBLE))]
    for k in range(1, 400):
        steps += [up.sleep(0.01), up.send(up.chunk(b"data: event %d\n" % k)), up.sleep(0.01), up.send(up.chunk(b"data: line two\n\n"))]
    upstream.route("/feed", steps + [up.hang(30)])
    proxy = Proxy(config(upstream.config_addr, [{"path": "/feed", "share": True}], shutdown={"grace": "2s"},
                         log={"level": "debug", "access": True}), str(tmp_path))
    try:
        run_until_sigterm(proxy, upstream)
    finally:
        proxy.stop()


def run_until_sigterm(proxy, upstream):
    with Fanout(proxy.addr, "/feed", 6) as fan:
        assert fan.wait(lambda c: len(c.events()) >= 2, 5)
        proxy.proc.send_signal(signal.SIGTERM)
        assert fan.wait(lambda c: c.eof_at is not None, 8), [bytes(c.body[-80:]) for c in fan.clients]
        for c in fan.clients:
            assert c.complete, f"no last chunk: {bytes(c.raw[-80:])!r}"
            assert c.payload().endswith(b"data: line two\n\n"), c.payload()[-80:]
            got = [int(e.data.split("\n")[0].split()[1]) for e in c.events()]
            assert got == list(range(got[0], got[0] + len(got))), got
    assert proxy.proc.wait(6) == 0
    assert wait_until(lambda: proxy.log_text().count("end=shutdown") >= 6, 3), proxy.log_text()[-2000:]
    assert wait_until(lambda: upstream.connections[0].closed_by_peer, 3), "upstream not closed"


def test_a_non_stream_answer_larger_than_the_stream_buffer_is_a_502(upstream, start_proxy):
    upstream.route("/feed", [up.sleep(0.5)] + up.response(404, [("Content-Type", "text/html")], b"x" * (200 * 1024)))
    proxy = start_proxy(config(upstream.config_addr, [{"path": "/feed", "share": True}], limits={"stream_buffer": "64KiB"}))
    with Fanout(proxy.addr, "/feed", 2) as fan:
        assert fan.wait(lambda c: c.eof_at is not None, 6), [c.raw[:200] for c in fan.clients]
        assert [c.status for c in fan.clients] == [502, 502], [c.head for c in fan.clients]
    assert len(upstream.requests_for("/feed")) == 1


# --- metrics, heartbeats ---------------------------------------------------------

def test_metrics_and_heartbeats_of_shared_streams(upstream, start_proxy):
    upstream.route("/a", [HEAD, up.send(up.chunk(PREAMBLE)), up.hang(30)])
    upstream.route("/b", ticking())
    admin_port = free_port()
    routes = [{"path": "/a", "share": {"linger": "1s"}}, {"path": "/b", "share": {"linger": "1s"}}]
    proxy = start_proxy(config(upstream.config_addr, routes, admin_port=admin_port))
    wait_admin(proxy)
    admin = ("127.0.0.1", admin_port)
    m = scrape(admin)
    for family, kind in (("sse_keepalive_shared_upstreams", "gauge"), ("sse_keepalive_shared_clients", "gauge"),
                         ("sse_keepalive_replayed_events_total", "counter"),
                         ("sse_keepalive_shared_clients_dropped_total", "counter")):
        assert m.type.get(family) == kind and family in m.help, (family, m.text)
    with Fanout(proxy.addr, "/a", 3) as fan:
        fan.add("/b", 1, [("Authorization", "Bearer 1")])
        fan.add("/b", 1, [("Authorization", "Bearer 2")])
        assert fan.wait(lambda c: c.payload().startswith(PREAMBLE), 5), [c.raw for c in fan.clients]
        fan.pump(time.monotonic() + 1.0)  # >= 3 heartbeat intervals (300 ms) on the quiet /a
        for c in fan.clients[:3]:
            assert c.payload() == PREAMBLE and bytes(c.body).count(b":heartbeat\n\n") >= 2, bytes(c.body)
        m = scrape(admin)
        assert m.value("sse_keepalive_shared_upstreams", route="/a") == 1, m.text
        assert m.value("sse_keepalive_shared_clients", route="/a") == 3, m.text
        assert m.value("sse_keepalive_shared_upstreams", route="/b") == 2, m.text
        assert m.value("sse_keepalive_shared_clients", route="/b") == 2, m.text
        assert m.value("sse_keepalive_streams_open", route="/a") == 3, m.text
        assert m.value("sse_keepalive_streams_open", route="/b") == 2, m.text
        assert m.value("sse_keepalive_heartbeats_total", route="/a") >= 6, m.text
    assert len(upstream.requests_for("/a")) == 1 and len(upstream.requests_for("/b")) == 2

    def all_zero():
        m = scrape(admin)
        return all(m.value(name, route=r) == 0 for name in ("sse_keepalive_shared_upstreams", "sse_keepalive_shared_clients")
                   for r in ("/a", "/b"))
    assert wait_until(all_zero, 6), scrape(admin).text


# --- a browser reconnecting with proxy-added ids ------------------------------------

PAGE = b"""<!doctype html><meta charset="utf-8"><title>shared</title><script>
window.seen = {opens: 0, errors: 0, events: []};
const es = new EventSource('/feed');
es.onopen = () => { window.seen.opens++; };
es.onerror = () => { window.seen.errors++; };
es.onmessage = (e) => { window.seen.events.push([e.data, e.lastEventId]); };
</script>"""


@pytest.mark.timeout(60)
def test_chromium_reconnecting_gets_every_event_once_with_proxy_ids(upstream, start_proxy):
    from debian_packages import ensure_debian_package
    from test_browser import Chromium

    n = 40
    upstream.route("/page", up.response(200, [("Content-Type", "text/html")], PAGE))
    upstream.route("/feed", [HEAD, up.send(up.chunk(b"retry: 150\n\n"))] +
                   [s for k in range(1, n + 1) for s in (up.sleep(0.1), up.send(up.chunk(b"data: %d\n\n" % k)))] +
                   [up.hang(30)])
    routes = [{"path": "/feed", "max_stream_duration": "1s",
               "share": {"ids": True, "replay": {"events": 200, "age": "5m"}}}]
    proxy = start_proxy(config(upstream.config_addr, routes, log={"level": "debug", "access": True}))
    browser = Chromium(ensure_debian_package("chromium", "chromium"))
    try:
        tab = browser.open(f"http://127.0.0.1:{proxy.addr[1]}/page")
        deadline = time.monotonic() + 20
        seen = {}
        while time.monotonic() < deadline:
            text = tab.evaluate("window.seen ? JSON.stringify(window.seen) : null")
            seen = json.loads(text) if text else {}
            if len(seen.get("events", [])) >= n:
                break
            time.sleep(0.1)
    finally:
        browser.close()
    context = f"page saw: {json.dumps(seen)[:1500]}\nproxy log tail:\n{proxy.log_text()[-1500:]}"
    assert [d for d, _ in seen.get("events", [])] == [str(k) for k in range(1, n + 1)], context
    assert seen["opens"] >= 3, "the browser did not reconnect (max_stream_duration 1 s over 4 s)\n" + context
    ids = [ID_RX.match(i) for _, i in seen["events"]]
    assert all(ids) and [int(m.group(2)) for m in ids] == list(range(1, n + 1)), context
    assert len(upstream.requests_for("/feed")) == 1, "the reconnects opened new upstream streams"
    assert proxy.log_text().count("end=max_duration") >= 2, context


# --- config ---------------------------------------------------------------------

def write_config(tmp_path, text):
    path = str(tmp_path / "sse-keepalive.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("value,key", [
    ("3", "share"),
    ('"yes please"', "share"),
    ("{replay: {events: -1}}", "events"),
    ("{replay: {events: 10, age: soon}}", "age"),
    ("{bogus: 1}", "bogus"),
    ("{linger: forever}", "linger"),
    ("{ids: maybe}", "ids"),
    ("{key_headers: Authorization}", "key_headers"),
])
def test_bad_share_values_are_config_errors(tmp_path, value, key):
    text = f'upstream: "127.0.0.1:3000"\nroutes:\n  - path: /feed\n    share: {value}\n'
    path = write_config(tmp_path, text)
    r = run_cli(["check", "--config", path])
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    m = re.search(re.escape(path) + r":(\d+):(\d+): ([^:\s]+): (.+)", r.stderr)
    assert m and int(m.group(1)) == 4 and key in m.group(3), r.stderr


def test_check_shows_share_settings(tmp_path):
    cfg = {"upstream": "127.0.0.1:3000", "admin": "off",
           "routes": [{"path": "/plain"}, {"path": "/feed", "share": True},
                      {"path": "/custom", "share": {"key_headers": ["Authorization", "X-Tenant"], "ids": True,
                                                    "replay": {"events": 77, "age": "3m"}, "linger": "12s"}}]}
    path = write_config(tmp_path, to_yaml(cfg) + "\n")
    r = run_cli(["check", "--config", path])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    plain, feed, custom = out.index("/plain"), out.index("/feed"), out.index("/custom")
    assert "share" not in out[plain:feed], out
    feed_part, custom_part = out[feed:custom], out[custom:]
    for text in ("share", "Authorization", "Cookie", "5s"):
        assert text in feed_part, (text, out)
    for text in ("share", "X-Tenant", "77", "3m", "12s", "true"):
        assert text in custom_part, (text, out)
    assert "Cookie" not in custom_part, out
    # What check prints is itself a valid config.
    again = write_config(tmp_path, out)
    assert run_cli(["check", "--config", again]).returncode == 0
