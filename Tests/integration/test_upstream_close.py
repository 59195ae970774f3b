"""How the proxy ends an upstream connection it drops (docs/behaviour.md, first
section): in the middle of a response (the client left) it resets it, so no
FIN exchange and no TIME_WAIT socket is left per stream; a connection whose
upstream already closed its side is closed normally.

A raw upstream socket in the test tells a reset (ECONNRESET on recv) from a clean
EOF (recv returns b"")."""
from __future__ import annotations

import socket
import threading

import pytest

from conftest import require_binary
from harness import client as http
from harness.proxy import Proxy, base_config
from harness.streams import SSE_ACCEPT

pytestmark = pytest.mark.proxy_only

SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
EVENT = b"data: one\n\n"


class OneShotUpstream:
    """Accepts one connection, answers the request with `answer`, then waits
    (bounded) for the proxy to end the connection and records how."""

    def __init__(self, answer: bytes, close_after_answer: bool = False):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(10)
        self.addr = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.answer, self.close_after_answer = answer, close_after_answer
        self.ended: str | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            self.done.set()
            return
        with conn:
            conn.settimeout(10)
            try:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(4096)
                    if not data:
                        break
                    buf += data
                conn.sendall(self.answer)
                if self.close_after_answer:
                    conn.shutdown(socket.SHUT_WR)
                data = conn.recv(4096)
                self.ended = "eof" if data == b"" else "bytes"
            except ConnectionResetError:
                self.ended = "reset"
            except OSError as e:
                self.ended = f"error {e}"
            finally:
                self.done.set()

    def close(self):
        self.listener.close()


def test_client_leaving_mid_stream_resets_the_upstream_connection():
    require_binary()
    upstream = OneShotUpstream(SSE_HEAD + b"%x\r\n%s\r\n" % (len(EVENT), EVENT))
    try:
        with Proxy(base_config(upstream.addr, workers=1)) as proxy:
            conn = http.connect(proxy.addr, timeout=5)
            conn.send(http.build_request("GET", "/events", [SSE_ACCEPT]))
            head = conn.read_head()
            assert head.status == 200
            assert b"data: one" in conn.read_available(0.3)
            conn.close()
            assert upstream.done.wait(5), "the proxy kept the upstream connection after the client left"
            assert upstream.ended == "reset", f"upstream connection ended by {upstream.ended}, not a reset"
    finally:
        upstream.close()


def test_upstream_that_closed_first_gets_a_normal_close():
    require_binary()
    # A close-delimited body: the response ends when the upstream closes its side.
    upstream = OneShotUpstream(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello", close_after_answer=True)
    try:
        with Proxy(base_config(upstream.addr, workers=1)) as proxy:
            conn = http.connect(proxy.addr, timeout=5)
            conn.send(http.build_request("GET", "/plain"))
            head = conn.read_head()
            assert head.status == 200
            assert upstream.done.wait(5), "the proxy kept the upstream connection after the response"
            assert upstream.ended == "eof", f"upstream connection ended by {upstream.ended}, not a clean close"
            conn.close()
    finally:
        upstream.close()
