"""Upstream names that move (issue 15): an upstream given by host name is
looked up again in the background every `upstream_resolve` and right after a
failed connect; new requests go to the new addresses; a name with several
addresses is used in turn; a name that stops resolving keeps its last
addresses with one warning.

The name lives in /etc/hosts (a line of this test's own, removed again in
every case); its addresses are loopback addresses 127.0.0.2 and 127.0.0.3,
each with a real upstream on the same port."""
import contextlib
import os
import uuid
import time

import pytest

from harness import client as http
from harness import upstream as up
from harness.ops import count_lines, wait_until
from harness.proxy import Proxy, base_config

pytestmark = pytest.mark.proxy_only

HOSTS = "/etc/hosts"


@pytest.fixture(autouse=True)
def _binary():
    from conftest import require_binary
    require_binary()


class HostsEntry:
    """Lines `ADDRESS NAME` appended to /etc/hosts (in place: it may be a
    bind mount), rewritten or removed; the file is restored on exit, keeping
    anything others changed meanwhile."""

    def __init__(self):
        self.name = f"ssek-{uuid.uuid4().hex[:10]}.test"
        self.marker = f"# sse-keepalive test_resolve {self.name}"

    def set(self, *addresses: str):
        with open(HOSTS) as f:
            lines = [l for l in f.read().splitlines() if not l.endswith(self.marker)]
        lines += [f"{a} {self.name} {self.marker}" for a in addresses]
        with open(HOSTS, "w") as f:
            f.write("\n".join(lines) + "\n")

    def remove(self):
        self.set()


@contextlib.contextmanager
def hosts_entry(*addresses):
    if not os.access(HOSTS, os.W_OK):
        pytest.skip("LOUD SKIP: /etc/hosts is not writable (run as root)")
    with open(HOSTS) as f:
        original = f.read()
    entry = HostsEntry()
    try:
        entry.set(*addresses)
        yield entry
    finally:
        entry.remove()
        with open(HOSTS) as f:
            assert entry.name not in f.read()
        # nothing else of the file changed by us
        with open(HOSTS) as f:
            now = f.read()
        assert now.rstrip("\n") == original.rstrip("\n") or entry.name not in now


@contextlib.contextmanager
def two_upstreams(close: bool = False):
    """Upstreams on 127.0.0.2 and 127.0.0.3, same port, answering who they
    are. close: `Connection: close` on every response, so that every request
    makes a new upstream connection (none is pooled)."""
    a = up.Upstream(host="127.0.0.2")
    port = a.addr[1]
    try:
        b = up.Upstream(host="127.0.0.3", port=port)
    except OSError:
        a.stop()
        pytest.skip("the same port is taken on 127.0.0.3")
    for u, name in ((a, b"from-a"), (b, b"from-b")):
        headers = [("Content-Type", "text/plain")] + ([("Connection", "close")] if close else [])
        u.route("/who", up.response(200, headers, name))
    try:
        yield a, b, port
    finally:
        a.stop()
        b.stop()


def who(p) -> tuple[int, bytes]:
    r = http.request(p.addr, "GET", "/who", timeout=5)
    return r.status, r.body.data


def wait_who(p, expected: bytes, timeout: float) -> bool:
    return bool(wait_until(lambda: who(p) == (200, expected), timeout, 0.1))


@pytest.mark.timeout(40)
def test_a_name_that_moves_is_followed_every_interval():
    """Requests 100 ms apart keep a pooled upstream connection busy: the move
    must also retire it."""
    with two_upstreams() as (a, b, port), hosts_entry("127.0.0.2") as entry:
        p = Proxy(base_config(f"{entry.name}:{port}", upstream_resolve="500ms"))
        try:
            assert who(p) == (200, b"from-a")
            entry.set("127.0.0.3")
            assert wait_who(p, b"from-b", 5.0), p.log_text()[-2000:]
            line = p.wait_for_log(rf"upstream {entry.name}:{port} now resolves to 127\.0\.0\.3:{port}")
            assert line and line.level == "notice", p.log_text()[-2000:]
            # stays there; an ordinary request flow is unaffected
            assert [who(p) for _ in range(5)] == [(200, b"from-b")] * 5
        finally:
            assert p.stop() == 0


@pytest.mark.timeout(40)
def test_a_failed_connect_triggers_a_lookup_at_once():
    """upstream_resolve: 1h, so only the connect failure can explain the switch."""
    with two_upstreams() as (a, b, port), hosts_entry("127.0.0.2") as entry:
        p = Proxy(base_config(f"{entry.name}:{port}", upstream_resolve="1h"))
        try:
            assert who(p) == (200, b"from-a")
            entry.set("127.0.0.3")
            time.sleep(1.5)
            assert who(p) == (200, b"from-a"), "no lookup is due yet"
            a.stop()  # the old address now refuses connections
            status, _ = who(p)
            assert status == 502
            assert wait_who(p, b"from-b", 5.0), p.log_text()[-2000:]
        finally:
            assert p.stop() == 0


@pytest.mark.timeout(40)
def test_every_address_of_a_name_is_used_and_a_dead_one_skipped():
    with two_upstreams(close=True) as (a, b, port), hosts_entry("127.0.0.2", "127.0.0.3") as entry:
        p = Proxy(base_config(f"{entry.name}:{port}", upstream_resolve="1h", workers=1))
        try:
            seen = {who(p)[1] for _ in range(10)}
            assert seen == {b"from-a", b"from-b"}, seen
            a.stop()
            first = [who(p) for _ in range(2)]
            assert [status for status, _ in first].count(502) <= 1, first
            # after at most one failure the dead address is skipped
            results = [who(p) for _ in range(8)]
            assert results == [(200, b"from-b")] * 8, (first, results)
        finally:
            assert p.stop() == 0


@pytest.mark.timeout(40)
def test_a_name_that_stops_resolving_keeps_its_addresses_with_one_warning():
    with two_upstreams() as (a, b, port), hosts_entry("127.0.0.2") as entry:
        p = Proxy(base_config(f"{entry.name}:{port}", upstream_resolve="300ms"))
        try:
            assert who(p) == (200, b"from-a")
            entry.remove()
            warning = p.wait_for_log(rf"upstream {entry.name}:{port}: cannot resolve .*keeping its last addresses "
                                     rf"127\.0\.0\.2:{port}", timeout=5.0)
            assert warning and warning.level == "warning", p.log_text()[-2000:]
            time.sleep(1.5)  # about five more failed lookups
            assert count_lines(p, r"keeping its last addresses") == 1, p.log_text()[-2000:]
            assert who(p) == (200, b"from-a")
            entry.set("127.0.0.3")
            assert wait_who(p, b"from-b", 5.0), p.log_text()[-2000:]
            assert p.wait_for_log(rf"upstream {entry.name}:{port} resolves again and now resolves to 127\.0\.0\.3")
        finally:
            assert p.stop() == 0


@pytest.mark.timeout(30)
def test_off_resolves_at_start_only():
    with two_upstreams() as (a, b, port), hosts_entry("127.0.0.2") as entry:
        p = Proxy(base_config(f"{entry.name}:{port}", upstream_resolve="off"))
        try:
            entry.set("127.0.0.3")
            a.stop()
            assert who(p)[0] == 502
            time.sleep(1.5)
            assert who(p)[0] == 502, "off: no lookup after a failure either"
            assert "now resolves to" not in p.log_text()
        finally:
            assert p.stop() == 0
