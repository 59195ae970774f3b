"""Upstream on a unix socket, listening on IPv6 loopback, per-route upstreams."""
import os
import socket

import pytest

from harness import client as http
from harness import sse
from harness import upstream as up
from harness.proxy import base_config, free_port
from harness.streams import fetch_stream

pytestmark = pytest.mark.proxy_only


def test_unix_socket_upstream(short_tmp, start_proxy):
    path = os.path.join(short_tmp, "up.sock")
    with up.Upstream(unix_path=path) as u:
        u.route("/events", up.event_stream([(0.7, b"data: via-unix\n\n")]))
        p = start_proxy(base_config(u.config_addr))
        e = up.decode_echo(http.request(p.addr, "POST", "/echo", body=b"payload").body.data)
        assert e["body"] == b"payload" and e["target"] == "/echo"
        head, body = fetch_stream(p.addr, "/events")
        assert body.data.startswith(b":heartbeat\n\n"), body.data
        assert sse.strip_heartbeats(body.data) == b"data: via-unix\n\n", body.data


def ipv6_loopback_available() -> bool:
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback_available(), reason="::1 is not available on this host")
def test_listen_on_ipv6_loopback(upstream, start_proxy):
    port = free_port("::1")
    p = start_proxy(base_config(upstream.config_addr, listen=f"[::1]:{port}"))
    resp = http.request(("::1", port), "GET", "/v6")
    assert resp.status == 200 and up.decode_echo(resp.body.data)["target"] == "/v6"


@pytest.mark.skipif(not ipv6_loopback_available(), reason="::1 is not available on this host")
def test_ipv6_upstream(start_proxy):
    with up.Upstream(host="::1") as u:
        p = start_proxy(base_config(u.config_addr))
        resp = http.request(p.addr, "GET", "/to-v6")
        assert resp.status == 200 and up.decode_echo(resp.body.data)["target"] == "/to-v6"


def test_listen_on_several_addresses(upstream, start_proxy):
    ports = [free_port(), free_port()]
    p = start_proxy(base_config(upstream.config_addr, listen=[f"127.0.0.1:{ports[0]}", f"127.0.0.2:{ports[1]}"]))
    for host, port in (("127.0.0.1", ports[0]), ("127.0.0.2", ports[1])):
        assert http.request((host, port), "GET", "/multi").status == 200


def test_route_upstream_override(start_proxy):
    with up.Upstream() as a, up.Upstream() as b:
        a.route("/", up.response(200, [], b"from-a"))
        b.route("/", up.response(200, [], b"from-b"))
        cfg = base_config(a.config_addr, routes=[{"path": "/events", "upstream": b.config_addr}])
        p = start_proxy(cfg)
        assert http.request(p.addr, "GET", "/events/x").body.data == b"from-b"
        assert http.request(p.addr, "GET", "/events").body.data == b"from-b"
        # segment-aware prefix: /eventsource is not under /events
        assert http.request(p.addr, "GET", "/eventsource").body.data == b"from-a"
        assert http.request(p.addr, "GET", "/other").body.data == b"from-a"
