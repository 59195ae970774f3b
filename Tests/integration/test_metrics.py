"""docs/metrics.md: the admin listener (GET /healthz, GET /metrics in Prometheus text)."""
import re
import time

import pytest

from harness import client as http
from harness import upstream as up
from harness.proxy import free_port
from harness.streams import open_stream

pytestmark = pytest.mark.proxy_only

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def scrape(admin) -> dict:
    """{(name, frozenset(labels)): value} from the Prometheus text format."""
    resp = http.request(admin, "GET", "/metrics")
    assert resp.status == 200 and resp.head.get("content-type", "").startswith("text/plain"), resp.head.raw
    out = {}
    for line in resp.body.data.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    out["__text__"] = resp.body.data.decode()
    return out


def value(metrics, name, **labels) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def total(metrics, name) -> float:
    return sum(v for k, v in metrics.items() if k != "__text__" and k[0] == name)


def wait_metric(admin, predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(admin)
        if predicate(m) or time.monotonic() > deadline:
            return m
        time.sleep(0.05)


@pytest.fixture
def admin_stack(stack):
    port = free_port()
    s = stack(admin={"listen": f"127.0.0.1:{port}"},
              routes=[{"path": "/events", "heartbeat": "200ms"}, {"path": "/tok", "token": {}},
                      {"path": "/dead", "upstream": "127.0.0.1:1"}])
    return s, ("127.0.0.1", port)


def test_healthz(admin_stack):
    s, admin = admin_stack
    assert http.request(admin, "GET", "/healthz").status == 200


def test_stream_gauge_heartbeats_and_requests(admin_stack):
    s, admin = admin_stack
    s.upstream.route("/events", up.event_stream([], end="hang"))
    conn, head = open_stream(s.addr, "/events")
    try:
        body = http.read_stream(conn, head, 0.9)
        during = scrape(admin)
    finally:
        conn.close()
    n = body.data.count(b":heartbeat\n\n")
    assert value(during, "sse_keepalive_streams_open", route="/events") == 1
    assert n <= value(during, "sse_keepalive_heartbeats_total", route="/events") <= n + 1
    after = wait_metric(admin, lambda m: value(m, "sse_keepalive_streams_open", route="/events") == 0)
    assert value(after, "sse_keepalive_streams_open", route="/events") == 0
    assert value(after, "sse_keepalive_requests_total", route="/events", code="200") == 1
    assert value(after, "sse_keepalive_bytes_forwarded_total", direction="upstream_to_client") > 0


def test_upstream_errors_and_502_counted(admin_stack):
    s, admin = admin_stack
    assert http.request(s.addr, "GET", "/dead/x").status == 502
    m = wait_metric(admin, lambda m: value(m, "sse_keepalive_requests_total", route="/dead", code="502") == 1)
    assert value(m, "sse_keepalive_requests_total", route="/dead", code="502") == 1
    errors = sum(v for k, v in m.items() if k != "__text__" and k[0] == "sse_keepalive_upstream_errors_total"
                 and ("route", "/dead") in k[1])
    assert errors >= 1, m["__text__"]


def test_client_reset_counted_and_token_not_in_labels(admin_stack):
    s, admin = admin_stack
    s.upstream.route("/events", up.event_stream([(0.1, b"data: x\n\n")] * 30))
    conn, head = open_stream(s.addr, "/events?token=sekrit-value")
    conn.read_body(head, timeout=0.3, timeout_ok=True)
    conn.reset()
    assert http.request(s.addr, "GET", "/tok?token=sekrit-value").status == 200
    m = wait_metric(admin, lambda m: total(m, "sse_keepalive_client_disconnects_total") >= 1)
    assert total(m, "sse_keepalive_client_disconnects_total") >= 1, m["__text__"]  # kind names are free
    assert "sekrit" not in m["__text__"]
