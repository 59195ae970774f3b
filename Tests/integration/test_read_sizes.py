"""Reads of every size arrive whole and in order. The proxy reads small
messages without asking the kernel how much is waiting (one read of up to 960
bytes) and sizes a read by FIONREAD after a read that came back full, so the
sizes around that boundary and a large body are the cases to check."""
from __future__ import annotations

import pytest

from conftest import require_binary
from harness import client as http
from harness import upstream as up
from harness.proxy import Proxy, base_config
from harness.streams import SSE_ACCEPT

pytestmark = pytest.mark.proxy_only

SIZES = [1, 959, 960, 961, 1919, 1920, 1921, 4096, 70_000, 600_000]


def body_of(size: int) -> bytes:
    return bytes((i * 7 + size) % 251 for i in range(size))


def event_of(size: int) -> bytes:
    # An event whose data line fills it to `size` bytes with its framing.
    return b"data: " + b"e" * max(0, size - 8) + b"\n\n"


@pytest.fixture(scope="module")
def proxy():
    require_binary()
    with up.Upstream() as u:
        for size in SIZES:
            u.route(f"/body/{size}", up.response(200, [("Content-Type", "application/octet-stream")], body_of(size)))
        # Events one at a time, with pauses, so each is read on its own.
        u.route("/events", up.event_stream([(0.02, event_of(size)) for size in SIZES[:-1]]))
        with Proxy(base_config(u.config_addr, workers=1)) as p:
            yield p


@pytest.mark.parametrize("size", SIZES)
def test_body_of_every_size_arrives_whole(proxy, size):
    conn = http.connect(proxy.addr, timeout=10)
    try:
        conn.send(http.build_request("GET", f"/body/{size}"))
        head = conn.read_head()
        assert head.status == 200
        body = conn.read_body(head)
        assert body.complete and body.data == body_of(size)
    finally:
        conn.close()


def test_events_of_every_size_arrive_whole_and_in_order(proxy):
    conn = http.connect(proxy.addr, timeout=10)
    try:
        conn.send(http.build_request("GET", "/events", [SSE_ACCEPT]))
        head = conn.read_head()
        assert head.status == 200
        body = conn.read_body(head)
        assert body.complete
        # Heartbeats (comment blocks) may fall between the events.
        blocks = [b for b in body.data.split(b"\n\n") if b and not b.startswith(b":")]
        assert blocks == [event_of(size)[:-2] for size in SIZES[:-1]]
    finally:
        conn.close()
