"""Helpers for the hardening tests (issue 4): an innocent concurrent stream
that must keep its cadence, a raw-socket upstream for hostile scripts that the
step-based Upstream cannot express (floods with back-pressure accounting,
tunnels), process probes (fd count, RSS) and raw response splitting.

Every loop here is bounded in count and in time.
"""
from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from . import client as http
from . import upstream as up
from .streams import SSE_ACCEPT

# --- process probes ------------------------------------------------------------


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid: int) -> list[str]:
    out = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            pass
    return sorted(out)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def settle_fd_count(pid: int, target: int, margin: int, timeout: float = 4.0) -> int:
    """Poll the fd count until it is within `margin` of `target` (or time is up)."""
    deadline = time.monotonic() + timeout
    n = fd_count(pid)
    while time.monotonic() < deadline and n > target + margin:
        time.sleep(0.05)
        n = fd_count(pid)
    return n


def loud_lines(proxy, level: str = "warning") -> list[str]:
    return [l.text for l in proxy.lines_at_or_above(level)]


def wait_until(pred, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


# --- raw responses ---------------------------------------------------------------


def read_all(conn: http.HttpConnection, timeout: float) -> tuple[bytes, bool]:
    """Everything the peer sends until EOF or `timeout`: (bytes, saw_eof)."""
    deadline = time.monotonic() + timeout
    out = bytearray(conn.buf)
    conn.buf.clear()
    sock = conn.sock
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            return bytes(out), True
        if not data:
            return bytes(out), True
        out += data
    return bytes(out), False


def split_responses(data: bytes, method: str = "GET") -> tuple[list[http.Response], bytes]:
    """Parse consecutive responses out of `data` (all bytes already received).
    Returns the responses and whatever could not be parsed."""
    fake = _BytesConnection(data)
    out = []
    for _ in range(64):
        if not fake.buf:
            break
        try:
            head = fake.read_head(timeout=0.01)
            body = fake.read_body(head, method, timeout=0.01)
        except http.ClientError:
            break
        out.append(http.Response(head, body))
        if not body.complete:
            break
    return out, bytes(fake.buf)


class _BytesConnection(http.HttpConnection):
    def __init__(self, data: bytes):
        self.sock = None
        self.timeout = 0.01
        self.buf = bytearray(data)
        self.eof = False

    def _fill(self, deadline):
        self.eof = True
        return False


def raw_exchange(addr, data: bytes, timeout: float = 4.0, shut_wr: bool = False):
    """Send `data` on a fresh connection; read until the proxy closes (or
    `timeout`). Returns (responses, leftover bytes, all bytes, closed)."""
    conn = http.connect(addr, timeout=timeout)
    try:
        conn.send(data)
        if shut_wr:
            conn.sock.shutdown(socket.SHUT_WR)
        raw, closed = read_all(conn, timeout)
    finally:
        conn.close()
    responses, rest = split_responses(raw)
    return responses, rest, raw, closed


# --- the innocent stream -----------------------------------------------------------

INNOCENT_PATH = "/innocent"
INNOCENT_EVENT_GAP = 0.5


def innocent_payload(n: int) -> bytes:
    return b"".join(f"id: {k}\ndata: innocent {k}\n\n".encode() for k in range(n))


class Innocent:
    """An event stream on the same proxy as the test's victim. The upstream
    sends an event every 0.5 s (so, with the 300 ms heartbeat of base_config,
    the stream also gets heartbeats) and the client reads it in a thread.
    `check()` asserts it kept flowing: events in order and intact, heartbeats
    present, and no gap between writes longer than `max_gap`.

    `upstream` is the scripted harness Upstream behind the proxy's default
    route."""

    def __init__(self, addr, upstream: up.Upstream, path: str = INNOCENT_PATH, n_events: int = 60,
                 heartbeat_comment: str = "heartbeat"):
        self.addr, self.path = addr, path
        self.comment = heartbeat_comment
        self.payload = innocent_payload(n_events)
        pieces = [(INNOCENT_EVENT_GAP if k else 0.05, f"id: {k}\ndata: innocent {k}\n\n".encode())
                  for k in range(n_events)]
        upstream.route(path, up.event_stream(pieces, end="hang"))
        self.stop_flag = threading.Event()
        self.body: http.Body | None = None
        self.head: http.ResponseHead | None = None
        self.error: BaseException | None = None
        self.t_open = 0.0
        self.t_stop = 0.0
        self.live: list[tuple[float, int]] = []  # (arrival, size) of each piece so far
        self.conn = http.connect(addr, timeout=10)
        self.conn.send(http.build_request("GET", path, [SSE_ACCEPT]))
        self.thread = threading.Thread(target=self._run, daemon=True, name="innocent")
        self.thread.start()
        # Wait until the stream is really flowing (head and first event).
        wait_until(lambda: self.head is not None or self.error is not None, 5)

    def _run(self):
        try:
            self.head = self.conn.read_head(timeout=10)
            self.t_open = time.monotonic()
            self.body = http.Body()
            def on_piece(t, d):
                self.live.append((t, len(d)))
                return self.stop_flag.is_set()
            self.body = self.conn.read_body(self.head, timeout=120, timeout_ok=True, on_piece=on_piece)
        except BaseException as e:  # noqa: BLE001 - reported by check()
            self.error = e

    def assert_flowing(self, max_gap: float = 1.0):
        """Without stopping the reader: the stream is open, has been flowing
        with no gap longer than `max_gap`, and wrote something recently."""
        now = time.monotonic()
        assert self.error is None, f"innocent stream failed: {self.error!r}"
        assert self.head is not None and self.head.status == 200, "innocent stream did not open"
        assert self.thread.is_alive(), "innocent stream ended"
        times = [self.t_open] + [t for t, _ in list(self.live)] + [now]
        worst = max(b - a for a, b in zip(times, times[1:]))
        assert worst <= max_gap, (f"innocent stream stalled: {worst:.2f}s without a write "
                                  f"(heartbeat 0.3s, event every {INNOCENT_EVENT_GAP}s)")

    def stop(self) -> http.Body | None:
        self.t_stop = time.monotonic()
        self.stop_flag.set()
        self.thread.join(5)
        self.conn.close()
        return self.body

    def check(self, max_gap: float = 1.0, min_seconds: float = 0.0):
        """Stop the reader and assert the stream kept flowing. The stream runs
        for at least 0.8 s, so that it had time for a heartbeat."""
        if self.t_open:
            left = self.t_open + 0.8 - time.monotonic()
            if left > 0:
                time.sleep(left)
        body = self.stop()
        assert self.error is None, f"innocent stream failed: {self.error!r}"
        assert self.head is not None and self.head.status == 200, \
            f"innocent stream head: {self.head.raw if self.head else None!r}"
        assert body is not None and body.pieces, "innocent stream received nothing"
        data = body.data
        hb_line = b":" + self.comment.encode() + b"\n"
        stripped = data.replace(hb_line + b"\n", b"").replace(hb_line, b"")
        assert self.payload.startswith(stripped), \
            f"innocent stream payload corrupted: {data[:400]!r}"
        times = [self.t_open] + [t for t, _ in body.pieces] + [self.t_stop]
        worst = max(b - a for a, b in zip(times, times[1:]))
        assert worst <= max_gap, (f"innocent stream stalled: {worst:.2f}s without a write "
                                  f"(heartbeat 0.3s, event every {INNOCENT_EVENT_GAP}s)")
        assert hb_line in data, "innocent stream got no heartbeat"
        elapsed = self.t_stop - self.t_open
        events = stripped.count(b"\n\n")
        expected = int(elapsed / INNOCENT_EVENT_GAP) - 2
        assert events >= expected, f"innocent stream: {events} events in {elapsed:.1f}s, expected >= {expected}"
        assert elapsed >= min_seconds


# --- a raw upstream ------------------------------------------------------------------


@dataclass
class RawConnRecord:
    conn_id: int
    received: bytearray = field(default_factory=bytearray)
    head: bytes = b""
    sent: int = 0
    eof_at: float | None = None  # when the proxy's side ended (EOF/RST seen)
    send_failed_at: float | None = None
    closed: bool = False
    notes: list[str] = field(default_factory=list)


class RawConn:
    """The upstream side of one connection, for a handler to script."""

    def __init__(self, sock: socket.socket, record: RawConnRecord, server: "RawUpstream"):
        self.sock, self.rec, self.server = sock, record, server
        self.buf = bytearray()

    @property
    def stopping(self) -> bool:
        return self.server.stopping.is_set()

    def recv_some(self, timeout: float) -> bytes | None:
        """Bytes within `timeout` (b'' if none came), None on EOF/RST."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return b""
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            if self.rec.eof_at is None:
                self.rec.eof_at = time.monotonic()
            return None
        self.rec.received += data
        return data

    def read_head(self, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.stopping:
                raise TimeoutError("no request head")
            data = self.recv_some(min(left, 0.1))
            if data is None:
                raise EOFError("EOF before the request head")
            self.buf += data
        i = self.buf.index(b"\r\n\r\n") + 4
        head = bytes(self.buf[:i])
        del self.buf[:i]
        self.rec.head = head
        return head

    def read_until_eof(self, timeout: float) -> bytes:
        """Collect bytes until EOF or timeout (leftover buf included)."""
        out = bytearray(self.buf)
        self.buf.clear()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping:
            data = self.recv_some(min(0.05, max(0.0, deadline - time.monotonic())))
            if data is None:
                break
            out += data
        return bytes(out)

    def read_exactly(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n and time.monotonic() < deadline and not self.stopping:
            data = self.recv_some(min(0.05, max(0.0, deadline - time.monotonic())))
            if data is None:
                break
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            self.rec.sent += len(data)
            return True
        except OSError:
            self.rec.send_failed_at = self.rec.send_failed_at or time.monotonic()
            return False

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def reset(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
        self.rec.closed = True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.rec.closed = True


class RawUpstream:
    """`RawUpstream(handler)`: handler(RawConn) runs in a thread per
    connection; the socket is closed when it returns."""

    def __init__(self, handler, sndbuf: int | None = None, backlog: int = 64):
        self.handler = handler
        self.sndbuf = sndbuf
        self.stopping = threading.Event()
        self.records: list[RawConnRecord] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sndbuf:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(backlog)
        self.listener.settimeout(0.1)
        self.addr = self.listener.getsockname()
        self.config_addr = f"127.0.0.1:{self.addr[1]}"
        self.socks: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.accept_thread = threading.Thread(target=self._accept, daemon=True, name="raw-upstream")
        self.accept_thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.sndbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            with self.lock:
                rec = RawConnRecord(len(self.records) + 1)
                self.records.append(rec)
                self.socks.append(sock)
            t = threading.Thread(target=self._serve, args=(sock, rec), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, sock, rec):
        conn = RawConn(sock, rec, self)
        try:
            self.handler(conn)
        except Exception as e:  # noqa: BLE001 - surfaced through .errors
            self.errors.append(f"conn {rec.conn_id}: {e!r}")
        finally:
            conn.close()

    def wait_connections(self, n: int, timeout: float = 5.0) -> bool:
        return wait_until(lambda: len(self.records) >= n, timeout)

    def stop(self):
        self.stopping.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.accept_thread.join(2)
        for t in self.threads:
            t.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def blackhole_listener():
    """A loopback listener whose accept queue is full, so further SYNs are
    dropped and a connect() to it hangs (Linux, tcp_abort_on_overflow=0).
    Returns (listener, fillers, works): `works` says whether a probe connect
    really timed out, so a test can skip when the trick does not hold."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(listener.getsockname())
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.1)
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(listener.getsockname())
        works = False
    except (socket.timeout, OSError):
        works = True
    finally:
        probe.close()
    return listener, fillers, works


# --- a flooding event-stream upstream ------------------------------------------------

FLOOD_BLOCK = 64 * 1024


def flood_block(k: int) -> bytes:
    """Event number k of a flood: exactly FLOOD_BLOCK bytes, one SSE event."""
    lead = b"id: %d\ndata: %010d " % (k, k)
    return lead + b"x" * (FLOOD_BLOCK - len(lead) - 2) + b"\n\n"


class Flood:
    """State of one flooding upstream connection: an event stream (chunked,
    one 64 KiB event per chunk) of `total` payload bytes, written with
    non-blocking sends so that back-pressure shows up as a stalled `sent`
    counter (`progress` records (time, payload bytes sent))."""

    def __init__(self, total: int, time_limit: float = 40.0, content_type: str = "text/event-stream"):
        self.total = total
        self.content_type = content_type
        self.time_limit = time_limit
        self.go = threading.Event()
        self.sent = 0
        self.progress: list[tuple[float, int]] = []
        self.finished = False
        self.failed_at: float | None = None
        self.started_at: float | None = None

    def sent_at(self, t: float) -> int:
        best = 0
        for ts, n in list(self.progress):
            if ts <= t:
                best = n
        return best

    def handler(self, c: RawConn):
        c.read_head()
        c.send(up.head_bytes(200, [("Content-Type", self.content_type),
                                   ("Transfer-Encoding", "chunked")]))
        if not self.go.wait(15):
            return
        sock = c.sock
        sock.setblocking(False)
        self.started_at = time.monotonic()
        deadline = self.started_at + self.time_limit
        k = 0
        pending = memoryview(b"")
        while not c.stopping and time.monotonic() < deadline:
            if not pending:
                if self.sent >= self.total:
                    break
                pending = memoryview(up.chunk(flood_block(k)))
                k += 1
            _, w, _ = select.select([], [sock], [], 0.05)
            if not w:
                continue
            try:
                n = sock.send(pending)
            except BlockingIOError:
                continue
            except OSError:
                self.failed_at = time.monotonic()
                return
            pending = pending[n:]
            self.sent += n  # framing bytes included; close enough for accounting
            self.progress.append((time.monotonic(), self.sent))
        if self.sent >= self.total and not pending:
            try:
                sock.setblocking(True)
                sock.settimeout(5)
                sock.sendall(up.LAST_CHUNK)
                self.finished = True
            except OSError:
                self.failed_at = time.monotonic()
                return
        # Keep the connection until the proxy closes it (bounded).
        sock.setblocking(True)
        end = time.monotonic() + 5
        while time.monotonic() < end and not c.stopping:
            if c.recv_some(0.1) is None:
                break


def drain_chunked(conn: http.HttpConnection, on_data, timeout: float) -> bool:
    """De-chunk a response body without keeping it: on_data(bytes) per piece.
    True when the last chunk arrived, False on EOF inside the body; raises
    ClientError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        line = conn.read_line(deadline).rstrip(b"\r\n")
        size = int(line.split(b";", 1)[0], 16)
        if size == 0:
            conn.read_line(deadline)
            return True
        left = size
        while left:
            if not conn.buf and not conn._fill(deadline):
                return False
            piece = conn._take(min(left, len(conn.buf)))
            left -= len(piece)
            on_data(piece)
        if conn.read_line(deadline) not in (b"\r\n", b"\n"):
            raise http.ClientError("chunk not followed by CRLF")


class FloodVerifier:
    """Compares a de-chunked payload, piece by piece, with the flood's bytes."""

    def __init__(self):
        self.offset = 0
        self.mismatch: str | None = None

    def __call__(self, data: bytes):
        if self.mismatch:
            return
        pos = 0
        while pos < len(data):
            k, inner = divmod(self.offset, FLOOD_BLOCK)
            block = flood_block(k)
            n = min(len(data) - pos, FLOOD_BLOCK - inner)
            if data[pos:pos + n] != block[inner:inner + n]:
                self.mismatch = (f"payload differs at byte {self.offset}: got {data[pos:pos + 40]!r}, "
                                 f"expected {block[inner:inner + 40]!r}")
                return
            pos += n
            self.offset += n


# --- a stack for one test ---------------------------------------------------------------


def hard_stack(start_proxy, upstream: up.Upstream, routes=(), innocent: bool = True, **overrides):
    """A proxy with workers: 1 in front of `upstream` (extra `routes` may
    point elsewhere), plus an innocent stream on it. Overrides as for
    base_config."""
    from types import SimpleNamespace

    from .proxy import base_config
    overrides.setdefault("workers", 1)
    cfg = base_config(upstream.config_addr, **overrides)
    if routes:
        cfg["routes"] = list(routes)
    p = start_proxy(cfg)
    inn = Innocent(p.addr, upstream) if innocent else None
    return SimpleNamespace(proxy=p, up=upstream, innocent=inn, addr=p.addr)


def small_rcvbuf_connect(addr, rcvbuf: int = 65536, timeout: float = 10.0) -> http.HttpConnection:
    """A client socket with a small receive buffer (set before connect, so the
    window stays small), to make a stalled reader stall quickly."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(timeout)
    s.connect(addr)
    return http.HttpConnection(s, timeout)
