"""A scriptable HTTP/1.x origin over loopback TCP or a unix socket.

Tests map path prefixes to scripts: lists of steps (send bytes, sleep, reset,
close, half-close, hang) executed on the connection after the request was
read, so every byte and every pause the proxy sees is chosen by the test.
The default behaviour echoes the request as JSON. Every request head and body
received is recorded (with the connection it came on) for assertions on what
the proxy forwarded.

One thread per connection; connections are kept alive until the script
closes them or the peer does.
"""
from __future__ import annotations

import base64
import json
import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

IO_TIMEOUT = 10.0  # longest wait for one request head or body piece
MAX_HEAD = 1 << 20


# --- steps -----------------------------------------------------------------

def send(data: bytes):
    return ("send", data)


def sleep(seconds: float):
    return ("sleep", seconds)


def reset():
    """Close with RST (SO_LINGER 0)."""
    return ("reset", None)


def close():
    return ("close", None)


def half_close():
    """shutdown(SHUT_WR): EOF to the peer, but keep reading."""
    return ("half_close", None)


def hang(limit: float = 30.0):
    """Say nothing until the peer closes (or `limit` seconds pass)."""
    return ("hang", limit)


def call(fn):
    """Run fn(sock, pending_bytes) on the connection; it returns True to keep
    the connection for further requests. For tunnels and bulk senders."""
    return ("call", fn)


def tunnel_echo(limit: float = 10.0):
    """After a 101: echo raw bytes back until the peer closes (or `limit`)."""
    def run(sock, pending: bytearray) -> bool:
        if pending:
            sock.sendall(bytes(pending))
            pending.clear()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            r, _, _ = select.select([sock], [], [], 0.05)
            if r:
                data = sock.recv(65536)
                if not data:
                    break
                sock.sendall(data)
        return False
    return call(run)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n" if data else b""


LAST_CHUNK = b"0\r\n\r\n"


def head_bytes(status: int = 200, headers=(), reason: str | None = None, version: str = "HTTP/1.1") -> bytes:
    reason = reason if reason is not None else REASONS.get(status, "Status")
    lines = [f"{version} {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


REASONS = {200: "OK", 204: "No Content", 304: "Not Modified", 404: "Not Found",
           500: "Internal Server Error", 101: "Switching Protocols", 100: "Continue"}


def response(status: int = 200, headers=(), body: bytes = b"", framing: str = "length",
             reason: str | None = None) -> list:
    """A complete response. framing: length | chunked | close | none."""
    headers = list(headers)
    if framing == "length":
        headers.append(("Content-Length", str(len(body))))
        return [send(head_bytes(status, headers, reason) + body)]
    if framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        data = b"".join(chunk(body[i:i + 1000]) for i in range(0, len(body), 1000))
        return [send(head_bytes(status, headers, reason) + data + LAST_CHUNK)]
    if framing == "close":
        return [send(head_bytes(status, headers, reason) + body), close()]
    return [send(head_bytes(status, headers, reason))]  # 204/304/HEAD: no body


def event_stream(pieces, framing: str = "chunked", headers=(), end: str = "finish",
                 content_type: str = "text/event-stream", status: int = 200) -> list:
    """An event-stream response. pieces: list of (delay_before, bytes).
    framing: chunked | close | length. end: finish (last chunk / close as the
    framing requires) | reset | hang (keep the stream open, silent)."""
    hdrs = [("Content-Type", content_type)] + list(headers)
    total = sum(len(p) for _, p in pieces)
    if framing == "chunked":
        hdrs.append(("Transfer-Encoding", "chunked"))
    elif framing == "length":
        hdrs.append(("Content-Length", str(total)))
    steps = [send(head_bytes(status, hdrs))]
    for delay, data in pieces:
        if delay:
            steps.append(sleep(delay))
        if data:
            steps.append(send(chunk(data) if framing == "chunked" else data))
    if end == "reset":
        steps.append(reset())
    elif end == "hang":
        steps.append(hang())
    elif framing == "chunked":
        steps.append(send(LAST_CHUNK))
    elif framing == "close":
        steps.append(close())
    return steps


# --- requests ----------------------------------------------------------------

@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    raw_head: bytes
    body: bytes = b""
    framing: str = "none"  # none | length | chunked
    raw_body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    framing_error: str | None = None
    conn_id: int = 0
    index_on_conn: int = 0
    time: float = 0.0

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str | None:
        return self.target.split("?", 1)[1] if "?" in self.target else None

    def get_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name, default=None):
        values = self.get_all(name)
        return values[0] if values else default

    def has(self, name):
        return bool(self.get_all(name))

    def tokens(self, name):
        return [t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip()]

    def to_json(self) -> bytes:
        return json.dumps({
            "method": self.method, "target": self.target, "version": self.version,
            "headers": self.headers, "body_b64": base64.b64encode(self.body).decode(),
            "framing": self.framing, "framing_error": self.framing_error,
            "trailers": self.trailers, "conn_id": self.conn_id, "index_on_conn": self.index_on_conn,
        }).encode()


def decode_echo(body: bytes) -> dict:
    d = json.loads(body)
    d["body"] = base64.b64decode(d["body_b64"])
    return d


def echo(req: Request) -> list:
    """200 with the request as JSON. Follows HTTP/1.0 persistence rules, so
    direct mode behaves like a correct origin for 1.0 clients too."""
    headers = [("Content-Type", "application/json"), ("X-Echo", "1")]
    if req.version == "HTTP/1.0":
        if "keep-alive" in req.tokens("connection"):
            return response(200, headers + [("Connection", "keep-alive")], req.to_json())
        return response(200, headers, req.to_json()) + [close()]
    return response(200, headers, req.to_json())


class BadRequest(Exception):
    pass


class _Reader:
    """Buffered reads with a deadline, on the upstream side."""

    def __init__(self, sock, server):
        self.sock, self.server, self.buf = sock, server, bytearray()

    def fill(self, timeout=IO_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while not self.server.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            try:
                # The server may close this socket while it stops: that is an EOF here.
                r, _, _ = select.select([self.sock], [], [], min(left, 0.2))
                if not r:
                    continue
                data = self.sock.recv(65536)
            except (ValueError, OSError):
                return False
            if not data:
                return False
            self.buf += data
            return True
        return False

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_HEAD or not self.fill():
                raise BadRequest("EOF or oversize inside a line")
        i = self.buf.index(b"\n") + 1
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self.fill():
                raise BadRequest("EOF inside a body")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _read_request(reader: _Reader) -> Request | None:
    """Parse one request; None on a clean EOF between requests."""
    while b"\r\n\r\n" not in reader.buf and b"\n\n" not in reader.buf:
        if len(reader.buf) > MAX_HEAD:
            raise BadRequest("head too large")
        if not reader.fill(timeout=60):
            if reader.buf:
                raise BadRequest("EOF inside a head")
            return None
    raw = bytearray()
    while True:
        line = reader.line()
        raw += line
        if line in (b"\r\n", b"\n") and len(raw) > len(line):
            break
    text = bytes(raw).decode("latin-1").split("\n")
    parts = text[0].rstrip("\r").split(" ")
    if len(parts) != 3:
        raise BadRequest(f"bad request line {text[0]!r}")
    headers = []
    for line in text[1:]:
        line = line.rstrip("\r")
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest(f"bad header {line!r}")
            headers.append((name, value.strip()))
    req = Request(parts[0], parts[1], parts[2], headers, bytes(raw), time=time.monotonic())
    if "100-continue" in req.tokens("expect") and not reader.buf:
        reader.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # like a real origin
    _read_request_body(reader, req)
    return req


def _read_request_body(reader: _Reader, req: Request):
    te, cl = req.tokens("transfer-encoding"), req.get_all("content-length")
    if te and cl:
        req.framing_error = "both Transfer-Encoding and Content-Length"
    if te:
        if te[-1] != "chunked":
            req.framing_error = f"Transfer-Encoding {te} does not end in chunked"
            return
        req.framing = "chunked"
        raw, body = bytearray(), bytearray()
        while True:
            size_line = reader.line()
            raw += size_line
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                req.framing_error = f"bad chunk size line {size_line!r}"
                return
            if size == 0:
                break
            data = reader.exactly(size)
            crlf = reader.exactly(2)
            raw += data + crlf
            body += data
            if crlf != b"\r\n":
                req.framing_error = "chunk not followed by CRLF"
                return
        while True:
            line = reader.line()
            raw += line
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            req.trailers.append((name, value.strip()))
        req.body, req.raw_body = bytes(body), bytes(raw)
    elif cl:
        if len(set(cl)) != 1 or not cl[0].isdigit():
            req.framing_error = f"bad Content-Length {cl}"
            return
        req.framing = "length"
        req.body = req.raw_body = reader.exactly(int(cl[0]))


# --- server ------------------------------------------------------------------

@dataclass
class ConnectionRecord:
    conn_id: int
    opened: float
    closed_by_peer: float | None = None  # when we saw EOF/RST from the proxy
    requests: int = 0


class Upstream:
    """Start with `with Upstream() as up:`; `up.addr` is what the proxy dials
    ((host, port) or a unix path), `up.config_addr` how its config spells it."""

    def __init__(self, host: str = "127.0.0.1", unix_path: str | None = None, port: int = 0):
        self.routes: list[tuple[str, object]] = []
        self.requests: list[Request] = []
        self.connections: list[ConnectionRecord] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.unix_path = unix_path
        if unix_path:
            if os.path.exists(unix_path):
                os.unlink(unix_path)
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(unix_path)
            self.addr = unix_path
            self.config_addr = f"unix:{unix_path}"
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.listener = socket.socket(family, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host, port))
            self.addr = self.listener.getsockname()[:2]
            self.config_addr = f"[{host}]:{self.addr[1]}" if ":" in host else f"{host}:{self.addr[1]}"
        self.listener.listen(128)
        self.listener.settimeout(0.2)
        self.threads: list[threading.Thread] = []
        self.sockets: list[socket.socket] = []
        self.accept_thread = threading.Thread(target=self._accept_loop, daemon=True, name="upstream-accept")
        self.accept_thread.start()

    # -- configuration -----------------------------------------------------
    def route(self, prefix: str, behaviour):
        """behaviour: a list of steps, or a callable(Request) -> steps.
        Longest matching prefix wins; unmatched paths are echoed."""
        with self.lock:
            self.routes.append((prefix, behaviour))
            self.routes.sort(key=lambda r: -len(r[0]))
        return self

    def requests_for(self, path_prefix: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def wait_requests(self, n: int, timeout: float = 5.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.01)
        with self.lock:
            return list(self.requests)

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stopping.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self.sockets)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.accept_thread.join(2)
        for t in self.threads:
            t.join(2)
        if self.unix_path and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                record = ConnectionRecord(len(self.connections) + 1, time.monotonic())
                self.connections.append(record)
                self.sockets.append(sock)
            t = threading.Thread(target=self._serve, args=(sock, record), daemon=True,
                                 name=f"upstream-conn-{record.conn_id}")
            self.threads.append(t)
            t.start()

    # -- one connection ----------------------------------------------------
    def _serve(self, sock: socket.socket, record: ConnectionRecord):
        reader = _Reader(sock, self)
        try:
            while not self.stopping.is_set():
                try:
                    req = _read_request(reader)
                except (BadRequest, TimeoutError) as e:
                    self.errors.append(f"conn {record.conn_id}: {e}")
                    return
                if req is None:
                    record.closed_by_peer = time.monotonic()
                    return
                record.requests += 1
                req.conn_id, req.index_on_conn = record.conn_id, record.requests
                with self.lock:
                    self.requests.append(req)
                if not self._run(sock, reader, record, self._script_for(req)):
                    return
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _script_for(self, req: Request):
        with self.lock:
            routes = list(self.routes)
        for prefix, behaviour in routes:
            if req.path == prefix or req.path.startswith(prefix.rstrip("/") + "/") or \
                    (prefix.endswith("/") and req.path.startswith(prefix)):
                return behaviour(req) if callable(behaviour) else behaviour
        return echo(req)

    def _run(self, sock, reader, record, steps) -> bool:
        """Execute steps; False when the connection is finished."""
        for kind, arg in steps:
            if self.stopping.is_set():
                return False
            try:
                if kind == "send":
                    sock.sendall(arg)
                elif kind == "sleep":
                    if self._peer_closed_within(sock, reader, arg):
                        record.closed_by_peer = time.monotonic()
                        return False
                elif kind == "hang":
                    if self._peer_closed_within(sock, reader, arg):
                        record.closed_by_peer = time.monotonic()
                    return False
                elif kind == "reset":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                    return False
                elif kind == "close":
                    sock.close()
                    return False
                elif kind == "half_close":
                    sock.shutdown(socket.SHUT_WR)
                elif kind == "call":
                    if not arg(sock, reader.buf):
                        return False
            except (BrokenPipeError, ConnectionResetError, OSError):
                record.closed_by_peer = time.monotonic()
                return False
        return True

    def _peer_closed_within(self, sock, reader, seconds: float) -> bool:
        """Sleep `seconds`, watching for the peer closing. Bytes that arrive
        (a pipelined request) are kept for the next request."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([sock], [], [], min(left, 0.05))
            if r:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return True
                if not data:
                    return True
                reader.buf += data
        return True
