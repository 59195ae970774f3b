"""docs/behaviour.md, "Query token": query token moved to an Authorization header, never logged."""
import pytest

from harness import client as http
from harness.proxy import free_port

pytestmark = pytest.mark.proxy_only

SECRET = "s3cr3t-t0k"
ROUTES = [
    {"path": "/api/notifications/stream", "token": {}},
    {"path": "/custom", "token": {"query": "access_token", "header": "X-Auth", "scheme": "Token"}},
    {"path": "/dead", "token": {}, "upstream": "127.0.0.1:1"},
]


def forwarded(s, path_prefix):
    reqs = s.upstream.requests_for(path_prefix)
    assert len(reqs) == 1, [r.target for r in s.upstream.requests]
    return reqs[0]


def test_query_token_becomes_bearer_header_and_rest_of_query_kept(stack):
    s = stack(routes=ROUTES)
    target = f"/api/notifications/stream?b=%2F2&token={SECRET}%2Bx%3D&a=1&a=2&empty="
    assert http.request(s.addr, "GET", target).status == 200
    req = forwarded(s, "/api/notifications/stream")
    assert req.target == "/api/notifications/stream?b=%2F2&a=1&a=2&empty=", req.target
    assert req.get_all("authorization") == [f"Bearer {SECRET}+x="]
    assert SECRET not in s.proxy.log_text()


def test_token_only_parameter(stack):
    s = stack(routes=ROUTES)
    assert http.request(s.addr, "GET", f"/api/notifications/stream?token={SECRET}").status == 200
    req = forwarded(s, "/api/notifications/stream")
    assert req.target in ("/api/notifications/stream", "/api/notifications/stream?"), req.target
    assert req.get("authorization") == f"Bearer {SECRET}"


def test_existing_header_wins_and_parameter_still_removed(stack):
    s = stack(routes=ROUTES)
    resp = http.request(s.addr, "GET", f"/api/notifications/stream?token={SECRET}&x=1",
                        [("Authorization", "Bearer from-header")])
    assert resp.status == 200
    req = forwarded(s, "/api/notifications/stream")
    assert req.target == "/api/notifications/stream?x=1"
    assert req.get_all("authorization") == ["Bearer from-header"]


def test_token_given_twice_is_400(stack):
    s = stack(routes=ROUTES)
    resp = http.request(s.addr, "GET", f"/api/notifications/stream?token={SECRET}&token=other")
    assert resp.status == 400
    assert SECRET.encode() not in resp.body.data
    assert not s.upstream.requests_for("/api/notifications/stream")


def test_custom_query_header_and_scheme(stack):
    s = stack(routes=ROUTES)
    assert http.request(s.addr, "GET", f"/custom/x?access_token={SECRET}&token=keep").status == 200
    req = forwarded(s, "/custom")
    assert req.target == "/custom/x?token=keep"
    assert req.get_all("x-auth") == [f"Token {SECRET}"]


def test_routes_without_token_forward_query_untouched(stack):
    s = stack(routes=ROUTES)
    assert http.request(s.addr, "GET", f"/other?token={SECRET}").status == 200
    req = forwarded(s, "/other")
    assert req.target == f"/other?token={SECRET}" and not req.has("authorization")


def test_token_never_in_logs_or_error_pages(stack):
    s = stack(routes=ROUTES, log={"level": "debug", "access": True})
    resp = http.request(s.addr, "GET", f"/dead/stream?token={SECRET}")
    assert resp.status == 502
    assert SECRET.encode() not in resp.body.data
    http.request(s.addr, "GET", f"/api/notifications/stream?token={SECRET}")
    s.proxy.wait_for_log("REDACTED", timeout=1)
    log = s.proxy.log_text()
    assert SECRET not in log, log
    for line in log.splitlines():
        if "token=" in line:
            assert "token=[REDACTED]" in line, line


# Issue 17 item 4: token values.

@pytest.mark.parametrize("query", ["token=", "token", "token=%20%20", "token=%20", "token=%09"])
def test_empty_or_blank_token_sends_no_credentials(stack, query):
    s = stack(routes=ROUTES)
    resp = http.request(s.addr, "GET", f"/api/notifications/stream?a=1&{query}&b=2")
    assert resp.status == 200
    req = forwarded(s, "/api/notifications/stream")
    assert req.target == "/api/notifications/stream?a=1&b=2", req.target
    assert not req.has("authorization"), req.headers


@pytest.mark.parametrize("value", [
    f"%20{SECRET}", f"{SECRET}%20", f"%20{SECRET}%20",  # surrounding whitespace
    f"{SECRET}%0d%0aX-Evil:%201", f"{SECRET}%00", f"%09{SECRET}", f"{SECRET}%7F",  # controls
    f"{SECRET}%20x", f"{SECRET}%2Cx", f"{SECRET}%3Bx", f"%3D{SECRET}", f"a%3Db", "caf%C3%A9",  # not a b64token
])
def test_bad_token_is_400_and_not_forwarded(stack, value):
    s = stack(routes=ROUTES)
    resp = http.request(s.addr, "GET", f"/api/notifications/stream?token={value}")
    assert resp.status == 400, (value, resp.status)
    assert SECRET.encode() not in resp.body.data
    assert not s.upstream.requests_for("/api/notifications/stream")


def test_other_schemes_take_inner_spaces(stack):
    s = stack(routes=ROUTES)
    assert http.request(s.addr, "GET", "/custom/x?access_token=a%20b%3Dc").status == 200
    assert forwarded(s, "/custom").get_all("x-auth") == ["Token a b=c"]
    assert http.request(s.addr, "GET", "/custom/x?access_token=%20a").status == 400
