"""Many event-stream clients read by one selector loop (for shared streams).

`Fanout(addr, target, n)` opens n connections and sends each a GET; `pump`
reads whatever arrived until a deadline or a condition; each client's
response head and de-chunked body are decoded as bytes come in, so tests can
wait for "every client has X" cheaply. Every wait is bounded by a deadline.
"""
from __future__ import annotations

import selectors
import socket
import time

from . import sse


class StreamClient:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.raw = bytearray()
        self.head: bytes | None = None
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()  # de-chunked payload so far
        self.chunked = False
        self.complete = False  # last chunk seen (chunked), or EOF (close-delimited)
        self.eof_at: float | None = None
        self.joined_at: float | None = None  # when the head arrived
        self._pending = bytearray()  # undecoded bytes after the head
        self._chunk_left = 0  # payload bytes left in the current chunk (+2 for its CRLF)

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def feed(self, data: bytes):
        self.raw += data
        if self.head is None:
            self._pending += data
            end = self._pending.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head = bytes(self._pending[:end + 4])
            lines = self.head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split(" ")[1])
            for line in lines[1:]:
                if line:
                    k, _, v = line.partition(":")
                    self.headers.append((k.strip(), v.strip()))
            te = (self.get("transfer-encoding") or "").lower()
            self.chunked = "chunked" in te
            self.joined_at = time.monotonic()
            data = bytes(self._pending[end + 4:])
            self._pending = bytearray()
        if not self.chunked:
            self.body += data
            return
        self._pending += data
        while self._pending and not self.complete:
            if self._chunk_left > 0:
                take = min(self._chunk_left, len(self._pending))
                part = bytes(self._pending[:take])
                del self._pending[:take]
                before = self._chunk_left
                self._chunk_left -= take
                # The last 2 bytes of every chunk are its CRLF, not payload.
                payload_end = max(0, min(take, before - 2))
                self.body += part[:payload_end]
                continue
            nl = self._pending.find(b"\r\n")
            if nl < 0:
                return
            size = int(bytes(self._pending[:nl]).split(b";")[0], 16)
            del self._pending[:nl + 2]
            if size == 0:
                self.complete = True
                return
            self._chunk_left = size + 2

    def on_eof(self):
        self.eof_at = time.monotonic()
        if self.head is not None and not self.chunked:
            self.complete = True  # close-delimited: EOF is the end

    def events(self) -> list[sse.Event]:
        return sse.parse(bytes(self.body)).events

    def payload(self, comment: str = "heartbeat") -> bytes:
        """The body with the proxy's heartbeats removed."""
        return sse.strip_heartbeats(bytes(self.body), comment)


def request_bytes(target: str, headers=()) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: t", "Accept: text/event-stream"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Fanout:
    def __init__(self, addr, target: str = "", n: int = 0, headers=(), rcvbuf: int | None = None):
        self.addr = addr
        self.sel = selectors.DefaultSelector()
        self.clients: list[StreamClient] = []
        self.add(target, n, headers, rcvbuf)

    def add(self, target: str, n: int, headers=(), rcvbuf: int | None = None, read: bool = True) -> list[StreamClient]:
        """Open n more clients. read=False: never read them (stalled clients)."""
        added = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.settimeout(5)
            s.connect(self.addr)
            s.sendall(request_bytes(target, headers))
            s.setblocking(False)
            c = StreamClient(s)
            self.clients.append(c)
            if read:
                self.sel.register(s, selectors.EVENT_READ, c)
            added.append(c)
        return added

    def pump(self, until: float, done=None, every: float = 0.05) -> bool:
        """Read until `done()` is true (returns True) or the deadline (False)."""
        next_check = 0.0
        while True:
            now = time.monotonic()
            if done is not None and now >= next_check:
                if done():
                    return True
                next_check = now + every
            if now >= until:
                return done() if done is not None else False
            if not self.sel.get_map():
                time.sleep(min(0.05, max(0.0, until - now)))
                continue
            for key, _ in self.sel.select(timeout=min(0.05, max(0.0, until - now))):
                c = key.data
                try:
                    data = c.sock.recv(1 << 16)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    c.feed(data)
                else:
                    c.on_eof()
                    self.sel.unregister(c.sock)

    def wait(self, predicate, timeout: float, clients=None) -> bool:
        """Pump until predicate(c) holds for every client (of `clients`)."""
        group = self.clients if clients is None else clients
        return self.pump(time.monotonic() + timeout, lambda: all(predicate(c) for c in group))

    def close(self, clients=None):
        for c in list(self.clients if clients is None else clients):
            if c.sock.fileno() >= 0:
                try:
                    self.sel.unregister(c.sock)
                except (KeyError, ValueError):
                    pass
                c.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
