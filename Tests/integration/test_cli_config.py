"""docs/configuration.md and docs/behaviour.md "Reload and shutdown": command line, config validation, effective config, signals."""
import os
import re
import signal
import socket
import tempfile
import threading
import time

import pytest

from harness import client as http
from harness import upstream as up
from harness.proxy import Proxy, base_config, free_port, run_cli, to_yaml
from harness.streams import open_stream

pytestmark = pytest.mark.proxy_only


@pytest.fixture(autouse=True)
def _binary():
    from conftest import require_binary
    require_binary()


def write(dirpath, text, name="sse-keepalive.yaml"):
    path = os.path.join(dirpath, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def assert_config_error(result, path, line, key_part, *more):
    """exit 1 and `file:line:col: key: message` on stderr."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    m = re.search(re.escape(path) + r":(\d+):(\d+): ([^:\s]+): (.+)", result.stderr)
    assert m, f"no 'file:line:col: key: message' in stderr: {result.stderr!r}"
    assert int(m.group(1)) == line, f"wrong line: {result.stderr!r}"
    assert key_part in m.group(3), f"key not named: {result.stderr!r}"
    for text in more:
        assert text.lower() in result.stderr.lower(), f"{text!r} missing: {result.stderr!r}"


def test_version_and_help():
    v = run_cli(["--version"])
    assert v.returncode == 0 and re.search(r"\d+\.\d+", v.stdout + v.stderr)
    h = run_cli(["--help"])
    assert h.returncode == 0 and "check" in h.stdout


def test_check_prints_effective_config(tmp_path):
    port = free_port()
    cfg = base_config("127.0.0.1:3999", listen_port=port,
                      routes=[{"path": "/events", "heartbeat": "750ms", "token": {}}])
    path = write(str(tmp_path), to_yaml(cfg) + "\n")
    r = run_cli(["check", "--config", path])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for text in (f"127.0.0.1:{port}", "127.0.0.1:3999", "300ms", "/events", "750ms"):
        assert text in out, (text, out)
    # defaults are filled in for keys the file does not set
    assert re.search(r"keepalive:\s*75s", out) and re.search(r"max_header_bytes:\s*16KiB", out), out


def test_check_without_config_prints_defaults(tmp_path):
    r = run_cli(["check"], cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    for text in ("127.0.0.1:8080", "127.0.0.1:3000", "15s"):
        assert text in r.stdout, (text, r.stdout)


def test_check_uses_sse_keepalive_yaml_in_cwd(tmp_path):
    write(str(tmp_path), 'upstream: "127.0.0.1:4321"\n')
    r = run_cli(["check"], cwd=str(tmp_path))
    assert r.returncode == 0 and "127.0.0.1:4321" in r.stdout, (r.stdout, r.stderr)


def test_unknown_nested_key_has_did_you_mean(tmp_path):
    path = write(str(tmp_path), 'listen: "127.0.0.1:18080"\nheartbeat:\n  intervall: 1s\n')
    assert_config_error(run_cli(["check", "--config", path]), path, 3, "intervall", "did you mean", "interval")


def test_unknown_top_level_key_has_did_you_mean(tmp_path):
    path = write(str(tmp_path), 'listen: "127.0.0.1:18080"\nupstrem: "127.0.0.1:3000"\n')
    assert_config_error(run_cli(["check", "--config", path]), path, 2, "upstrem", "did you mean", "upstream")


@pytest.mark.parametrize("value", ["15 parsecs", "10x", "-1s"])
def test_bad_duration_names_line_and_key(tmp_path, value):
    text = f'listen: "127.0.0.1:18080"\nupstream: "127.0.0.1:3000"\nheartbeat:\n  interval: {value}\n'
    path = write(str(tmp_path), text)
    assert_config_error(run_cli(["check", "--config", path]), path, 4, "interval")


def test_bad_duration_in_route(tmp_path):
    text = 'routes:\n  - path: /a\n    heartbeat: 10s\n  - path: /b\n    heartbeat: soon\n'
    path = write(str(tmp_path), text)
    assert_config_error(run_cli(["check", "--config", path]), path, 5, "heartbeat")


@pytest.mark.parametrize("off", ["off", '"off"'])
def test_heartbeat_off_accepted_quoted_or_not(tmp_path, off):
    path = write(str(tmp_path), f"routes:\n  - path: /reports\n    heartbeat: {off}\n")
    r = run_cli(["check", "--config", path])
    assert r.returncode == 0, r.stderr
    assert "/reports" in r.stdout


def test_run_with_bad_config_exits_1_without_listening(tmp_path):
    port = free_port()
    path = write(str(tmp_path), f'listen: "127.0.0.1:{port}"\nheartbeat:\n  interval: nope\n')
    r = run_cli(["run", "--config", path], timeout=10)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert str(path) in r.stderr
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", port)) != 0, "something listens on the port"


def test_sigterm_finishes_inflight_request(upstream):
    upstream.route("/slow", [up.sleep(0.8)] + up.response(200, [], b"finished"))
    p = Proxy(base_config(upstream.config_addr, shutdown={"grace": "1s"}))
    try:
        result = {}

        def slow_request():
            try:
                result["r"] = http.request(p.addr, "GET", "/slow", timeout=8)
            except Exception as e:  # reported by the assertion below
                result["error"] = repr(e)

        t = threading.Thread(target=slow_request)
        t.start()
        upstream.wait_requests(1)
        p.proc.send_signal(signal.SIGTERM)
        t.join(8)
        assert result.get("r") is not None and result["r"].status == 200, (result, p.log_text())
        assert result["r"].body.data == b"finished"
        assert p.proc.wait(6) == 0
    finally:
        p.stop()


def test_sigterm_closes_event_streams_after_grace_and_exits_0(upstream):
    upstream.route("/events", up.event_stream([], end="hang"))
    p = Proxy(base_config(upstream.config_addr, shutdown={"grace": "1s"}))
    try:
        conn, head = open_stream(p.addr, "/events")
        assert head.status == 200
        p.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert conn.wait_eof(5), "event stream not closed after shutdown.grace"
        elapsed = time.monotonic() - t0
        # Each stream ends at its own time within the grace (at an event boundary: this one is idle at one).
        assert elapsed <= 4, f"stream closed {elapsed:.2f}s after SIGTERM, grace is 1s"
        conn.close()
        assert p.proc.wait(6) == 0
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex(p.addr) != 0, "still accepting after SIGTERM"
    finally:
        p.stop()


def rewrite_config(proxy, cfg):
    with open(proxy.config_path, "w") as f:
        f.write(to_yaml(cfg) + "\n")


@pytest.mark.timeout(30)
def test_sighup_reload_new_routes_and_new_interval_for_open_streams(start_proxy):
    from harness import sse
    from harness.timing import gaps, median
    with up.Upstream() as a, up.Upstream() as b:
        for u in (a, b):
            u.route("/events", up.event_stream([], end="hang"))
        b.route("/", up.response(200, [], b"from-b"))
        cfg = base_config(a.config_addr, heartbeat={"interval": "200ms"})
        p = start_proxy(cfg)
        conn, head = open_stream(p.addr, "/events")
        try:
            before = http.read_stream(conn, head, 0.9)
            assert before.data.count(b":heartbeat\n\n") >= 3, before.data
            cfg = dict(cfg, heartbeat={"interval": "700ms"}, routes=[{"path": "/new", "upstream": b.config_addr}])
            rewrite_config(p, cfg)
            p.proc.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            after = http.read_stream(conn, head, 2.6)
        finally:
            conn.close()
        assert sse.strip_heartbeats(after.data) == b"", after.data
        times = [t for t, d in after.pieces]
        g = median(gaps(times))
        assert 0.45 <= g <= 1.2, f"open stream heartbeat gap {g:.2f}s after reload to 700ms"
        assert http.request(p.addr, "GET", "/new/thing").body.data == b"from-b"
        assert p.alive()


def test_sighup_with_invalid_file_keeps_old_config(upstream, start_proxy):
    upstream.route("/old", up.response(200, [], b"old-config"))
    cfg = base_config(upstream.config_addr)
    p = start_proxy(cfg)
    assert http.request(p.addr, "GET", "/old").body.data == b"old-config"
    with open(p.config_path, "w") as f:
        f.write("listen: [unclosed\nheartbeat:\n  interval: nope\n")
    p.proc.send_signal(signal.SIGHUP)
    err = None
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not err:
        err = [l for l in p.lines_at_or_above("error") if "sse-keepalive.yaml" in l.text]
        time.sleep(0.05)
    assert err, f"no error log naming the rejected file:\n{p.log_text()}"
    assert p.alive()
    assert http.request(p.addr, "GET", "/old").body.data == b"old-config"


@pytest.mark.timeout(40)
def test_sighup_right_after_ready_does_not_kill(upstream):
    """Once `listening on` is logged, SIGHUP must be handled (reload), not
    take the default action (terminate)."""
    deaths = []
    for attempt in range(20):
        p = Proxy(base_config(upstream.config_addr))
        try:
            p.proc.send_signal(signal.SIGHUP)
            time.sleep(0.25)
            if not p.alive():
                deaths.append((attempt, p.proc.returncode, p.log_text()[-300:]))
        finally:
            p.stop()
    assert not deaths, f"{len(deaths)}/20 proxies died from a SIGHUP sent right after 'listening on': {deaths[:2]}"
