"""Issue 17: one normalised path picks the route and is the path sent upstream,
so no spelling of a target slips past a route's policy (token, upstream);
targets that cannot be made unambiguous, and CONNECT, are answered by the
proxy and never forwarded.

One proxy for the module, with two upstreams: `/tok` (a token route) and
every other path go to `main`, `/other` goes to `other`.
"""
from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import unquote

import pytest

from conftest import require_binary
from harness import client as http
from harness import upstream as up
from harness.hardening import raw_exchange
from harness.proxy import Proxy, base_config

pytestmark = pytest.mark.proxy_only

SECRET = "S3cr3t-t0k"


@pytest.fixture(scope="module")
def shared():
    require_binary()
    with up.Upstream() as main, up.Upstream() as other:
        cfg = base_config(main.config_addr, workers=1, routes=[
            {"path": "/tok", "token": {}},
            {"path": "/other", "upstream": other.config_addr},
        ])
        p = Proxy(cfg)
        try:
            yield SimpleNamespace(main=main, other=other, proxy=p)
        finally:
            p.stop()


@pytest.fixture
def s(shared):
    shared.main.requests.clear()
    shared.other.requests.clear()
    yield shared
    assert shared.proxy.alive(), shared.proxy.log_text()[-3000:]


def resolved(path: str) -> str:
    """How an origin resolves a path: decoded, dot segments removed, slashes merged."""
    out: list[str] = []
    for seg in unquote(path).split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    return "/" + "/".join(out)


TOKEN_SPELLINGS = [
    f"/tok/echo?token={SECRET}",
    f"/%74ok/echo?token={SECRET}",
    f"/%74%6F%6B/echo?token={SECRET}",
    f"//tok/echo?token={SECRET}",
    f"/./tok/echo?token={SECRET}",
    f"/x/../tok/echo?token={SECRET}",
    f"/x/%2e%2E/tok/echo?token={SECRET}",
    f"/tok//echo/./?token={SECRET}",
    f"http://test.local/tok/echo?token={SECRET}",
    f"HTTP://TEST.LOCAL:80/tok/echo?token={SECRET}",
]


@pytest.mark.parametrize("target", TOKEN_SPELLINGS)
def test_every_spelling_of_the_token_route_gets_its_policy(s, target):
    resp = http.request(s.proxy.addr, "GET", target)
    assert resp.status == 200, (target, resp.status, resp.body.data[:200])
    reqs = s.main.wait_requests(1, timeout=2)
    assert len(reqs) == 1, [r.target for r in reqs]
    got = reqs[0]
    assert SECRET not in got.target, got.target
    assert "token=" not in got.target, got.target
    assert got.get_all("authorization") == [f"Bearer {SECRET}"], got.headers
    # the upstream gets the path routing used, in a form with one reading
    assert got.path in ("/tok/echo", "/tok/echo/"), got.path
    assert resolved(got.path) == "/tok/echo"
    assert not s.other.requests


@pytest.mark.parametrize("target, upstream_path", [
    (f"/tok/../x?token={SECRET}", "/x"),
    (f"/tok/%2e%2e/x?token={SECRET}", "/x"),
    (f"/tok/./../x?token={SECRET}", "/x"),
    (f"http://test.local/tok/../x?token={SECRET}", "/x"),
])
def test_path_that_resolves_out_of_the_token_route_does_not_get_its_policy(s, target, upstream_path):
    resp = http.request(s.proxy.addr, "GET", target)
    assert resp.status == 200, (target, resp.status)
    reqs = s.main.wait_requests(1, timeout=2)
    assert len(reqs) == 1
    got = reqs[0]
    assert got.path == upstream_path, got.target
    # the default route: no token policy, the query untouched
    assert not got.has("authorization"), got.headers
    assert got.query == f"token={SECRET}"


@pytest.mark.parametrize("target, goes_to, path", [
    ("/x/../other/a", "other", "/other/a"),
    ("//other/a", "other", "/other/a"),
    ("/%6Fther/a", "other", "/other/a"),
    ("/./other", "other", "/other"),
    ("http://test.local/other/a", "other", "/other/a"),
    ("/other/../x", "main", "/x"),
    ("/other/%2E%2E/x", "main", "/x"),
    ("/other/a/../../x", "main", "/x"),
])
def test_a_route_with_its_own_upstream_is_reached_only_by_its_paths(s, target, goes_to, path):
    resp = http.request(s.proxy.addr, "GET", target)
    assert resp.status == 200, (target, resp.status)
    hit = s.other if goes_to == "other" else s.main
    missed = s.main if goes_to == "other" else s.other
    reqs = hit.wait_requests(1, timeout=2)
    assert [r.target for r in reqs] == [path]
    assert not missed.requests, [r.target for r in missed.requests]


@pytest.mark.parametrize("target", [
    f"/tok%2Fecho?token={SECRET}",
    f"/x%2F..%2Ftok/echo?token={SECRET}",
    f"/tok%5Cecho?token={SECRET}",
    f"/tok/echo%00?token={SECRET}",
    f"/tok/%0d%0aX-Evil:%201?token={SECRET}",
    f"/../tok/echo?token={SECRET}",
    f"/tok/../../x?token={SECRET}",
    f"/tok/%FF?token={SECRET}",
    f"/tok/%C0%AF?token={SECRET}",
    f"/tok/%G0?token={SECRET}",
    f"http://evil.example/tok/echo?token={SECRET}",
    f"http://user@test.local/tok/echo?token={SECRET}",
    f"ftp://test.local/tok/echo?token={SECRET}",
    f"tok/echo?token={SECRET}",
    "*",
])
def test_ambiguous_targets_are_refused_and_not_forwarded(s, target):
    responses, _rest, raw, closed = raw_exchange(s.proxy.addr, http.build_request("GET", target))
    assert [r.status for r in responses] == [400], raw[:300]
    assert SECRET.encode() not in raw
    assert closed
    assert not s.main.requests and not s.other.requests


def test_options_asterisk_is_forwarded(s):
    resp = http.request(s.proxy.addr, "OPTIONS", "*")
    assert resp.status == 200
    assert [r.target for r in s.main.wait_requests(1, timeout=2)] == ["*"]


def test_query_is_forwarded_byte_for_byte_after_the_normalised_path(s):
    resp = http.request(s.proxy.addr, "GET", "/a/./b//c?x=/../%2F&y=%2e&z=a+b")
    assert resp.status == 200
    assert [r.target for r in s.main.wait_requests(1, timeout=2)] == ["/a/b/c?x=/../%2F&y=%2e&z=a+b"]


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
@pytest.mark.parametrize("target", ["test.local:443", "127.0.0.1:1", "/tok/echo"])
def test_connect_is_answered_by_the_proxy(s, version, target):
    data = http.build_request("CONNECT", target, [("Host", target), ("Proxy-Authorization", "Basic eDp5")],
                              version=version)
    # bytes a client would send into the tunnel: never read as a request
    data += b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    responses, _rest, raw, closed = raw_exchange(s.proxy.addr, data)
    assert len(responses) == 1, raw[:400]
    assert responses[0].status == 405, raw[:400]
    assert responses[0].head.get("allow") == "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    assert closed
    assert not s.main.requests and not s.other.requests
