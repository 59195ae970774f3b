"""Helpers for the `sse-keepalive probe` tests: running the probe, reading
its --json report, and real intermediaries from Debian (nginx, HAProxy)
started per test from generated configs under a temp prefix, loopback only."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import proxy as proxy_mod

PROBE_TIMEOUT = 20.0  # hard cap on one probe run (its --duration is far shorter)


# --- running the probe --------------------------------------------------------

def run_probe(url: str, *args: str, timeout: float = PROBE_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([proxy_mod.binary_path(), "probe", url, *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def probe_json(url: str, duration: str, *args: str) -> tuple[int, dict]:
    p = run_probe(url, "--duration", duration, "--json", "--quiet", *args)
    assert p.stdout.count("\n") == 1, f"--json prints one line; got:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p.returncode, json.loads(p.stdout)


def codes(report: dict, severity: str | None = None) -> list[str]:
    return [f["code"] for f in report["findings"] if severity is None or f["severity"] == severity]


def finding(report: dict, code: str) -> dict:
    found = [f for f in report["findings"] if f["code"] == code]
    assert found, f"no {code} finding in {report['findings']}"
    return found[0]


def message(report: dict, code: str) -> str:
    return finding(report, code)["message"]


def url_of(addr, path: str, scheme: str = "http") -> str:
    host, port = addr
    return f"{scheme}://{host}:{port}{path}"


# --- nginx --------------------------------------------------------------------

NGINX_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
{user}
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    server {{
        listen 127.0.0.1:{port}{listen_extra};
{server_directives}
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version {http_version};
            proxy_set_header Connection "";
{directives}
        }}
    }}
}}
"""


def _wait_listening(proc: subprocess.Popen, port: int, what: str, log) -> None:
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{proc.stderr.read().decode()}\n{log()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"{what} not listening within 5 s:\n{log()}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Nginx:
    """nginx in the foreground with a generated config, on a loopback port.
    `directives` go into the proxying location, `server_directives` into the
    server block, `listen_extra` after the listen address (e.g. " ssl");
    `http_version` is nginx's HTTP version to the upstream (1.0: the
    upstream answers close-delimited, which nginx buffers)."""

    def __init__(self, binary: str, upstream: str, directives: list[str], server_directives=(), listen_extra: str = "",
                 http_version: str = "1.1"):
        self.prefix = tempfile.mkdtemp(prefix="ssek-nginx-")
        self.port = proxy_mod.free_port()
        conf = NGINX_CONF.format(
            prefix=self.prefix, port=self.port, upstream=upstream, listen_extra=listen_extra, http_version=http_version,
            user="user root;" if os.geteuid() == 0 else "",
            server_directives="\n".join(f"        {d};" for d in server_directives),
            directives="\n".join(f"            {d};" for d in directives))
        self.conf_path = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        self.error_log = os.path.join(self.prefix, "error.log")
        self.proc = subprocess.Popen([binary, "-p", self.prefix + "/", "-c", self.conf_path, "-e", self.error_log,
                                      "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_listening(self.proc, self.port, "nginx", self.log)
        except AssertionError:
            self.stop()
            raise

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def log(self) -> str:
        try:
            with open(self.error_log) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        _stop(self.proc)
        shutil.rmtree(self.prefix, ignore_errors=True)


HAPROXY_CONF = """\
global
    maxconn 64
defaults
    mode http
    timeout connect 2s
    timeout client 30s
{timeouts}
frontend probe_test
    bind 127.0.0.1:{port}
    default_backend origin
backend origin
    server origin {upstream}
"""


class HAProxy:
    """HAProxy in the foreground (-db) with a generated config on a loopback port."""

    def __init__(self, binary: str, upstream: str, timeouts: list[str]):
        self.prefix = tempfile.mkdtemp(prefix="ssek-haproxy-")
        self.port = proxy_mod.free_port()
        self.conf_path = os.path.join(self.prefix, "haproxy.cfg")
        with open(self.conf_path, "w") as f:
            f.write(HAPROXY_CONF.format(port=self.port, upstream=upstream,
                                        timeouts="\n".join(f"    {t}" for t in timeouts)))
        self.proc = subprocess.Popen([binary, "-db", "-f", self.conf_path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_listening(self.proc, self.port, "haproxy", lambda: "")
        except AssertionError:
            self.stop()
            raise

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def stop(self):
        _stop(self.proc)
        shutil.rmtree(self.prefix, ignore_errors=True)
