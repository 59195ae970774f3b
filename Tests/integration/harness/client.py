"""A raw-socket HTTP/1.x client that shows exactly what came over the wire.

Every read has a deadline; nothing here can block forever. Pieces of body are
timestamped (time.monotonic()) when they arrive, so tests can reason about
heartbeat cadence without trusting the proxy's clock.
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 5.0


class ClientError(AssertionError):
    """The peer sent something that is not valid HTTP/1.x (or timed out)."""


@dataclass
class ResponseHead:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    raw: bytes
    time: float

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_all(name)
        return values[0] if values else default

    def has(self, name: str) -> bool:
        return bool(self.get_all(name))

    def tokens(self, name: str) -> list[str]:
        """Comma-separated tokens of all headers `name`, lower-cased."""
        return [t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip()]

    @property
    def framing(self) -> str:
        if "chunked" in self.tokens("transfer-encoding"):
            return "chunked"
        if self.has("content-length"):
            return "length"
        return "close"


@dataclass
class Body:
    data: bytes = b""
    framing: str = "none"  # none | length | chunked | close
    complete: bool = True  # framing finished properly (last chunk / length / EOF)
    pieces: list[tuple[float, bytes]] = field(default_factory=list)  # de-chunked, as received
    chunk_sizes: list[int] = field(default_factory=list)  # chunk boundaries as sent
    trailers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Response:
    head: ResponseHead
    body: Body

    @property
    def status(self):
        return self.head.status


def connect(addr, timeout: float = DEFAULT_TIMEOUT) -> "HttpConnection":
    """addr: (host, port) for TCP (v4 or v6) or a str path for a unix socket."""
    if isinstance(addr, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    try:
        sock.connect(addr)
    except OSError:
        sock.close()
        raise
    return HttpConnection(sock, timeout)


def build_request(method: str, target: str, headers=(), body: bytes | None = None,
                  version: str = "HTTP/1.1", host: str | None = "test.local") -> bytes:
    """Exact request bytes. Adds Host (1.1) and Content-Length when a body is
    given and the caller set neither Content-Length nor Transfer-Encoding."""
    names = {k.lower() for k, _ in headers}
    lines = [f"{method} {target} {version}"]
    if host and "host" not in names and version == "HTTP/1.1":
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    if body is not None and not names & {"content-length", "transfer-encoding"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(body: bytes, sizes=(7, 1, 100), extensions: bool = False, trailers=()) -> bytes:
    """Encode `body` in chunks of the given sizes (cycled)."""
    out, i, k = bytearray(), 0, 0
    while i < len(body):
        size = sizes[k % len(sizes)]
        part = body[i:i + size]
        ext = ";ext=1" if extensions else ""
        out += f"{len(part):x}{ext}\r\n".encode() + part + b"\r\n"
        i += size
        k += 1
    out += b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in trailers) + b"\r\n"
    return bytes(out)


class HttpConnection:
    def __init__(self, sock: socket.socket, timeout: float):
        self.sock = sock
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False

    # -- raw I/O ---------------------------------------------------------
    def send(self, data: bytes):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Abort with RST (SO_LINGER 0), like a browser tab killed mid-stream."""
        import struct
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def _fill(self, deadline: float) -> bool:
        """Read more bytes into buf. False on EOF; raises ClientError on timeout."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClientError("timed out waiting for data")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise ClientError("timed out waiting for data") from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_line(self, deadline: float, limit: int = 65536) -> bytes:
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                return self._take(nl + 1)
            if len(self.buf) > limit:
                raise ClientError("line too long")
            if not self._fill(deadline):
                raise ClientError(f"EOF inside a line: {bytes(self.buf)!r}")

    def read_available(self, wait: float) -> bytes:
        """Whatever arrives within `wait` seconds (b'' if nothing). Used to
        prove that no stray bytes follow a response."""
        deadline = time.monotonic() + wait
        try:
            while not self.buf and self._fill(deadline):
                pass
        except ClientError:
            pass
        return self._take(len(self.buf))

    def wait_eof(self, timeout: float) -> bool:
        """True if the peer closes within `timeout` with no further bytes."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except ClientError:
            return False
        return True

    # -- HTTP ------------------------------------------------------------
    def read_head(self, timeout: float | None = None, allow_1xx: bool = False) -> ResponseHead:
        """Read one response head; 1xx interim heads are skipped unless asked."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            head = self._read_one_head(deadline)
            if allow_1xx or not (100 <= head.status < 200) or head.status == 101:
                return head

    def _read_one_head(self, deadline) -> ResponseHead:
        raw = bytearray()
        while True:
            line = self.read_line(deadline)
            raw += line
            if line in (b"\r\n", b"\n"):
                if len(raw) == len(line):
                    raise ClientError("empty line before status line")
                break
        t = time.monotonic()
        lines = bytes(raw).decode("latin-1").split("\n")
        status_line = lines[0].rstrip("\r")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ClientError(f"bad status line {status_line!r}")
        headers = []
        for line in lines[1:]:
            line = line.rstrip("\r")
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or name != name.strip() or not name:
                raise ClientError(f"bad header line {line!r}")
            headers.append((name, value.strip()))
        return ResponseHead(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "",
                            headers, bytes(raw), t)

    def body_framing(self, head: ResponseHead, method: str) -> str:
        if method == "HEAD" or head.status in (204, 304) or 100 <= head.status < 200:
            return "none"
        return head.framing

    def read_body(self, head: ResponseHead, method: str = "GET", timeout: float | None = None,
                  on_piece=None, timeout_ok: bool = False) -> Body:
        """Read the body per RFC 9112 section 6.3. `on_piece(t, bytes)` is called
        for each de-chunked piece as it arrives; return True from it to stop.
        With timeout_ok, running out of time returns the partial body
        (complete=False) instead of raising."""
        deadline = time.monotonic() + (timeout or self.timeout)
        framing = self.body_framing(head, method)
        body = Body(framing=framing)
        try:
            if framing == "length":
                values = {v.strip() for v in head.get_all("content-length")}
                if len(values) != 1 or not next(iter(values)).isdigit():
                    raise ClientError(f"bad Content-Length {values}")
                self._read_length(int(values.pop()), body, deadline, on_piece)
            elif framing == "chunked":
                self._read_chunked(body, deadline, on_piece)
            elif framing == "close":
                self._read_to_close(body, deadline, on_piece)
        except ClientError as e:
            if not (timeout_ok and "timed out" in str(e)):
                raise
            body.complete = False
        body.data = b"".join(p for _, p in body.pieces)
        return body

    def _emit(self, body, data, on_piece):
        if not data:
            return False
        t = time.monotonic()
        body.pieces.append((t, data))
        return bool(on_piece and on_piece(t, data))

    def _read_length(self, n, body, deadline, on_piece):
        while n > 0:
            if not self.buf and not self._fill(deadline):
                body.complete = False
                return
            piece = self._take(min(n, len(self.buf)))
            n -= len(piece)
            if self._emit(body, piece, on_piece):
                body.complete = n == 0
                return

    def _read_to_close(self, body, deadline, on_piece):
        while True:
            if self.buf:
                if self._emit(body, self._take(len(self.buf)), on_piece):
                    body.complete = False
                    return
            if not self._fill(deadline):
                return

    def _read_chunked(self, body, deadline, on_piece):
        try:
            while True:
                size_line = self.read_line(deadline).rstrip(b"\r\n")
                size_text = size_line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ClientError(f"bad chunk size line {size_line!r}") from None
                if size == 0:
                    break
                body.chunk_sizes.append(size)
                left = size
                while left:
                    if not self.buf and not self._fill(deadline):
                        raise ClientError("EOF inside a chunk")
                    piece = self._take(min(left, len(self.buf)))
                    left -= len(piece)
                    if self._emit(body, piece, on_piece) and left == 0:
                        self._expect_crlf(deadline)
                        body.complete = False
                        return
                self._expect_crlf(deadline)
            while True:  # trailer section
                line = self.read_line(deadline)
                if line in (b"\r\n", b"\n"):
                    return
                name, _, value = line.decode("latin-1").partition(":")
                body.trailers.append((name, value.strip()))
        except ClientError as e:
            if "EOF" in str(e):
                body.complete = False
                return
            raise

    def _expect_crlf(self, deadline):
        line = self.read_line(deadline)
        if line not in (b"\r\n", b"\n"):
            raise ClientError(f"chunk data not followed by CRLF: {line!r}")

    def request(self, method: str, target: str, headers=(), body: bytes | None = None,
                version: str = "HTTP/1.1", timeout: float | None = None) -> Response:
        self.send(build_request(method, target, headers, body, version))
        head = self.read_head(timeout)
        return Response(head, self.read_body(head, method, timeout))


def request(addr, method: str, target: str, headers=(), body: bytes | None = None,
            version: str = "HTTP/1.1", timeout: float = DEFAULT_TIMEOUT) -> Response:
    """One request on a fresh connection (closed afterwards)."""
    conn = connect(addr, timeout)
    try:
        return conn.request(method, target, headers, body, version, timeout)
    finally:
        conn.close()


def read_stream(conn: HttpConnection, head: ResponseHead, duration: float, method: str = "GET",
                until=None) -> Body:
    """Read an event-stream body for at most `duration` seconds, or until the
    response ends, or until `until(payload_so_far)` is true."""
    collected = bytearray()

    def on_piece(_t, data):
        collected.extend(data)
        return bool(until and until(bytes(collected)))

    return conn.read_body(head, method, timeout=duration, on_piece=on_piece, timeout_ok=True)


def iter_stream(conn: HttpConnection, head: ResponseHead, duration: float, method: str = "GET"):
    """Yield (time, bytes) pieces of the de-chunked payload as they arrive,
    for at most `duration` seconds. Stop early by breaking out of the loop
    and closing the connection."""
    import queue
    import threading
    pieces: "queue.Queue" = queue.Queue()
    done = object()

    def reader():
        try:
            conn.read_body(head, method, timeout=duration, timeout_ok=True,
                           on_piece=lambda t, d: pieces.put((t, d)) and False)
        except (ClientError, OSError):
            pass
        finally:
            pieces.put(done)

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + duration + 1.0
    while True:
        try:
            item = pieces.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            return
        if item is done:
            return
        yield item
