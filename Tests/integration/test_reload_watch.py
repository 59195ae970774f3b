"""Reload on config file change (issue 15): `--watch` or `reload: {watch:
true}` reloads like SIGHUP when the file changes, however it is replaced: an
editor's save (write a temp file, rename it over), `mv` over the file, a
Kubernetes ConfigMap update (a new timestamped directory and a `..data`
symlink swapped by rename), each giving exactly one reload. A burst of writes
gives one reload; an invalid file is rejected naming file, line and key and
the running config stays; open streams keep flowing.

Each check waits for the reload line (debounce is 200 ms; we allow 5 s) and
then another second to see that no second reload follows."""
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from harness import client as http
from harness import upstream as up
from harness.ops import StreamRecorder, count_lines, wait_new_line, wait_until
from harness.proxy import Proxy, base_config, free_port, run_cli, to_yaml
from harness.streams import open_stream

pytestmark = pytest.mark.proxy_only

RELOADED = r"configuration reloaded"
SETTLE = 1.0


@pytest.fixture(autouse=True)
def _binary():
    from conftest import require_binary
    require_binary()


@pytest.fixture
def two_upstreams():
    with up.Upstream() as a, up.Upstream() as b:
        for u, name in ((a, b"from-a"), (b, b"from-b")):
            u.route("/who", up.response(200, [("Content-Type", "text/plain")], name))
        yield a, b


def cfg(port, target, **extra):
    return base_config(target.config_addr, listen_port=port, **extra)


def who(p) -> bytes:
    return http.request(p.addr, "GET", "/who").body.data


def expect_one_reload(p, before: int):
    line = wait_new_line(p, RELOADED, before, timeout=5.0)
    assert line, f"no reload after the change:\n{p.log_text()[-3000:]}"
    time.sleep(SETTLE)
    assert count_lines(p, RELOADED) == before + 1, f"more than one reload:\n{p.log_text()[-3000:]}"
    return line


def start(config, workdir=None, flag=True, **kwargs) -> Proxy:
    return Proxy(config, workdir=workdir, extra_args=["--watch"] if flag else [], **kwargs)


@pytest.mark.timeout(30)
def test_editor_save_write_temp_then_rename_gives_one_reload(two_upstreams):
    """Like vim/VS Code: a backup file, a temp file written and renamed over."""
    a, b = two_upstreams
    port = free_port()
    p = start(cfg(port, a))
    try:
        assert who(p) == b"from-a"
        assert p.wait_for_log(r"watching .*sse-keepalive.yaml for changes")
        before = count_lines(p, RELOADED)
        shutil.copy(p.config_path, p.config_path + "~")  # editor backup: not the config, ignored
        tmp = os.path.join(p.workdir, ".sse-keepalive.yaml.swp")
        with open(tmp, "w") as f:
            f.write(to_yaml(cfg(port, b)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, p.config_path)
        expect_one_reload(p, before)
        assert who(p) == b"from-b"
    finally:
        assert p.stop() == 0


@pytest.mark.timeout(30)
def test_mv_over_the_file_gives_one_reload_and_open_streams_keep_flowing(two_upstreams):
    """`mv new.yaml sse-keepalive.yaml` from another directory; an open event
    stream keeps its connection and takes the new heartbeat interval."""
    a, b = two_upstreams
    a.route("/events", [up.send(up.head_bytes(200, [("Content-Type", "text/event-stream"),
                                                    ("Transfer-Encoding", "chunked")])), up.hang(20)])
    port = free_port()
    p = start(cfg(port, a, heartbeat={"interval": "5s"}))
    try:
        conn, head = open_stream(p.addr, "/events")
        assert head.status == 200
        rec = StreamRecorder(conn, head, limit=8)
        before = count_lines(p, RELOADED)
        other = tempfile.mkdtemp(prefix="ssek-mv-")
        new = os.path.join(other, "new.yaml")
        with open(new, "w") as f:
            f.write(to_yaml(cfg(port, b, heartbeat={"interval": "300ms"})) + "\n")
        subprocess.run(["mv", new, p.config_path], check=True)
        line = expect_one_reload(p, before)
        assert who(p) == b"from-b"
        # the old stream is still open and now gets heartbeats every 300 ms
        time.sleep(1.2)
        assert rec.running(), "the open stream was closed by the reload"
        heartbeats_after = [t for t, d in list(rec.pieces_live) if t > line.time + 0.1 for _ in range(d.count(b":heartbeat\n\n"))]
        assert len(heartbeats_after) >= 2, rec.pieces_live
        rec.stop()
        conn.close()
    finally:
        assert p.stop() == 0


def configmap_layout(root: str, text: str, stamp: str):
    """What the kubelet's atomic writer makes: ..<stamp>/file, ..data ->
    ..<stamp>, file -> ..data/file."""
    os.makedirs(os.path.join(root, f"..{stamp}"))
    with open(os.path.join(root, f"..{stamp}", "sse-keepalive.yaml"), "w") as f:
        f.write(text)
    os.symlink(f"..{stamp}", os.path.join(root, "..data"))
    os.symlink("..data/sse-keepalive.yaml", os.path.join(root, "sse-keepalive.yaml"))


def configmap_update(root: str, text: str, old: str, new: str, extra_files=()):
    """The kubelet's update: write a new timestamped directory, point a
    temporary symlink at it, rename that over ..data, remove the old one."""
    os.makedirs(os.path.join(root, f"..{new}"))
    with open(os.path.join(root, f"..{new}", "sse-keepalive.yaml"), "w") as f:
        f.write(text)
    for name, body in extra_files:
        with open(os.path.join(root, f"..{new}", name), "w") as f:
            f.write(body)
    os.symlink(f"..{new}", os.path.join(root, "..data_tmp"))
    os.rename(os.path.join(root, "..data_tmp"), os.path.join(root, "..data"))
    shutil.rmtree(os.path.join(root, f"..{old}"))


@pytest.mark.timeout(40)
def test_configmap_symlink_swap_gives_one_reload_and_same_bytes_none(two_upstreams):
    """A ConfigMap mounted as a directory, updated twice: once with a new
    sse-keepalive.yaml (one reload), once changing only another key of the
    ConfigMap (our bytes unchanged: no reload)."""
    a, b = two_upstreams
    port = free_port()
    root = tempfile.mkdtemp(prefix="ssek-configmap-")
    first = to_yaml(cfg(port, a)) + "\n"
    configmap_layout(root, first, "2026_12_05_10_00_00.1")
    p = start(first, workdir=root)
    try:
        assert who(p) == b"from-a"
        before = count_lines(p, RELOADED)
        second = to_yaml(cfg(port, b)) + "\n"
        configmap_update(root, second, "2026_12_05_10_00_00.1", "2026_12_05_10_01_00.2")
        expect_one_reload(p, before)
        assert who(p) == b"from-b"
        configmap_update(root, second, "2026_12_05_10_01_00.2", "2026_12_05_10_02_00.3",
                         extra_files=[("other-key.txt", "changed\n")])
        time.sleep(SETTLE + 0.5)
        assert count_lines(p, RELOADED) == before + 1, p.log_text()[-2000:]
        assert p.wait_for_log(r"bytes are what was last loaded; no reload")
        # and a third, real change after the no-op still reloads
        configmap_update(root, to_yaml(cfg(port, a)) + "\n", "2026_12_05_10_02_00.3", "2026_12_05_10_03_00.4")
        expect_one_reload(p, before + 1)
        assert who(p) == b"from-a"
    finally:
        assert p.stop() == 0


@pytest.mark.timeout(30)
def test_invalid_file_is_rejected_with_file_line_and_key_and_old_config_stays(two_upstreams):
    a, b = two_upstreams
    port = free_port()
    p = start(cfg(port, a))
    try:
        # upstream b, and one misspelt key in a section of its own
        good_lines = [l for l in (to_yaml(cfg(port, b)) + "\n").split("\n") if not l.startswith("timeouts") and
                      not l.startswith("  connect") and not l.startswith("  response")]
        bad = "\n".join(good_lines).rstrip("\n") + "\ntimeouts:\n  conect: 5s\n"
        bad_line = bad.split("\n").index("  conect: 5s") + 1
        tmp = p.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(bad)
        os.rename(tmp, p.config_path)
        err = p.wait_for_log(r"reload rejected", timeout=5.0)
        assert err and err.level == "error", p.log_text()[-2000:]
        assert f"{p.config_path}:{bad_line}:" in err.text and "timeouts.conect" in err.text, err.text
        assert "connect" in err.text  # the did-you-mean hint
        assert count_lines(p, RELOADED) == 0
        assert who(p) == b"from-a", "the running config must stay"
        assert p.alive()
        # fixing the file reloads
        with open(tmp, "w") as f:
            f.write(to_yaml(cfg(port, b)) + "\n")
        os.rename(tmp, p.config_path)
        expect_one_reload(p, 0)
        assert who(p) == b"from-b"
    finally:
        assert p.stop() == 0


@pytest.mark.timeout(30)
def test_ten_writes_within_100ms_give_one_reload(two_upstreams):
    """Ten in-place rewrites (open, truncate, write, close) 10 ms apart, the
    last one pointing at upstream b: exactly one reload, and it has b."""
    a, b = two_upstreams
    port = free_port()
    p = start(cfg(port, a))
    try:
        before = count_lines(p, RELOADED)
        t0 = time.monotonic()
        for i in range(10):
            target = b if i == 9 else a
            with open(p.config_path, "w") as f:
                f.write(to_yaml(cfg(port, target, heartbeat={"interval": f"{300 + i}ms"})) + "\n")
            time.sleep(0.01)
        assert time.monotonic() - t0 < 0.5
        expect_one_reload(p, before)
        assert who(p) == b"from-b"
    finally:
        assert p.stop() == 0


@pytest.mark.timeout(30)
def test_reload_watch_in_the_file_without_the_flag_and_no_watch_without_either(two_upstreams):
    a, b = two_upstreams
    port = free_port()
    p = start(cfg(port, a, reload={"watch": True}), flag=False)
    try:
        before = count_lines(p, RELOADED)
        tmp = p.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(to_yaml(cfg(port, b, reload={"watch": True})) + "\n")
        os.rename(tmp, p.config_path)
        expect_one_reload(p, before)
        assert who(p) == b"from-b"
    finally:
        assert p.stop() == 0

    port = free_port()
    p = start(cfg(port, a), flag=False)
    try:
        with open(p.config_path, "w") as f:
            f.write(to_yaml(cfg(port, b)) + "\n")
        time.sleep(SETTLE + 0.5)
        assert count_lines(p, RELOADED) == 0
        assert who(p) == b"from-a"
        assert "watching" not in p.log_text()
    finally:
        assert p.stop() == 0


@pytest.mark.timeout(20)
def test_watch_without_a_config_file_is_a_clear_error():
    empty = tempfile.mkdtemp(prefix="ssek-nowatch-")
    r = run_cli(["run", "--watch"], cwd=empty)
    assert r.returncode == 1, r
    assert "--watch needs a config file" in r.stderr, r.stderr
