"""Issue 17: replay of third-party request vectors (llhttp's request tests and
AWS http-desync-guardian's cases, in data/http-request-vectors/ with their
licences) through the proxy.

Every vector is either refused by the proxy itself (a 4xx/5xx error page) or
forwarded unchanged in meaning (method, the path it resolves to, query,
end-to-end header fields, body); the upstream never receives a request the
client did not send (no desynchronisation); http-desync-guardian's Severe
cases are refused before anything reaches the upstream, and its Compliant
cases are forwarded.

Each vector is sent on a fresh connection and followed by a sentinel request
(`GET /__sentinel`, `Connection: close`). Whatever the upstream receives
from that connection must be: requests matching the vector's own messages
in order (for llhttp, the messages its strict parser reads, from the `log`
block), then at most the sentinel.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
import yaml  # PyYAML: scripts/setup --test installs it

from conftest import require_binary
from harness import client as http
from harness import upstream as up
from harness.hardening import _BytesConnection, read_all
from harness.proxy import Proxy, base_config

pytestmark = [pytest.mark.proxy_only, pytest.mark.timeout(240)]

DATA = Path(__file__).parent / "data" / "http-request-vectors"
SENTINEL = b"GET /__sentinel HTTP/1.1\r\nHost: sentinel.test\r\nConnection: close\r\n\r\n"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
TCHAR = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


# --- reading the vectors ------------------------------------------------------

def llhttp_input(block: str) -> bytes:
    """llhttp's notation for raw input (see data/http-request-vectors/README.md)."""
    s = block[:-1] if block.endswith("\n") else block
    s = re.sub(r"\\(\r\n|\r|\n)", "", s)
    s = re.sub(r"\r\n|\r|\n", "\r\n", s)
    s = s.replace("\\r", "\r").replace("\\n", "\n").replace("\\t", "\t").replace("\\f", "\f")
    s = re.sub(r"\\x([0-9a-fA-F]+)", lambda m: chr(int(m.group(1), 16)), s)
    s = re.sub(r"\\([0-7]{1,3})", lambda m: chr(int(m.group(1), 8)), s)
    return bytes(ord(c) if ord(c) < 256 else 0x3F for c in s)


def llhttp_messages(log: str) -> tuple[list[dict], bool]:
    """The messages llhttp completes, from its event log, and whether it stops with an error."""
    messages, current, error = [], None, False
    for line in log.splitlines():
        line = line.replace("\\t", "\t").replace("\\f", "\f")
        if " message begin" in line:
            current = {"method": "", "url": "", "headers": [], "body": b"", "field": ""}
        elif "error code=" in line:
            error = True
            break
        elif current is not None and "span[" in line:
            kind = line.split("span[", 1)[1].split("]", 1)[0]
            spelled = line.split("]=", 1)[1]
            # a lone CR or LF is logged by name
            value = {"cr": "\r", "lf": "\n"}.get(spelled) or spelled[1:].rsplit('"', 1)[0]
            if kind == "method":
                current["method"] += value
            elif kind == "url":
                current["url"] += value
            elif kind == "header_field":
                current["field"] += value
            elif kind == "header_value":
                current["headers"].append((current["field"], value))
                current["field"] = ""
            elif kind == "body":
                current["body"] += value.encode("latin-1", "replace")
        elif current is not None and " message complete" in line:
            messages.append(current)
            current = None
    return messages, error


def load_llhttp() -> list:
    """One case per `http` block of a request test (`type` request...)."""
    cases = []
    for path in sorted((DATA / "llhttp").glob("*.md")):
        lines = path.read_text(encoding="utf-8").split("\n")
        title, meta, i = "", None, 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("#"):
                title = line.lstrip("#").strip()
            elif line.startswith("<!-- meta="):
                meta = json.loads(line[len("<!-- meta="):].rsplit("-->", 1)[0])
            elif line.startswith("```http") and meta is not None:
                j = lines.index("```", i + 1)
                block = "\n".join(lines[i + 1:j]) + "\n"
                k = lines.index("```log", j)
                e = lines.index("```", k + 1)
                log = "\n".join(lines[k + 1:e]) + "\n"
                if meta.get("type", "").startswith("request"):
                    messages, error = llhttp_messages(log)
                    name = f"llhttp/{path.stem}:{j}:{title[:40]}"
                    cases.append(pytest.param(
                        SimpleNamespace(raw=llhttp_input(block), messages=messages, error=error, kind=meta["type"],
                                        id=name), id=name))
                meta, i = None, e
            i += 1
    return cases


def load_guardian() -> list:
    cases = []
    for path in sorted((DATA / "http-desync-guardian").glob("*.yaml")):
        for n, case in enumerate(yaml.safe_load(path.read_text(encoding="utf-8")) or []):
            case["id"] = f"guardian/{path.stem}:{n}:{case['name'][:40]}"
            cases.append(pytest.param(case, id=case["id"]))
    return cases


def encode(text) -> bytes:
    text = str(text)
    return text.encode("latin-1") if all(ord(c) < 256 for c in text) else text.encode("utf-8")


def guardian_request(case) -> tuple[bytes, list[tuple[str, str]], bytes]:
    """The case's request bytes, its header fields, and the body sent after it.

    A `Host` field is added when the case has none (HTTP/1.1 requires one; the
    cases are about framing). Cases whose framing is one plain
    `Content-Length` or exactly `Transfer-Encoding: chunked` get a body of
    that framing, so the whole request can reach the upstream."""
    headers = [(str(h["name"]), str(h["value"])) for h in (case.get("headers") or [])]
    if not any(n.lower() == "host" for n, _ in headers):
        headers.append(("Host", "vectors.test"))
    head = encode(f"{case['method']} {case['uri']} {case['version']}") + b"\r\n"
    for name, value in headers:
        head += encode(name) + b": " + encode(value) + b"\r\n"
    head += b"\r\n"
    lengths = [v.strip(" \t") for n, v in headers if n.lower() == "content-length"]
    codings = [v.strip(" \t") for n, v in headers if n.lower() == "transfer-encoding"]
    body = b""
    if len(lengths) == 1 and not codings and re.fullmatch(r"[0-9]{1,7}", lengths[0]):
        body = b"x" * int(lengths[0])
    elif codings == ["chunked"] and not lengths:
        body = b"5\r\nhello\r\n0\r\n\r\n"
    return head + body, headers, body


# --- the proxy under test -------------------------------------------------------

@pytest.fixture(scope="module")
def shared():
    require_binary()
    with up.Upstream() as u:
        cfg = base_config(u.config_addr, workers=1, timeouts={"client_header": "1s", "connect": "2s", "response": "3s"},
                          log={"level": "info", "access": False})
        p = Proxy(cfg, log_level="info")
        try:
            yield SimpleNamespace(up=u, proxy=p)
        finally:
            p.stop()


def split_responses(raw: bytes, methods: list[str]) -> list:
    """The responses in `raw`, each read as the answer to the next method (HEAD has no body)."""
    fake = _BytesConnection(raw)
    out = []
    for i in range(64):
        if not fake.buf:
            break
        try:
            head = fake.read_head(timeout=0.01)
            body = fake.read_body(head, methods[i] if i < len(methods) else "GET", timeout=0.01)
        except http.ClientError:
            break
        out.append(http.Response(head, body))
        if not body.complete:
            break
    return out


def replay(s, data: bytes, methods: list[str]):
    """Send `data` and the sentinel on a fresh connection; return the client's
    responses (`methods`: the vector's request methods, in order) and the
    requests the upstream received from it."""
    before = len(s.up.requests)
    conn = http.connect(s.proxy.addr, timeout=1.5)
    try:
        conn.send(data + SENTINEL)
        raw, closed = read_all(conn, 1.5)
    finally:
        conn.close()
    if not closed:
        time.sleep(0.1)  # the proxy drops the exchange once we hang up
    assert s.proxy.alive(), s.proxy.log_text()[-3000:]
    received = list(s.up.requests[before:])
    return split_responses(raw, methods), received, raw


def origin_form(url: str) -> str:
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*", url)
    rest = url[m.end():] if m else url
    return rest if rest.startswith("/") or rest == "*" else "/" + rest


def resolved(target: str) -> tuple[str, str | None]:
    """(path as an origin resolves it, query): the meaning of a target."""
    target = origin_form(target).split("#", 1)[0]
    path, _, query = target.partition("?")
    if path == "*":
        return "*", None
    segments: list[str] = []
    raw = unquote(path, encoding="latin-1").split("/")
    for seg in raw[1:]:
        if seg in ("", "."):
            continue
        if seg == "..":
            if segments:
                segments.pop()
            continue
        segments.append(seg)
    trailing = raw[-1] in ("", ".", "..") and segments
    return "/" + "/".join(segments) + ("/" if trailing else ""), (query if "?" in target else None)


def split_sentinel(received):
    if received and received[-1].target == "/__sentinel":
        return received[:-1], True
    return received, False


def check_responses(responses, forwarded: int, sentinel: bool, raw: bytes):
    """One 200 per forwarded request (and the sentinel), then at most one error page."""
    statuses = [r.status for r in responses]
    oks = forwarded + (1 if sentinel else 0)
    assert statuses[:oks] == [200] * oks, (statuses, raw[:300])
    rest = statuses[oks:]
    assert len(rest) <= 1 and all(400 <= st < 600 for st in rest), (statuses, raw[:300])
    return rest


# --- llhttp ------------------------------------------------------------------------

# Vectors llhttp's strict parser stops at, where the proxy (like nginx) follows
# RFC 9112 and reads on. What reaches the upstream is re-framed by the proxy
# with CRLF and its own Content-Length, so the upstream reads exactly these
# requests.
LLHTTP_STRICTER = {
    "llhttp/invalid:73:HTTP protocol and ANNOUNCE method": (
        ["/music/sweet/music"], "any token is a method in HTTP (RFC 9110 9.1); llhttp knows a fixed list"),
    "llhttp/invalid:467:Missing CR between headers": (
        ["/", "/admin"], "a recipient MAY read a bare LF as a line end (RFC 9112 2.2): `Content-Length: 23` is a "
                         "field, its 23 body bytes end just before `GET /admin`, which is a second request"),
}

@pytest.mark.parametrize("case", load_llhttp())
def test_llhttp_request_vector(shared, case):
    responses, received, raw = replay(shared, case.raw, [m["method"] for m in case.messages])
    received, sentinel = split_sentinel(received)
    assert all(r.target != "/__sentinel" for r in received), "sentinel read inside the vector: desynchronised"
    expected = case.messages
    if case.id in LLHTTP_STRICTER:
        # llhttp stops with an error where RFC 9112 lets a recipient go on; the
        # proxy's reading is pinned here, so any change to it shows up.
        targets, _why = LLHTTP_STRICTER[case.id]
        assert case.error and [r.target for r in received] == targets, [r.target for r in received]
        expected = [{"method": r.method, "url": t, "body": r.body} for r, t in zip(received, targets)]
    # never more requests than llhttp reads, and each one means what llhttp read
    assert len(received) <= len(expected), ([r.target for r in received], expected)
    for got, want in zip(received, expected):
        assert got.method == want["method"], (got.method, want)
        assert resolved(got.target) == resolved(want["url"]), (got.target, want["url"])
        assert got.body == want["body"], (got.body, want["body"])
    if sentinel:
        # the proxy read the whole vector as requests: it forwarded all of them
        assert len(received) == len(expected) or case.error, ([r.target for r in received], expected)
    check_responses(responses, len(received), sentinel, raw)


# --- http-desync-guardian ------------------------------------------------------------

_TE = "the proxy forwards only a request body framed exactly `chunked`; any other transfer coding gets 400"
_URI = "docs/routing.md: a target with an encoded control character, raw non-ASCII or no path is refused"
_UTF8 = "request header values are forwarded as strings; bytes that are not UTF-8 could not stay unchanged"
# Compliant cases the proxy refuses, and why (refusing is always allowed; forwarding altered is not).
COMPLIANT_REFUSED = {
    "guardian/more-compliant-tests:7:Transfer-Encoding: identity and chunked ": _TE,
    "guardian/more-compliant-tests:8:Multiple transfer encoding headers in a ": _TE,
    "guardian/more-compliant-tests:5:Correct TE OK": _TE,
    "guardian/more-compliant-tests:9:TE with custom parameters OK": _TE,
    "guardian/rfc-compliant:8:Different Transfer-Encoding headers": _TE,
    "guardian/rfc-compliant:9:Different Transfer-Encoding headers comb": _TE,
    "guardian/rfc-compliant:10:Transfer-Encoding with a param: chunked;": _TE,
    "guardian/rfc-compliant:3:Valid Transfer-Encoding (chunked) + cust": _UTF8,
    "guardian/rfc-compliant:4:Valid custom header with tchar in name a": _UTF8,
    "guardian/rfc-compliant:5:Valid custom header with underscore in n": _UTF8,
    "guardian/rfc-compliant:6:Valid custom header with dot in name": _UTF8,
    "guardian/rfc-compliant:7:Valid custom header with digits in name": _UTF8,
    "guardian/rfc-compliant:12:International in URI": _URI,
    "guardian/rfc-compliant:13:Empty URI": _URI,
    "guardian/uri-specific-test-cases:10:%09 in URI is OK": _URI,
    "guardian/uri-specific-test-cases:12:%0D in URI is OK": _URI,
    "guardian/uri-specific-test-cases:13:%0A in URI is OK": _URI,
}

def end_to_end(headers):
    named = {t.strip().lower() for n, v in headers if n.lower() == "connection" for t in v.split(",")}
    return [(n, v.strip(" \t")) for n, v in headers
            if TCHAR.match(n) and "_" not in n and n.lower() not in HOP_BY_HOP | named | {"content-length", "host"}]


@pytest.mark.parametrize("case", load_guardian())
def test_desync_guardian_case(shared, case):
    tier = case["expected"]["tier"]
    data, headers, body = guardian_request(case)
    before_errors = len(shared.up.errors)
    responses, received, raw = replay(shared, data, [str(case["method"])])
    received, sentinel = split_sentinel(received)
    if tier == "Severe":
        assert responses and 400 <= responses[0].status < 500, (tier, raw[:300])
        assert not received and not sentinel, [r.target for r in received]
        time.sleep(0.05)
        assert len(shared.up.errors) == before_errors, shared.up.errors[before_errors:]
        return
    assert len(received) <= 1, [r.target for r in received]
    rest = check_responses(responses, len(received), sentinel, raw)
    if tier == "Compliant":
        if case["id"] in COMPLIANT_REFUSED:
            assert not received and rest and rest[0] == 400, (raw[:300], [r.status for r in responses])
        else:
            assert received and not rest, (raw[:300], [r.status for r in responses])
    if not received:
        return  # refused by the proxy
    got = received[0]
    assert got.method == case["method"]
    assert resolved(got.target) == resolved(str(case["uri"])), (got.target, case["uri"])
    assert got.body == (b"hello" if body.startswith(b"5\r\n") else body)
    for name, value in end_to_end(headers):
        assert value in got.get_all(name), (name, value, got.headers)
