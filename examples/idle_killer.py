#!/usr/bin/env python3
"""A TCP proxy that cuts connections idle for N seconds, like a load balancer.

Cloud load balancers, corporate proxies and nginx (proxy_read_timeout) close
a connection on which no byte has moved for a while. An event stream whose
backend is quiet for longer than that dies, and the browser reconnects (and
misses whatever was sent meanwhile). This script is that front, in a few lines,
so the effect can be seen on a laptop:

    python3 examples/legacy_app.py --port 3000                        # events every 40 s, no heartbeats
    sse-keepalive --config examples/sse-keepalive.yaml                # :8080, heartbeats every 5-10 s
    python3 examples/idle_killer.py --listen 127.0.0.1:8001 --upstream 127.0.0.1:3000 --idle 15 &
    python3 examples/idle_killer.py --listen 127.0.0.1:8000 --upstream 127.0.0.1:8080 --idle 15 &

    curl -N 'http://127.0.0.1:8001/events?token=demo-token'   # app directly: cut after 15 s
    curl -N 'http://127.0.0.1:8000/events?token=demo-token'   # through sse-keepalive: stays open

"Idle" means no byte in either direction. A cut is a plain close of both
sockets (what most load balancers do), logged on stderr. Standard library only.
"""
import argparse
import select
import signal
import socket
import sys
import threading
import time


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def log(msg):
    sys.stderr.write(time.strftime("%H:%M:%S ") + "idle-killer: " + msg + "\n")
    sys.stderr.flush()


def pipe(n, client, upstream_addr, idle, stopping):
    try:
        upstream = socket.create_connection(upstream_addr, timeout=5)
    except OSError as e:
        log(f"conn {n}: cannot reach {upstream_addr[0]}:{upstream_addr[1]}: {e}")
        client.close()
        return
    for s in (client, upstream):
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    peer = {client: upstream, upstream: client}
    opened = last = time.monotonic()
    why = "closed"
    try:
        while not stopping.is_set():
            left = last + idle - time.monotonic()
            if left <= 0:
                why = f"cut after {idle:g}s idle"
                break
            readable, _, _ = select.select([client, upstream], [], [], min(left, 0.5))
            done = False
            for s in readable:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    done = True
                    why = "client closed" if s is client else "upstream closed"
                    break
                peer[s].setblocking(True)
                peer[s].sendall(data)
                peer[s].setblocking(False)
                last = time.monotonic()
            if done:
                break
    except OSError as e:
        why = f"socket error: {e}"
    finally:
        for s in (client, upstream):
            try:
                s.close()
            except OSError:
                pass
    log(f"conn {n}: {why} ({time.monotonic() - opened:.1f}s open)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8000", help="host:port to accept on")
    parser.add_argument("--upstream", default="127.0.0.1:8080", help="host:port to forward to")
    parser.add_argument("--idle", type=float, default=15.0, help="seconds without a byte before the cut")
    args = parser.parse_args()
    listen, upstream = parse_addr(args.listen), parse_addr(args.upstream)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    server = socket.socket(socket.AF_INET6 if ":" in listen[0] else socket.AF_INET)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(listen)
    server.listen(128)
    server.settimeout(0.5)
    log(f"listening on {listen[0]}:{listen[1]} -> {upstream[0]}:{upstream[1]}, idle timeout {args.idle:g}s")
    n = 0
    try:
        while not stopping.is_set():
            try:
                client, _ = server.accept()
            except socket.timeout:
                continue
            n += 1
            threading.Thread(target=pipe, args=(n, client, upstream, args.idle, stopping), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        server.close()


if __name__ == "__main__":
    main()
