"""Operations (issue 5; docs/behaviour.md "Reload and shutdown", docs/configuration.md, docs/metrics.md):
SIGHUP reloads with open streams, broken reloads, listen-address changes,
graceful shutdown, the admin endpoint's metrics and health, workers, and file
descriptors coming back after a burst of traffic.

Timing: heartbeat intervals of 300 ms / 1 s, tolerances of about 2x."""
import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from harness import client as http
from harness import sse
from harness import upstream as up
from harness.ops import (HealthPoller, StreamRecorder, accepts_request, fd_count, healthz, refuses,
                         scrape, sighup, wait_admin, wait_until, write_config)
from harness.proxy import Proxy, Quoted, base_config, free_port, to_yaml
from harness.proxy import binary_path as proxy_binary
from harness.streams import open_stream
from harness.timing import gaps, median

pytestmark = pytest.mark.proxy_only

HB = b":heartbeat\n\n"
SECRET = "Zk9opsSecret42"


@pytest.fixture(autouse=True)
def _binary():
    from conftest import require_binary
    require_binary()


@contextlib.contextmanager
def own_proxy(config, **kwargs):
    """A proxy the test itself stops or signals (the start_proxy fixture
    treats a proxy that exited during the test as a failure)."""
    p = Proxy(config, **kwargs)
    try:
        yield p
    finally:
        p.stop()


def admin_config(upstream_addr, **overrides):
    port = free_port()
    cfg = base_config(upstream_addr, admin={"listen": f"127.0.0.1:{port}"}, **overrides)
    return cfg, ("127.0.0.1", port)


def heartbeat_times(pieces, since=float("-inf"), until=float("inf")) -> list[float]:
    """Arrival time of every heartbeat in pieces (streams here carry nothing
    else until their end) within [since, until]."""
    out = []
    for t, data in pieces:
        if since <= t <= until:
            out += [t] * data.count(HB)
    return out


STREAM_HEAD = up.send(up.head_bytes(200, [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]))


def hanging_stream(seconds=20.0):
    return [STREAM_HEAD, up.hang(seconds)]


def wait_upstream_requests(upstream, prefix, n, timeout=3.0):
    return wait_until(lambda: len(upstream.requests_for(prefix)) >= n, timeout)


# --- 1. reload with open streams ---------------------------------------------------

@pytest.mark.timeout(30)
def test_reloads_keep_open_streams_and_switch_their_heartbeat_interval(upstream, start_proxy):
    """Three SIGHUPs (heartbeat 300ms -> 1s -> 300ms, then a route moved to
    another upstream) while three event streams are open: every stream keeps
    its connection and ends normally after the reloads, its heartbeat gaps
    follow the interval in force, and new connections go to the new upstream."""
    after = 6.0  # the upstream sends one event, then ends the stream, this long after the request
    upstream.route("/events", up.event_stream([(after, b"data: after-reloads\n\n")]))
    with up.Upstream() as other:
        other.route("/moved", up.response(200, [("Content-Type", "text/plain")], b"from-other"))

        def cfg(interval, moved_to):
            return base_config(upstream.config_addr, listen_port=port, routes=[
                {"path": "/events", "heartbeat": interval},
                {"path": "/moved", "upstream": moved_to},
            ])

        port = free_port()
        p = start_proxy(cfg("300ms", upstream.config_addr))
        streams = [open_stream(p.addr, f"/events/{i}") for i in range(3)]
        assert all(head.status == 200 for _, head in streams)
        t0 = time.monotonic()
        recs = [StreamRecorder(conn, head, limit=after + 3) for conn, head in streams]
        assert up.decode_echo(http.request(p.addr, "GET", "/moved/a").body.data)["target"] == "/moved/a"

        # an ordinary request in flight across the first reload
        upstream.route("/moved/slow", [up.sleep(0.6)] + up.response(200, [], b"slow-done"))
        inflight = {}
        slow = threading.Thread(target=lambda: inflight.update(r=http.request(p.addr, "GET", "/moved/slow", timeout=5)),
                                daemon=True)
        time.sleep(max(0.0, t0 + 1.0 - time.monotonic()))
        slow.start()
        time.sleep(max(0.0, t0 + 1.3 - time.monotonic()))
        r1 = sighup(p, cfg("1s", upstream.config_addr))
        assert r1, f"no 'configuration reloaded' after SIGHUP 1:\n{p.log_text()[-2000:]}"
        slow.join(5)
        assert inflight.get("r") and inflight["r"].status == 200 and inflight["r"].body.data == b"slow-done", inflight
        time.sleep(max(0.0, t0 + 4.0 - time.monotonic()))
        r2 = sighup(p, cfg("300ms", upstream.config_addr))
        assert r2, f"no 'configuration reloaded' after SIGHUP 2:\n{p.log_text()[-2000:]}"
        time.sleep(max(0.0, t0 + 5.3 - time.monotonic()))
        r3 = sighup(p, cfg("300ms", other.config_addr))
        assert r3, f"no 'configuration reloaded' after SIGHUP 3:\n{p.log_text()[-2000:]}"
        assert r1.level == r2.level == r3.level == "notice", (r1, r2, r3)

        # new connections after the third reload go to the new upstream
        resp = http.request(p.addr, "GET", "/moved/b")
        assert resp.status == 200 and resp.body.data == b"from-other", resp.head.raw + resp.body.data
        assert [r.target for r in other.requests] == ["/moved/b"]
        assert [r.target for r in upstream.requests_for("/moved")] == ["/moved/a", "/moved/slow"]

        for rec in recs:
            assert rec.join(after + 4), "stream reader still running"
        for i, rec in enumerate(recs):
            assert rec.error is None, rec.error
            body = rec.body
            assert body.complete, f"stream {i} did not end with its final chunk: {body.data[-200:]!r}"
            assert sse.strip_heartbeats(body.data) == b"data: after-reloads\n\n", body.data
            assert rec.ended_at - t0 >= after - 0.3, f"stream {i} ended early ({rec.ended_at - t0:.2f}s)"

            before = heartbeat_times(body.pieces, t0, r1.time)
            assert len(before) >= 3 and median(gaps(before)) <= 0.5, \
                f"stream {i}: 300ms phase heartbeats at {[round(t - t0, 2) for t in before]}"
            slow = heartbeat_times(body.pieces, r1.time + 0.35, r2.time)
            assert 1 <= len(slow) <= 3, \
                f"stream {i}: 1s phase ({r1.time - t0:.2f}..{r2.time - t0:.2f}s) heartbeats at " \
                f"{[round(t - t0, 2) for t in slow]}"
            assert all(g >= 0.7 for g in gaps(slow)), \
                f"stream {i}: gaps {gaps(slow)} after the reload to 1s (old 300ms interval still in use)"
            fast = heartbeat_times(body.pieces, r2.time, r3.time)
            assert len(fast) >= 3 and median(gaps(fast)) <= 0.5, \
                f"stream {i}: back at 300ms ({r2.time - t0:.2f}..{r3.time - t0:.2f}s), heartbeats at " \
                f"{[round(t - t0, 2) for t in fast]}"
        # the proxy never closed an upstream stream connection early
        stream_conns = {r.conn_id for r in upstream.requests_for("/events")}
        assert len(stream_conns) == 3
        for rec in upstream.connections:
            if rec.conn_id in stream_conns:
                assert rec.closed_by_peer is None or rec.closed_by_peer >= t0 + after - 0.3, rec


# --- 2. broken reload ---------------------------------------------------------------

def broken_unknown_key(base_text):
    text = base_text.replace("  interval: 300ms\n", "  interval: 1s\n  intervall: 1s\n", 1)
    return text, "intervall"


def broken_bad_duration(base_text):
    text = base_text.replace("heartbeat: 300ms", "heartbeat: 10 parsecs", 1)
    return text, "heartbeat"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("breaker", [broken_unknown_key, broken_bad_duration], ids=["unknown_key", "bad_duration"])
def test_broken_reload_keeps_old_config_and_a_later_valid_reload_works(upstream, start_proxy, breaker):
    upstream.route("/events", hanging_stream())
    with up.Upstream() as other:
        other.route("/r", up.response(200, [("Content-Type", "text/plain")], b"from-other"))
        port = free_port()

        def cfg(r_upstream, events_hb):
            return base_config(upstream.config_addr, listen_port=port, routes=[
                {"path": "/events", "heartbeat": events_hb},
                {"path": "/r", "upstream": r_upstream},
            ])

        p = start_proxy(cfg(upstream.config_addr, "300ms"))
        # serving (this also means the signal handlers are in place, see the report on
        # SIGHUP right after "listening on")
        assert up.decode_echo(http.request(p.addr, "GET", "/r/0").body.data)["target"] == "/r/0"
        # the broken file would also move /r to the other upstream, were it half-applied
        good_text = to_yaml(cfg(other.config_addr, "300ms")) + "\n"
        bad_text, key = breaker(good_text)
        assert bad_text != good_text
        bad_line = next(n for n, line in enumerate(bad_text.split("\n"), 1)
                        if re.match(rf"\s*(- )?{key}:", line) and (key != "heartbeat" or "parsecs" in line))
        write_config(p, bad_text)
        err = sighup(p, expect=re.escape(p.config_path), timeout=3)
        assert err, f"no log line naming {p.config_path} after a broken reload:\n{p.log_text()[-2000:]}"
        assert err.level == "error", err
        m = re.search(re.escape(p.config_path) + r":(\d+)", err.text)
        assert m and int(m.group(1)) == bad_line, f"expected {p.config_path}:{bad_line} in {err.text!r}"
        assert key in err.text.split(p.config_path, 1)[1], f"key {key!r} not named: {err.text!r}"
        assert p.alive()
        time.sleep(0.1)
        assert not p.wait_for_log("configuration reloaded", timeout=0.1), p.log_text()[-2000:]

        # the old config still serves: /r on the first upstream, /events at 300ms
        resp = http.request(p.addr, "GET", "/r/1")
        assert resp.status == 200 and up.decode_echo(resp.body.data)["target"] == "/r/1", resp.body.data
        assert not other.requests
        conn, head = open_stream(p.addr, "/events/1")
        try:
            body = http.read_stream(conn, head, 1.1)
        finally:
            conn.close()
        hbs = heartbeat_times(body.pieces)
        assert len(hbs) >= 2 and min(hbs) - head.time <= 0.6, \
            f"heartbeats at {[round(t - head.time, 2) for t in hbs]} (old interval 300ms)"

        # a later valid reload is applied
        ok = sighup(p, cfg(other.config_addr, "1s"))
        assert ok, f"valid reload after a broken one not applied:\n{p.log_text()[-2000:]}"
        resp = http.request(p.addr, "GET", "/r/2")
        assert resp.status == 200 and resp.body.data == b"from-other", resp.body.data
        assert [r.target for r in other.requests] == ["/r/2"]


# --- 3. listen address change ------------------------------------------------------

@pytest.mark.timeout(20)
def test_reload_moving_the_listen_port_keeps_established_streams(upstream, start_proxy):
    events = [(0.2, b"data: n%d\n\n" % i) for i in range(15)]  # 3 s of events
    upstream.route("/events", up.event_stream(events))
    old_port, new_port = free_port(), free_port()
    cfg = base_config(upstream.config_addr, listen_port=old_port)
    p = start_proxy(cfg)
    old, new = ("127.0.0.1", old_port), ("127.0.0.1", new_port)
    conn, head = open_stream(old, "/events")
    assert head.status == 200
    rec = StreamRecorder(conn, head, limit=8)
    time.sleep(0.3)

    line = sighup(p, {**cfg, "listen": f"127.0.0.1:{new_port}"})
    assert line, f"no 'configuration reloaded':\n{p.log_text()[-2000:]}"
    reloaded = line.time
    assert p.wait_for_log(rf"listening on 127\.0\.0\.1:{new_port}\b", timeout=1), p.log_text()[-2000:]
    assert accepts_request(new), "the new listen port does not answer"
    assert wait_until(lambda: refuses(old), 2.0), "the old listen port still accepts connections"

    assert rec.join(8)
    assert rec.error is None, rec.error
    body = rec.body
    assert body.complete, f"stream on the old port cut by the reload: {body.data[-200:]!r}"
    assert sse.strip_heartbeats(body.data) == b"".join(d for _, d in events), body.data
    later = [t for t, d in body.pieces if b"data:" in d and t > reloaded + 0.5]
    assert len(later) >= 5, "few events arrived after the reload"
    assert accepts_request(new)


@pytest.mark.timeout(30)
def test_sighup_right_after_listening_is_announced_does_not_kill_the_proxy(upstream, tmp_path):
    """Once `listening on` is logged (and the port accepts connections), a
    SIGHUP must reload, not kill the process (e.g. a config manager reloading
    a service that has just started). To make a short window between
    announcing the listener and installing the signal handlers reachable, the
    proxy runs niced on one CPU next to a busy loop, and the SIGHUP is sent
    as soon as the line is read. Up to 30 starts or 6 s, stopping at the first death."""
    path = tmp_path / "sse-keepalive.yaml"
    path.write_text(to_yaml(base_config(upstream.config_addr)) + "\n")
    cpu = min(os.sched_getaffinity(0))
    hog = subprocess.Popen([sys.executable, "-c",
                            "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end: pass"],
                           preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    deaths, attempts, deadline = [], 0, time.monotonic() + 6
    try:
        while attempts < 30 and not deaths and time.monotonic() < deadline:
            attempts += 1
            proc = subprocess.Popen([proxy_binary(), "run", "--config", str(path), "--log-level", "debug"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    preexec_fn=lambda: (os.sched_setaffinity(0, {cpu}), os.nice(19)))
            try:
                seen, buf, until = False, b"", time.monotonic() + 5
                while not seen and time.monotonic() < until:
                    ready, _, _ = select.select([proc.stderr], [], [], 0.2)
                    if ready:
                        chunk = os.read(proc.stderr.fileno(), 4096)
                        if not chunk:
                            break
                        buf += chunk
                        seen = b"listening on" in buf
                assert seen, f"proxy did not announce its listener: {buf!r}"
                proc.send_signal(signal.SIGHUP)
                time.sleep(0.1)
                if proc.poll() is not None:
                    deaths.append((attempts, proc.returncode, buf.decode("utf-8", "replace")))
            finally:
                if proc.poll() is None:
                    proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
                proc.stderr.close()
    finally:
        hog.kill()
        hog.wait(5)
    assert not deaths, f"killed by SIGHUP after announcing its listener (attempt, status, log): {deaths[0]}"


@pytest.mark.timeout(15)
def test_reload_to_a_listen_port_in_use_is_rejected_and_the_old_port_keeps_serving(upstream, start_proxy):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = free_port()
        cfg = base_config(upstream.config_addr, listen_port=port)
        p = start_proxy(cfg)
        assert accepts_request(p.addr)
        line = sighup(p, {**cfg, "listen": f"127.0.0.1:{busy.getsockname()[1]}"}, expect="reload|rejected")
        assert line and line.level == "error" and "reloaded" not in line.text, \
            f"reload to a port in use not rejected with an error:\n{p.log_text()[-2000:]}"
        time.sleep(0.2)
        assert accepts_request(p.addr), "the old port stopped serving after a rejected reload"
        assert p.alive()
    finally:
        busy.close()


@pytest.mark.timeout(15)
def test_reload_switches_an_open_stream_heartbeat_off_and_on(upstream, start_proxy):
    upstream.route("/events", hanging_stream())
    port = free_port()

    def cfg(hb):
        return base_config(upstream.config_addr, listen_port=port, routes=[{"path": "/events", "heartbeat": hb}])

    p = start_proxy(cfg("300ms"))
    conn, head = open_stream(p.addr, "/events")
    assert head.status == 200
    rec = StreamRecorder(conn, head, limit=4)
    time.sleep(0.8)
    off = sighup(p, cfg(Quoted("off")))
    assert off, p.log_text()[-2000:]
    time.sleep(1.2)
    on = sighup(p, cfg("300ms"))
    assert on, p.log_text()[-2000:]
    time.sleep(1.0)
    rec.stop()
    pieces = list(rec.pieces_live)
    assert len(heartbeat_times(pieces, 0, off.time)) >= 2
    # The "on" reload finds the stream idle for 1.2 s, overdue under 300ms: its heartbeat
    # goes out at once, around the time the reload is logged.
    silent = heartbeat_times(pieces, off.time + 0.05, on.time - 0.15)
    assert not silent, f"heartbeats after a reload to 'off': {[round(t - off.time, 2) for t in silent]}"
    again = heartbeat_times(pieces, on.time - 0.15, on.time + 1.0)
    assert len(again) >= 2, f"heartbeats after switching back on: {[round(t - on.time, 2) for t in again]}"
    assert abs(again[0] - on.time) < 0.15, f"the overdue heartbeat came {again[0] - on.time:.3f} s after the reload"


@pytest.mark.timeout(20)
def test_reloads_more_often_than_the_interval_never_push_a_heartbeat_back(upstream, start_proxy):
    """The idle clock counts from the stream's last write across reloads: a reload
    every 0.6 s with a 1 s interval must not starve the stream of heartbeats."""
    upstream.route("/events", hanging_stream())
    port = free_port()
    cfg = base_config(upstream.config_addr, listen_port=port, routes=[{"path": "/events", "heartbeat": "1s"}])
    p = start_proxy(cfg)
    conn, head = open_stream(p.addr, "/events")
    assert head.status == 200
    rec = StreamRecorder(conn, head, limit=20)
    time.sleep(0.3)
    reloads = []
    for _ in range(8):
        line = sighup(p, cfg)
        assert line, p.log_text()[-2000:]
        reloads.append(line.time)
        time.sleep(0.6)
    rec.stop()
    beats = heartbeat_times(list(rec.pieces_live))
    window = [t for t in beats if reloads[0] <= t <= reloads[-1]]
    assert len(window) >= 3, f"{len(window)} heartbeats in {reloads[-1] - reloads[0]:.1f} s of reloads: {beats}"
    longest = max(gaps(beats)) if len(beats) > 1 else float("inf")
    assert longest < 1.6, f"a {longest:.2f} s silence with a 1 s interval (reloads pushed heartbeats back)"


@pytest.mark.timeout(15)
def test_reload_moves_the_admin_endpoint(upstream, start_proxy):
    port = free_port()
    cfg, admin = admin_config(upstream.config_addr, listen_port=port)
    p = start_proxy(cfg)
    wait_admin(p)
    assert accepts_request(p.addr) and healthz(admin)[0] == 200
    new_admin = ("127.0.0.1", free_port())
    assert sighup(p, {**cfg, "admin": {"listen": f"127.0.0.1:{new_admin[1]}"}}), p.log_text()[-2000:]
    assert wait_until(lambda: healthz(new_admin), 2), "new admin address does not answer"
    assert healthz(new_admin)[0] == 200
    assert wait_until(lambda: refuses(admin), 2), "old admin address still answers"


# --- 4/5. graceful shutdown --------------------------------------------------------

@pytest.mark.timeout(25)
def test_sigterm_drains_requests_ends_streams_after_grace_and_exits_0(upstream):
    grace = 2.0
    big = bytes(range(256)) * 800  # 200 KiB
    upstream.route("/slow", [up.sleep(1.0)] + up.response(200, [("Content-Type", "application/octet-stream")], big))
    # the stream's upstream sends one event ~1 s into the drain, then stays open
    upstream.route("/events", [STREAM_HEAD, up.sleep(1.6), up.send(up.chunk(b"data: during-drain\n\n")),
                                    up.hang(30)])
    cfg, admin = admin_config(upstream.config_addr, shutdown={"grace": "2s"})
    with own_proxy(cfg) as p:
        wait_admin(p)
        h = healthz(admin)
        assert h and h[0] == 200 and h[1].strip() == "ok", h
        stream_conn, stream_head = open_stream(p.addr, "/events")
        assert stream_head.status == 200
        stream = StreamRecorder(stream_conn, stream_head, limit=grace + 6)
        idle = http.connect(p.addr)
        assert idle.request("GET", "/idle").status == 200  # now an idle keep-alive connection

        result = {}

        def slow():  # on a keep-alive connection, which must be closed after its response
            conn = http.connect(p.addr, timeout=8)
            try:
                result["resp"] = conn.request("GET", "/slow", timeout=8)
                result["closed_after"] = conn.wait_eof(1.5)
            except Exception as e:  # reported below
                result["error"] = repr(e)
            finally:
                conn.close()

        slow_thread = threading.Thread(target=slow, daemon=True)
        slow_thread.start()
        assert wait_upstream_requests(upstream, "/slow", 1), "slow request never reached the upstream"
        poller = HealthPoller(admin, interval=0.05, limit=grace + 6)
        time.sleep(0.1)
        t0 = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)

        refused = wait_until(lambda: refuses(p.addr), 0.5, 0.01)
        refused_after = time.monotonic() - t0
        assert refused, f"still accepting new connections {refused_after:.2f}s after SIGTERM"
        assert scrape(admin).value("sse_keepalive_draining") == 1
        assert idle.wait_eof(1.5), "idle keep-alive connection not closed during the drain"
        idle.close()

        slow_thread.join(8)
        assert "error" not in result, result
        resp = result["resp"]
        assert resp.status == 200 and resp.body.complete and resp.body.data == big, \
            (resp.head.raw, len(resp.body.data))
        assert result["closed_after"], "keep-alive connection left open after its in-flight response (draining)"

        assert stream.join(grace + 6)
        ended = stream.ended_at - t0
        assert stream.error is None, stream.error
        assert stream.body.complete, \
            f"event stream not ended with the final 0-size chunk: {stream.body.data[-60:]!r}"
        # The stream picks its own end time within the grace and ends at an event boundary
        # (it stands at one between heartbeats), heartbeats going on until then.
        assert 0 <= ended <= grace + 1.0, f"stream ended {ended:.2f}s after SIGTERM, grace {grace}s"
        payload = sse.strip_heartbeats(stream.body.data)
        assert payload in (b"", b"data: during-drain\n\n"), stream.body.data[-100:]
        assert stream.body.data in (b"",) or stream.body.data.endswith(b"\n\n"), stream.body.data[-60:]
        drain_beats = heartbeat_times(stream.body.pieces, t0, t0 + grace)
        assert len(drain_beats) >= int(ended / 0.3) - 2, \
            f"heartbeats during the grace: {[round(t - t0, 2) for t in drain_beats]}, ended {ended:.2f}s"

        code = p.proc.wait(grace + 4)
        health = poller.stop()
        assert code == 0, f"exit status {code}:\n{p.log_text()[-2000:]}"
        during = [r for t, r in health if t0 + 0.05 < t < stream.ended_at and r is not None]
        assert during and all(r[0] == 503 for r in during), \
            f"/healthz during the drain: {[(round(t - t0, 2), r) for t, r in health][:12]}"


@pytest.mark.timeout(15)
@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["TERM-TERM", "TERM-INT"])
def test_second_signal_during_drain_exits_at_once(upstream, second):
    # Stalled mid-event, so the stream cannot end at a boundary before the grace is over.
    upstream.route("/events", [STREAM_HEAD, up.send(up.chunk(b"data: never finished")), up.hang(30)])
    with own_proxy(base_config(upstream.config_addr, shutdown={"grace": "5s"})) as p:
        conn, head = open_stream(p.addr, "/events")
        assert head.status == 200
        p.proc.send_signal(signal.SIGTERM)
        assert p.wait_for_log("draining", timeout=2), p.log_text()[-2000:]
        time.sleep(0.2)
        assert p.alive(), "exited before the grace although a stream was open"
        t0 = time.monotonic()
        p.proc.send_signal(second)
        try:
            code = p.proc.wait(1.5)
        except Exception:
            code = None
        elapsed = time.monotonic() - t0
        conn.close()
        assert code is not None, "second signal did not exit the proxy within 1.5s"
        assert elapsed < 1.0, f"exit took {elapsed:.2f}s"
        assert code == 128 + second, f"exit status {code}, expected {128 + second}"


@pytest.mark.timeout(15)
def test_sigint_is_a_graceful_shutdown_too(upstream):
    upstream.route("/events", hanging_stream(30))
    with own_proxy(base_config(upstream.config_addr, shutdown={"grace": "500ms"})) as p:
        conn, head = open_stream(p.addr, "/events")
        assert head.status == 200
        rec = StreamRecorder(conn, head, limit=5)
        t0 = time.monotonic()
        p.proc.send_signal(signal.SIGINT)
        assert rec.join(5)
        assert rec.body.complete, f"stream not ended with its final chunk: {rec.body.data[-40:]!r}"
        assert 0 <= rec.ended_at - t0 <= 1.5, rec.ended_at - t0  # its own end time within the 500ms grace
        assert p.proc.wait(5) == 0


@pytest.mark.timeout(15)
def test_sighup_during_the_drain_opens_no_listener_and_the_drain_completes(upstream):
    upstream.route("/events", hanging_stream(30))
    port, new_port = free_port(), free_port()
    cfg = base_config(upstream.config_addr, listen_port=port, shutdown={"grace": "800ms"})
    with own_proxy(cfg) as p:
        conn, head = open_stream(p.addr, "/events")
        assert head.status == 200
        rec = StreamRecorder(conn, head, limit=5)
        p.proc.send_signal(signal.SIGTERM)
        assert p.wait_for_log("draining", timeout=2)
        write_config(p, {**cfg, "listen": f"127.0.0.1:{new_port}"})
        p.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert refuses(("127.0.0.1", new_port)), "a reload during the drain opened a new listener"
        assert refuses(p.addr)
        assert rec.join(5) and rec.body.complete, "stream not ended cleanly after a SIGHUP during the drain"
        assert p.proc.wait(5) == 0, p.log_text()[-2000:]


# --- 6. metrics --------------------------------------------------------------------

FAMILIES = {
    "sse_keepalive_streams_open": "gauge",
    "sse_keepalive_heartbeats_total": "counter",
    "sse_keepalive_bytes_forwarded_total": "counter",
    "sse_keepalive_requests_total": "counter",
    "sse_keepalive_upstream_errors_total": "counter",
    "sse_keepalive_client_disconnects_total": "counter",
    "sse_keepalive_connections_open": "gauge",
    "sse_keepalive_connections_accepted_total": "counter",
    "sse_keepalive_workers": "gauge",
    "sse_keepalive_draining": "gauge",
}


@pytest.mark.timeout(25)
def test_metrics_follow_streams_heartbeats_requests_errors_and_disconnects(upstream, start_proxy):
    dead = free_port()
    upstream.route("/events", hanging_stream())
    upstream.route("/ticks", up.event_stream([(0.05, b"data: tick\n\n")] * 100))
    upstream.route("/silent", [up.hang(10)])
    cfg, admin = admin_config(upstream.config_addr, timeouts={"connect": "1s", "response": "500ms"}, routes=[
        {"path": "/events", "heartbeat": "300ms"},
        {"path": "/ticks", "heartbeat": "300ms"},
        {"path": "/dead", "upstream": f"127.0.0.1:{dead}"},
        {"path": "/tok", "token": {}},
    ])
    p = start_proxy(cfg)
    wait_admin(p)
    m0 = scrape(admin)
    for name, kind in FAMILIES.items():
        assert m0.type.get(name) == kind, f"{name}: TYPE {m0.type.get(name)!r}, expected {kind}\n{m0.text}"
        assert m0.help.get(name), f"{name}: no HELP line"
    assert m0.value("sse_keepalive_workers") == 2
    assert m0.value("sse_keepalive_draining") == 0
    assert m0.get("sse_keepalive_streams_open", route="/events") == 0

    # two open streams on /events
    streams = [open_stream(p.addr, f"/events/{i}") for i in range(2)]
    assert all(h.status == 200 for _, h in streams)
    m1 = wait_until(lambda: (lambda m: m if m.get("sse_keepalive_streams_open", route="/events") == 2 else None)(
        scrape(admin)), 2)
    assert m1, f"streams_open{{route=/events}} != 2:\n{scrape(admin).text}"
    time.sleep(0.8)
    m2 = scrape(admin)
    hb2 = m2.get("sse_keepalive_heartbeats_total", route="/events")
    assert hb2 >= 2, f"heartbeats_total{{route=/events}} = {hb2} after 0.8s with 2 streams at 300ms"
    time.sleep(0.7)
    hb3 = scrape(admin).get("sse_keepalive_heartbeats_total", route="/events")
    assert hb3 >= hb2 + 2, f"heartbeats_total did not grow: {hb2} -> {hb3}"

    # finished requests by route and code
    for i in range(3):
        assert http.request(p.addr, "GET", f"/plain/{i}").status == 200
    assert http.request(p.addr, "GET", f"/tok/x?token={SECRET}").status == 200
    assert http.request(p.addr, "GET", "/dead/x").status == 502
    assert http.request(p.addr, "GET", "/silent").status == 504
    m3 = wait_until(lambda: (lambda m: m if m.get("sse_keepalive_requests_total", route="default", code="200") >= 3
                             else None)(scrape(admin)), 2) or scrape(admin)
    assert m3.get("sse_keepalive_requests_total", route="default", code="200") == 3, m3.text
    assert m3.get("sse_keepalive_requests_total", route="/tok", code="200") == 1, m3.text
    assert m3.get("sse_keepalive_requests_total", route="/dead", code="502") == 1, m3.text
    assert m3.get("sse_keepalive_upstream_errors_total", route="/dead", kind="connect") == 1, m3.text
    assert m3.get("sse_keepalive_requests_total", route="default", code="504") == 1, m3.text
    assert m3.get("sse_keepalive_upstream_errors_total", route="default", kind="timeout") == 1, m3.text
    assert m3.get("sse_keepalive_requests_total", route="/events", code="200") == 0, \
        "an open stream counted as a finished request"
    assert m3.get("sse_keepalive_bytes_forwarded_total", direction="upstream_to_client") > 0
    assert m3.get("sse_keepalive_bytes_forwarded_total", direction="client_to_upstream") > 0
    assert m3.value("sse_keepalive_connections_open") >= 2  # the two streams
    assert m3.value("sse_keepalive_connections_accepted_total") >= 7

    # a client resetting mid-stream
    disc0 = m3.total("sse_keepalive_client_disconnects_total")
    conn, head = open_stream(p.addr, "/ticks")
    assert head.status == 200
    http.read_stream(conn, head, 0.3)
    conn.reset()
    m4 = wait_until(lambda: (lambda m: m if m.total("sse_keepalive_client_disconnects_total") > disc0 else None)(
        scrape(admin)), 2)
    assert m4, f"client_disconnects_total did not grow after a reset:\n{scrape(admin).text}"

    # closing the streams brings the gauges back to 0 and counts them as finished
    for c, _ in streams:
        c.close()
    m5 = wait_until(lambda: (lambda m: m if m.total("sse_keepalive_streams_open") == 0 and
                             m.value("sse_keepalive_connections_open") == 0 else None)(scrape(admin)), 3)
    assert m5, f"gauges not back to 0 after every stream closed:\n{scrape(admin).text}"
    assert all(s.value == 0 for s in m5.find("sse_keepalive_streams_open")), m5.text
    assert m5.get("sse_keepalive_requests_total", route="/events", code="200") == 2, m5.text

    # label values: route names and fixed enums, never addresses or tokens
    routes = {"/events", "/ticks", "/dead", "/tok", "default"}
    for s in m5.samples:
        for k, v in s.labels.items():
            assert "127.0.0.1" not in v and SECRET not in v, (s.name, s.labels)
            if k == "route":
                assert v in routes, f"route label {v!r} is not a route name ({s.name})"
    assert SECRET not in m5.text and str(dead) not in m5.text.replace(f'"{dead}"', "")


@pytest.mark.timeout(20)
def test_streams_open_back_to_zero_when_a_reload_moves_an_open_stream_to_another_route(upstream, start_proxy):
    """A stream opened under route /events, then a reload adds the more
    specific route /events/live that now matches it: when it closes, no route's
    streams_open gauge is left at +1 or -1."""
    upstream.route("/events", hanging_stream())
    port = free_port()
    cfg, admin = admin_config(upstream.config_addr, listen_port=port,
                              routes=[{"path": "/events", "heartbeat": "300ms"}])
    p = start_proxy(cfg)
    wait_admin(p)
    conn, head = open_stream(p.addr, "/events/live/1")
    assert head.status == 200
    assert wait_until(lambda: scrape(admin).get("sse_keepalive_streams_open", route="/events") == 1, 2)
    new_cfg = {**cfg, "routes": [{"path": "/events/live", "heartbeat": "1s"}, {"path": "/events", "heartbeat": "300ms"}]}
    assert sighup(p, new_cfg), p.log_text()[-2000:]
    http.read_stream(conn, head, 0.5)
    conn.close()
    m = wait_until(lambda: (lambda m: m if m.value("sse_keepalive_connections_open") == 0 else None)(scrape(admin)), 3)
    assert m, scrape(admin).text
    time.sleep(0.1)
    m = scrape(admin)
    opened = {s.labels["route"]: s.value for s in m.find("sse_keepalive_streams_open")}
    assert all(v == 0 for v in opened.values()), f"streams_open after the only stream closed: {opened}"


@pytest.mark.timeout(15)
def test_healthz_and_unknown_admin_paths(upstream, start_proxy):
    cfg, admin = admin_config(upstream.config_addr)
    wait_admin(start_proxy(cfg))
    resp = http.request(admin, "GET", "/healthz")
    assert resp.status == 200 and resp.body.data.strip() == b"ok", resp.head.raw + resp.body.data
    assert http.request(admin, "GET", "/nope").status == 404


# --- 7. workers ----------------------------------------------------------------------

def worker_of_connection_lines(proxy) -> set:
    return {int(m.group(1)) for m in re.finditer(r"conn (\d+)\.\d+\b", proxy.log_text())}


@pytest.mark.timeout(20)
def test_two_workers_both_accept_connections(upstream, start_proxy):
    cfg, admin = admin_config(upstream.config_addr, workers=2)
    p = start_proxy(cfg)  # log level debug: "conn W.N" lines
    wait_admin(p)
    conns = []
    try:
        for i in range(20):
            c = http.connect(p.addr)
            conns.append(c)
            assert c.request("GET", f"/w/{i}").status == 200
    finally:
        for c in conns:
            c.close()
    m = scrape(admin)
    assert m.value("sse_keepalive_workers") == 2
    assert m.value("sse_keepalive_connections_accepted_total") == 20, m.text
    seen = worker_of_connection_lines(p)
    assert seen == {0, 1}, f"connections seen on workers {seen} (log prefixes 'conn W.N')"
    per_worker = m.find("sse_keepalive_worker_connections_accepted_total")
    if per_worker:
        counts = {s.labels.get("worker"): s.value for s in per_worker}
        assert set(counts) == {"0", "1"} and all(v > 0 for v in counts.values()), counts


@pytest.mark.timeout(15)
def test_workers_auto_is_the_number_of_cores(upstream, start_proxy):
    cfg, admin = admin_config(upstream.config_addr, workers="auto")
    p = start_proxy(cfg)
    wait_admin(p)
    assert accepts_request(p.addr)
    cores = os.sysconf("SC_NPROCESSORS_ONLN")
    assert scrape(admin).value("sse_keepalive_workers") == cores
    threads = len(os.listdir(f"/proc/{p.proc.pid}/task"))
    assert threads >= cores + 1, f"{threads} threads for {cores} workers and the control loop"


@pytest.mark.timeout(15)
def test_per_worker_accepted_counter_sums_to_total(upstream, start_proxy):
    cfg, admin = admin_config(upstream.config_addr, workers=2)
    p = start_proxy(cfg)
    wait_admin(p)
    for i in range(12):
        assert http.request(p.addr, "GET", f"/w/{i}").status == 200
    m = scrape(admin)
    name = "sse_keepalive_worker_connections_accepted_total"
    per_worker = m.find(name)
    assert per_worker, f"no {name} series in /metrics"
    assert m.type.get(name) == "counter", m.type.get(name)
    counts = {s.labels.get("worker"): s.value for s in per_worker}
    assert set(counts) == {"0", "1"}, counts
    assert sum(counts.values()) == m.value("sse_keepalive_connections_accepted_total") == 12, counts


# --- 8. file descriptors -------------------------------------------------------------

@pytest.mark.timeout(30)
def test_file_descriptors_return_to_baseline_after_mixed_traffic(upstream, start_proxy):
    dead = free_port()
    upstream.route("/events", up.event_stream([(0, b"data: x\n\n")], end="hang"))
    upstream.route("/cut", up.event_stream([(0, b"data: a\n\n"), (0.05, b"data: b")], end="reset"))
    p = start_proxy(base_config(upstream.config_addr, routes=[{"path": "/dead", "upstream": f"127.0.0.1:{dead}"}]))
    pid = p.proc.pid

    def stream_then(action):
        conn, head = open_stream(p.addr, "/events")
        assert head.status == 200
        http.read_stream(conn, head, 2, until=lambda got: b"data: x\n\n" in got)
        conn.reset() if action == "reset" else conn.close()

    # warm up every code path once, then measure
    assert http.request(p.addr, "GET", "/warm").status == 200
    stream_then("close")
    time.sleep(0.3)
    baseline = fd_count(pid)

    # 10 streams at once: the count must visibly rise (it measures the right process).
    # One stream may reuse the idle pooled upstream connection counted in the baseline.
    held = [open_stream(p.addr, "/events") for _ in range(10)]
    assert wait_until(lambda: fd_count(pid) >= baseline + 19, 2), \
        f"fd count {fd_count(pid)} with 10 open streams, baseline {baseline}"
    for c, _ in held:
        c.close()

    for i in range(40):
        kind = i % 5
        if kind == 0:
            assert http.request(p.addr, "GET", f"/plain/{i}").status == 200
        elif kind == 1:
            stream_then("close")
        elif kind == 2:
            stream_then("reset")
        elif kind == 3:
            assert http.request(p.addr, "GET", "/dead/x").status == 502
        else:
            conn, head = open_stream(p.addr, "/cut")
            conn.read_body(head, timeout=3, timeout_ok=True)
            conn.close()

    ok = wait_until(lambda: fd_count(pid) <= baseline + 2, 5, 0.1)
    assert ok, f"fd count {fd_count(pid)} after all connections closed, baseline {baseline}"
    assert accepts_request(p.addr)
