"""What ships (issue 15), built by scripts/package into .build-static/:

- the single binary needs nothing but glibc: `ldd` lists only libc, libm and
  the loader, and it proxies a real event stream inside a chroot that holds
  nothing but the binary, its config and those libraries;
- the Debian package installs with dpkg -i (binary in /usr/bin, conffile,
  systemd unit that systemd-analyze accepts, man page, completions, docs),
  `check` passes on the packaged config, the installed binary proxies a
  stream, and dpkg -r / --purge leave the machine as it was;
- lintian reports no errors.

The package is built by .ci/run (scripts/package) before the tests. Without
it (a developer's ./scripts/test) these tests skip loudly; with CI=true they
fail instead."""
import contextlib
import fcntl
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from debian_packages import ensure_debian_package
from harness import client as http
from harness import upstream as up
from harness.proxy import REPO_ROOT, Proxy, base_config, free_port, to_yaml
from harness.streams import open_stream

pytestmark = pytest.mark.proxy_only

OUT = os.environ.get("SSE_KEEPALIVE_PACKAGE_DIR", os.path.join(REPO_ROOT, ".build-static"))
GLIBC = {"linux-vdso.so.1", "libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2"}
EVENTS = b"data: one\n\n" + b"id: 2\ndata: two\n\n"


def _missing(what: str):
    message = f"{what} not found in {OUT}: run scripts/package first"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    banner = "!" * 78
    sys.__stderr__.write(f"\n{banner}\n!!! SKIPPING: {message}\n{banner}\n")
    pytest.skip(f"LOUD SKIP: {message}")


@pytest.fixture(scope="module")
def static_binary() -> str:
    path = os.path.join(OUT, "sse-keepalive")
    if not os.access(path, os.X_OK):
        _missing("the static binary")
    return path


@pytest.fixture(scope="module")
def deb() -> str:
    found = sorted(glob.glob(os.path.join(OUT, "sse-keepalive_*.deb")))
    if not found:
        _missing("the .deb")
    return found[-1]


def ldd(path: str) -> list[tuple[str, str | None]]:
    """(name, resolved path or None) for each line of ldd's output."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if not parts:
            continue
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            libs.append((parts[0], target if target.startswith("/") else None))
        else:
            libs.append((os.path.basename(parts[0]), parts[0] if parts[0].startswith("/") else None))
    return libs


def stream_upstream(upstream):
    """An event stream: head, two events, a pause (heartbeats), a third event, end."""
    upstream.route("/events", up.event_stream([(0.0, EVENTS), (1.2, b"data: three\n\n")]))


def read_stream_through(addr) -> bytes:
    conn, head = open_stream(addr, "/events")
    try:
        assert head.status == 200, head.raw
        assert head.get("Content-Type", "").startswith("text/event-stream"), head.raw
        return conn.read_body(head, timeout=8).data
    finally:
        conn.close()


def assert_proxied_stream(data: bytes):
    assert data.startswith(b":heartbeat\n\n") or data.startswith(EVENTS[:10]), data[:80]
    payload = data.replace(b":heartbeat\n\n", b"")
    assert payload == EVENTS + b"data: three\n\n", data
    assert b":heartbeat\n\n" in data.split(EVENTS, 1)[1], "no heartbeat in the pause"


# --- the single binary -----------------------------------------------------------

def test_the_static_binary_needs_only_glibc(static_binary):
    names = {name for name, _ in ldd(static_binary)}
    assert names <= GLIBC, f"shared libraries besides glibc: {sorted(names - GLIBC)}"
    assert "libc.so.6" in names
    r = subprocess.run([static_binary, "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.strip(), r


def _chroot_prefix() -> list[str] | None:
    if os.geteuid() == 0:
        return ["chroot"]
    if shutil.which("unshare"):
        probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True)
        if probe.returncode == 0:
            return ["unshare", "--user", "--map-root-user", "chroot"]
    return None


@pytest.mark.timeout(60)
def test_the_binary_proxies_a_stream_in_a_chroot_holding_only_it_its_config_and_glibc(static_binary, upstream):
    """A root with /sse-keepalive, /sse-keepalive.yaml and the files ldd
    names: no /etc, /proc, /sys, /dev, no toolchain, no libevent."""
    prefix = _chroot_prefix()
    if prefix is None:
        pytest.skip("LOUD SKIP: neither root nor an unprivileged user namespace for chroot")
    stream_upstream(upstream)
    root = tempfile.mkdtemp(prefix="ssek-chroot-")
    try:
        shutil.copy2(static_binary, os.path.join(root, "sse-keepalive"))
        for _, path in ldd(static_binary):
            if path:
                dest = os.path.join(root, path.lstrip("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copy2(os.path.realpath(path), dest)
        port = free_port()
        # workers: 2 (no /sys to count cores in here); admin off
        with open(os.path.join(root, "sse-keepalive.yaml"), "w") as f:
            f.write(to_yaml(base_config(upstream.config_addr, listen_port=port, log={"level": "info"})) + "\n")
        files = sorted(os.path.relpath(os.path.join(d, n), root) for d, _, ns in os.walk(root) for n in ns)
        libs = sorted(path.lstrip("/") for _, path in ldd(static_binary) if path)
        assert files == sorted(["sse-keepalive", "sse-keepalive.yaml"] + libs), files

        proc = subprocess.Popen(prefix + [root, "/sse-keepalive", "run", "--config", "/sse-keepalive.yaml"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root)
        try:
            deadline = time.monotonic() + 10
            log = b""
            os.set_blocking(proc.stderr.fileno(), False)
            while b"listening on" not in log and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
                log += proc.stderr.read() or b""
            assert b"listening on" in log, f"exit {proc.poll()}: {log.decode(errors='replace')}\nfiles: {files}"
            data = read_stream_through(("127.0.0.1", port))
            assert_proxied_stream(data)
        finally:
            proc.terminate()
            proc.wait(10)
        assert proc.returncode == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the Debian package ------------------------------------------------------------

@contextlib.contextmanager
def dpkg_lock():
    """One package test at a time on this machine (others may run the suite too)."""
    with open("/tmp/sse-keepalive-dpkg-test.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def dpkg(*args, timeout=120) -> subprocess.CompletedProcess:
    """dpkg, waiting (bounded) for the dpkg lock another apt-get may hold."""
    deadline = time.monotonic() + timeout
    while True:
        r = subprocess.run(["dpkg", *args], capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if r.returncode == 0 or "lock" not in r.stderr or time.monotonic() > deadline:
            return r
        time.sleep(1)


def installed() -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "sse-keepalive"], capture_output=True, text=True)
    return r.returncode == 0 and "installed" in r.stdout and "not-installed" not in r.stdout


def package_paths(deb: str) -> list[str]:
    out = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    return [line.split()[-1].lstrip(".") or "/" for line in out.splitlines()]


@pytest.mark.timeout(120)
def test_dpkg_install_check_run_proxy_remove_purge(deb, upstream):
    if os.geteuid() != 0:
        pytest.skip("LOUD SKIP: dpkg -i needs root")
    with dpkg_lock():
        if installed():
            pytest.skip("LOUD SKIP: sse-keepalive is already installed on this machine; not touching it")
        paths = package_paths(deb)
        before = {p: os.path.lexists(p) for p in paths}
        assert not any(before[p] for p in paths if not p.endswith("/")), \
            [p for p in paths if before[p] and not p.endswith("/")]
        r = dpkg("-i", deb)
        try:
            assert r.returncode == 0, r.stderr
            assert installed()
            conffiles = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}", "sse-keepalive"],
                                       capture_output=True, text=True).stdout
            assert "/etc/sse-keepalive/sse-keepalive.yaml" in conffiles, conffiles
            for path in ["/usr/bin/sse-keepalive", "/lib/systemd/system/sse-keepalive.service",
                         "/usr/share/man/man1/sse-keepalive.1.gz",
                         "/usr/share/bash-completion/completions/sse-keepalive",
                         "/usr/share/zsh/vendor-completions/_sse-keepalive",
                         "/usr/share/fish/vendor_completions.d/sse-keepalive.fish",
                         "/usr/share/doc/sse-keepalive/copyright", "/usr/share/doc/sse-keepalive/README.md.gz"]:
                assert os.path.exists(path), path

            # check against the packaged config: loopback only
            r = subprocess.run(["/usr/bin/sse-keepalive", "check", "--config", "/etc/sse-keepalive/sse-keepalive.yaml"],
                               capture_output=True, text=True, timeout=10)
            assert r.returncode == 0, r.stderr
            assert 'listen: "127.0.0.1:8080"' in r.stdout and "127.0.0.1:9090" in r.stdout, r.stdout

            unit = open("/lib/systemd/system/sse-keepalive.service").read()
            assert "Type=notify" in unit and "ExecStart=/usr/bin/sse-keepalive run --config" in unit, unit
            assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "DynamicUser=yes" in unit, unit
            if shutil.which("systemd-analyze"):
                v = subprocess.run(["systemd-analyze", "verify", "/lib/systemd/system/sse-keepalive.service"],
                                   capture_output=True, text=True, timeout=60)
                assert v.returncode == 0 and not v.stderr.strip(), v.stderr
            if shutil.which("man"):
                m = subprocess.run(["man", "-w", "sse-keepalive"], capture_output=True, text=True)
                assert m.stdout.strip() == "/usr/share/man/man1/sse-keepalive.1.gz", m

            # the installed binary proxies a real event stream
            stream_upstream(upstream)
            p = Proxy(base_config(upstream.config_addr), binary="/usr/bin/sse-keepalive")
            try:
                assert_proxied_stream(read_stream_through(p.addr))
            finally:
                assert p.stop() == 0
        finally:
            removed = dpkg("-r", "sse-keepalive")
        assert removed.returncode == 0, removed.stderr
        assert not os.path.exists("/usr/bin/sse-keepalive")
        # remove keeps the conffile (Debian policy); purge takes it too
        assert os.path.exists("/etc/sse-keepalive/sse-keepalive.yaml")
        purged = dpkg("--purge", "sse-keepalive")
        assert purged.returncode == 0, purged.stderr
        after = {p: os.path.lexists(p) for p in paths}
        assert after == before, {p: (before[p], after[p]) for p in paths if before[p] != after[p]}
        status = subprocess.run(["dpkg-query", "-W", "sse-keepalive"], capture_output=True, text=True)
        assert status.returncode != 0, status.stdout


@pytest.mark.timeout(300)
def test_lintian_reports_no_errors(deb):
    lintian = ensure_debian_package("lintian", "lintian")
    r = subprocess.run([lintian, "--allow-root", "--pedantic", deb], capture_output=True, text=True, timeout=280)
    lines = [l for l in r.stdout.splitlines() if l[:2] in ("E:", "W:", "I:", "P:", "O:")]
    sys.__stderr__.write("\nlintian: " + ("\n  ".join(l for l in lines if l[:2] in ("E:", "W:")) or "no errors or warnings") + "\n")
    assert not [l for l in lines if l.startswith("E:")], r.stdout
