"""Helpers for operations tests: the admin endpoint (Prometheus text parser,
/healthz), SIGHUP reloads with a rewritten config file, connection probes,
file-descriptor counts and access-log lines.

Every wait here is bounded by a deadline.
"""
from __future__ import annotations

import errno
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field

from . import client as http
from .proxy import Proxy, to_yaml


# --- waiting -------------------------------------------------------------------

def wait_until(predicate, timeout: float = 3.0, interval: float = 0.02):
    """Poll `predicate()` until it returns something truthy (returned) or
    `timeout` passes (the last falsy value is returned)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


# --- connection probes ---------------------------------------------------------

def refuses(addr, timeout: float = 1.0) -> bool:
    """True if a TCP connect to `addr` is refused (nothing listens there)."""
    with socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET) as s:
        s.settimeout(timeout)
        code = s.connect_ex(addr)
    return code == errno.ECONNREFUSED


def accepts_request(addr, target: str = "/probe", timeout: float = 2.0) -> bool:
    """True if a GET on a fresh connection gets any HTTP response."""
    try:
        http.request(addr, "GET", target, timeout=timeout)
        return True
    except (OSError, AssertionError):
        return False


def wait_port(addr, timeout: float = 10.0) -> bool:
    """For a proxy started without waiting for `listening on` (e.g. with a
    log level that hides it): True once `addr` accepts a TCP connection."""
    def up():
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(addr) == 0
    return bool(wait_until(up, timeout, 0.05))


# --- config reloads ------------------------------------------------------------

RELOADED = r"configuration reloaded"


def write_config(proxy: Proxy, config: dict | str):
    """Replace the file the proxy was started with (atomically, by rename)."""
    text = config if isinstance(config, str) else to_yaml(config) + "\n"
    tmp = proxy.config_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, proxy.config_path)
    return text


def count_lines(proxy: Proxy, pattern: str) -> int:
    rx = re.compile(pattern)
    with proxy._lock:
        return sum(1 for l in proxy.lines if rx.search(l.text))


def wait_new_line(proxy: Proxy, pattern: str, before: int, timeout: float = 3.0):
    """The first line matching `pattern` beyond the `before` that existed."""
    rx = re.compile(pattern)

    def found():
        with proxy._lock:
            hits = [l for l in proxy.lines if rx.search(l.text)]
        return hits[before] if len(hits) > before else None
    return wait_until(found, timeout)


def sighup(proxy: Proxy, config: dict | str | None = None, expect: str = RELOADED,
           timeout: float = 3.0):
    """Write `config` (if given), send SIGHUP and wait for a new log line
    matching `expect`. Returns that LogLine (None if it never came)."""
    if config is not None:
        write_config(proxy, config)
    before = count_lines(proxy, expect)
    proxy.proc.send_signal(signal.SIGHUP)
    return wait_new_line(proxy, expect, before, timeout)


# --- admin endpoint ------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


@dataclass
class Sample:
    name: str
    labels: dict
    value: float


@dataclass
class Metrics:
    text: str
    help: dict = field(default_factory=dict)  # family -> help text
    type: dict = field(default_factory=dict)  # family -> counter | gauge | ...
    samples: list = field(default_factory=list)

    def find(self, name: str, **labels) -> list[Sample]:
        return [s for s in self.samples if s.name == name and
                all(s.labels.get(k) == str(v) for k, v in labels.items())]

    def value(self, name: str, **labels) -> float | None:
        """The value of the one sample with exactly these labels (None if absent)."""
        hits = [s for s in self.find(name, **labels) if set(s.labels) == set(labels)]
        assert len(hits) <= 1, f"duplicate series {name}{labels}: {hits}"
        return hits[0].value if hits else None

    def get(self, name: str, default: float = 0.0, **labels) -> float:
        v = self.value(name, **labels)
        return default if v is None else v

    def total(self, name: str, **labels) -> float:
        """Sum over every series of `name` matching the given labels."""
        return sum(s.value for s in self.find(name, **labels))

    def label_values(self) -> list[str]:
        return [v for s in self.samples for v in s.labels.values()]


def _unescape_label(v: str) -> str:
    return re.sub(r'\\(.)', lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def parse_metrics(text: str) -> Metrics:
    """Parse Prometheus text exposition format 0.0.4 strictly enough that a
    malformed line fails the test: `# HELP`/`# TYPE` lines (TYPE before the
    family's samples, at most once), `name{l="v",...} value` samples."""
    m = Metrics(text)
    assert text.endswith("\n"), "exposition text must end with a newline"
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "HELP":
                m.help[parts[2]] = parts[3] if len(parts) > 3 else ""
            elif len(parts) >= 4 and parts[1] == "TYPE":
                assert parts[2] not in m.type, f"line {n}: second TYPE for {parts[2]}"
                assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), line
                assert not any(s.name == parts[2] for s in m.samples), f"line {n}: TYPE after samples"
                m.type[parts[2]] = parts[3]
            continue
        sm = _SAMPLE.match(line)
        assert sm, f"line {n}: not a sample: {line!r}"
        labels = {}
        body = sm.group(3) or ""
        pos = 0
        while pos < len(body):
            lm = _LABEL.match(body, pos)
            assert lm and lm.end() > pos, f"line {n}: bad labels {body!r}"
            assert lm.group(1) not in labels, f"line {n}: label {lm.group(1)} twice"
            labels[lm.group(1)] = _unescape_label(lm.group(2))
            pos = lm.end()
        value = float(sm.group(4))  # raises on junk
        m.samples.append(Sample(sm.group(1), labels, value))
    return m


def scrape(admin_addr, timeout: float = 3.0) -> Metrics:
    resp = http.request(admin_addr, "GET", "/metrics", timeout=timeout)
    assert resp.status == 200, resp.head.raw
    assert resp.head.get("content-type", "").startswith("text/plain"), resp.head.raw
    return parse_metrics(resp.body.data.decode("utf-8"))


def wait_admin(proxy: Proxy, timeout: float = 3.0):
    """The admin listener opens after the proxy's own `listening on` line:
    wait for its `admin endpoint on` line before talking to it."""
    line = proxy.wait_for_log(r"admin endpoint on", timeout=timeout)
    assert line, f"no 'admin endpoint on' line:\n{proxy.log_text()[-2000:]}"
    return line


def healthz(admin_addr, timeout: float = 1.0):
    """(status, body text), or None if the admin endpoint does not answer."""
    try:
        resp = http.request(admin_addr, "GET", "/healthz", timeout=timeout)
    except (OSError, AssertionError):
        return None
    return resp.status, resp.body.data.decode("utf-8", "replace")


class HealthPoller:
    """Polls /healthz every `interval` in a thread until stopped (or `limit`
    seconds), recording (time, status or None)."""

    def __init__(self, admin_addr, interval: float = 0.05, limit: float = 15.0):
        self.addr, self.interval, self.limit = admin_addr, interval, limit
        self.results: list[tuple[float, tuple | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.results.append((time.monotonic(), healthz(self.addr, timeout=0.5)))
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(2)
        return self.results


# --- process resources ---------------------------------------------------------

def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- access log ----------------------------------------------------------------

ACCESS_TEXT = re.compile(
    r'access (?P<client>\S+) "(?P<method>\S+) (?P<target>[^"]*)" (?P<status>\d+) (?P<bytes>\d+)B '
    r'(?P<ms>\d+)ms route=(?P<route>\S+) heartbeats=(?P<heartbeats>\d+) '
    r'end=(?P<end>complete|client_closed|upstream_closed|error|timeout)$')


def access_entries(proxy: Proxy) -> list[dict]:
    """Parsed text-format access lines (each with its LogLine as `line`)."""
    out = []
    with proxy._lock:
        lines = list(proxy.lines)
    for l in lines:
        m = ACCESS_TEXT.search(l.text)
        if m and l.text.split(" ", 2)[2].startswith("access "):
            d = m.groupdict()
            for k in ("status", "bytes", "ms", "heartbeats"):
                d[k] = int(d[k])
            d["line"] = l
            out.append(d)
    return out


def wait_access(proxy: Proxy, target: str, timeout: float = 3.0) -> dict | None:
    """The access entry for exactly this (logged, redacted) target."""
    def find():
        hits = [e for e in access_entries(proxy) if e["target"] == target]
        return hits[0] if hits else None
    return wait_until(find, timeout)


class StreamRecorder:
    """Reads one open event stream in a thread for at most `limit` seconds
    (or to its end), keeping timestamped pieces. `stop()` closes the socket
    (which also ends the read)."""

    def __init__(self, conn: http.HttpConnection, head: http.ResponseHead, limit: float):
        self.conn, self.head = conn, head
        self.body: http.Body | None = None
        self.error: str | None = None
        self.ended_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(limit,), daemon=True)
        self._thread.start()
        self.pieces_live: list[tuple[float, bytes]] = []

    def _run(self, limit):
        def on_piece(t, data):
            self.pieces_live.append((t, data))
            return False
        try:
            self.body = self.conn.read_body(self.head, timeout=limit, on_piece=on_piece, timeout_ok=True)
        except Exception as e:  # reported by the test
            self.error = repr(e)
        self.ended_at = time.monotonic()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def running(self) -> bool:
        return self._thread.is_alive()

    def data(self) -> bytes:
        return b"".join(p for _, p in list(self.pieces_live))

    def stop(self):
        self.conn.close()
        self._thread.join(3)
