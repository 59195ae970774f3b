"""Runs the sse-keepalive binary as a black box.

`Proxy(config)` writes the config as YAML to a temp dir, starts
`sse-keepalive run --config FILE --log-level debug`, waits for the
`listening on HOST:PORT` log line, and captures stderr lines with their level
in a thread. `stop()` sends SIGTERM, then SIGKILL after a timeout.
"""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
LEVELS = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def binary_path() -> str:
    """SSE_KEEPALIVE_BIN, else .build/debug/sse-keepalive under the cwd (the
    repo root the tests run from), else under this checkout."""
    env = os.environ.get("SSE_KEEPALIVE_BIN")
    if env:
        return os.path.abspath(env)
    local = os.path.abspath(".build/debug/sse-keepalive")
    if os.path.exists(local):
        return local
    return os.path.join(REPO_ROOT, ".build", "debug", "sse-keepalive")


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to 0, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(20):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((host, 0))
            return s.getsockname()[1]
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
        finally:
            s.close()
    raise RuntimeError("no free port")


# --- YAML --------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z0-9_./-][A-Za-z0-9_./:-]*$")
_BARE_WORDS = {"off", "on", "auto", "true", "false"}


class Quoted(str):
    """A string the YAML emitter must double-quote (e.g. "off" vs off)."""


def _scalar(v) -> str:
    if isinstance(v, Quoted):
        return json.dumps(str(v))
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if s in _BARE_WORDS or (_PLAIN.match(s) and not s.endswith(":") and s.lower() not in
                            {"yes", "no", "null", "y", "n", "~"}):
        return s
    return json.dumps(s)  # a JSON string is a valid double-quoted YAML scalar


def to_yaml(value, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars (enough for our configs)."""
    pad = "  " * indent
    lines = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 1))
            elif isinstance(v, dict):
                lines.append(f"{pad}{k}: {{}}")
            elif isinstance(v, list):
                lines.append(f"{pad}{k}: []")
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 1).split("\n")
                lines.append(f"{pad}- {body[0].lstrip()}")
                lines.extend(body[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(value))
    return "\n".join(lines)


def base_config(upstream: str, listen_port: int | None = None, **overrides) -> dict:
    """A test config: fast heartbeats, short timeouts, debug logs, no admin."""
    cfg = {
        "listen": f"127.0.0.1:{listen_port or free_port()}",
        "upstream": upstream,
        "workers": 2,
        # No first comment at open: most tests here are about the interval itself
        # (test_stream_hops.py turns it on where it is the subject).
        "heartbeat": {"interval": "300ms", "on_open": False},
        "log": {"level": "debug"},
        "timeouts": {"connect": "1s", "response": "3s"},
        "shutdown": {"grace": "1s"},
        "admin": "off",
    }
    for k, v in overrides.items():
        if v is None:
            cfg.pop(k, None)
        elif isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


# --- process -----------------------------------------------------------------

@dataclass
class LogLine:
    time: float
    level: str | None
    text: str


def parse_level(line: str) -> str | None:
    first = line.split(" ", 1)[0].strip("[]:").lower()
    if first in LEVELS:
        return first
    try:  # log.format json
        obj = json.loads(line)
        lvl = str(obj.get("level", "")).lower()
        return lvl if lvl in LEVELS else None
    except (ValueError, AttributeError):
        return None


class ProxyStartError(AssertionError):
    pass


class Proxy:
    def __init__(self, config: dict | str, workdir: str | None = None, log_level: str | None = "debug",
                 wait_ready: bool = True, env: dict | None = None, extra_args: list[str] | None = None,
                 binary: str | None = None):
        self.workdir = workdir or tempfile.mkdtemp(prefix="ssek-proxy-")
        self.config_path = os.path.join(self.workdir, "sse-keepalive.yaml")
        text = config if isinstance(config, str) else to_yaml(config) + "\n"
        with open(self.config_path, "w") as f:
            f.write(text)
        self.config = config
        self.lines: list[LogLine] = []
        self.stdout = b""
        self._lock = threading.Lock()
        self.listen_addrs: list[tuple[str, int]] = []
        self.exit_code: int | None = None
        self.crashed_before_stop = False
        argv = [binary or binary_path(), "run", "--config", self.config_path]
        if log_level is not None:  # None: no --log-level, the file's log.level applies
            argv += ["--log-level", log_level]
        argv += extra_args or []
        self.proc = subprocess.Popen(argv, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     env=None if env is None else {**os.environ, **env},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._ready = threading.Event()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        if wait_ready:
            self.wait_ready()

    # -- logs --------------------------------------------------------------
    def _pump_stderr(self):
        for raw in iter(self.proc.stderr.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.lines.append(LogLine(time.monotonic(), parse_level(text), text))
            m = re.search(r"listening on \[?([0-9a-fA-F.:]+?)\]?:(\d+)", text)
            if m:
                self.listen_addrs.append((m.group(1), int(m.group(2))))
                self._ready.set()

    def _pump_stdout(self):
        self.stdout = self.proc.stdout.read()

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(l.text for l in self.lines)

    def lines_at_or_above(self, level: str) -> list[LogLine]:
        floor = LEVELS.index(level)
        with self._lock:
            return [l for l in self.lines if l.level and LEVELS.index(l.level) >= floor]

    def lines_at(self, level: str) -> list[LogLine]:
        with self._lock:
            return [l for l in self.lines if l.level == level]

    def wait_for_log(self, pattern: str, timeout: float = 3.0, level: str | None = None) -> LogLine | None:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            with self._lock:
                for l in self.lines:
                    if rx.search(l.text) and (level is None or l.level == level):
                        return l
            time.sleep(0.02)
        return None

    # -- lifecycle ---------------------------------------------------------
    def wait_ready(self, timeout: float = READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(0.05):
                return
            if self.proc.poll() is not None:
                time.sleep(0.1)  # let the pump finish reading stderr
                raise ProxyStartError(f"proxy exited with {self.proc.returncode} before listening:\n"
                                      f"{self.log_text()}")
        self.stop()
        raise ProxyStartError(f"no 'listening on' line within {timeout}s:\n{self.log_text()}")

    @property
    def addr(self) -> tuple[str, int]:
        """Where clients connect: the first listen address from the config."""
        listen = self.config["listen"] if isinstance(self.config, dict) else None
        if isinstance(listen, list):
            listen = listen[0]
        if listen:
            host, _, port = listen.rpartition(":")
            return host.strip("[]"), int(port)
        return self.listen_addrs[0]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        if self.proc.poll() is not None:
            self.crashed_before_stop = self.exit_code is None
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.exit_code = self.proc.returncode
        return self.exit_code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_cli(args: list[str], cwd: str | None = None, timeout: float = 10.0) -> subprocess.CompletedProcess:
    """Run the binary with `args` (no proxy startup), capturing output."""
    return subprocess.run([binary_path()] + args, cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, text=True)
