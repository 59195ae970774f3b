"""docs/behaviour.md, "Slow clients and limits": a client that stops reading does not make the proxy buffer the
upstream without bound."""
import threading
import time

import pytest

from harness import upstream as up
from harness.streams import open_stream

pytestmark = pytest.mark.proxy_only

EVENT = b"data: " + b"x" * 65000 + b"\n\n"


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def flood(counter: dict, limit_bytes: int, limit_s: float):
    """Upstream step: push events as fast as the proxy takes them."""
    def run(sock, _pending) -> bool:
        sock.settimeout(0.2)
        deadline = time.monotonic() + limit_s
        while counter["sent"] < limit_bytes and time.monotonic() < deadline:
            try:
                counter["sent"] += sock.send(EVENT)
            except TimeoutError:
                continue
            except OSError:
                break
        return False
    return up.call(run)


@pytest.mark.timeout(30)
def test_stalled_client_applies_backpressure(stack):
    s = stack(limits={"stream_buffer": "256KiB"})
    counter = {"sent": 0}
    s.upstream.route("/flood", [up.send(up.head_bytes(200, [("Content-Type", "text/event-stream")])),
                                flood(counter, 400 << 20, 4.0)])
    baseline = rss_bytes(s.proxy.proc.pid)
    conn, head = open_stream(s.addr, "/flood")
    try:
        assert head.status == 200
        time.sleep(2.5)  # the client reads nothing
        sent, rss = counter["sent"], rss_bytes(s.proxy.proc.pid)
    finally:
        conn.close()
    # Kernel socket buffers on loopback hold at most a few tens of MB; the
    # rest must have been refused by the proxy (it stopped reading).
    assert sent < 64 << 20, f"upstream pushed {sent >> 20} MiB into a stalled stream"
    assert rss - baseline < 48 << 20, f"proxy RSS grew by {(rss - baseline) >> 20} MiB"
