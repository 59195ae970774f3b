"""Fixtures for the black-box suite.

ITEST_MODE=proxy (default): clients talk to the sse-keepalive binary
(SSE_KEEPALIVE_BIN, default .build/debug/sse-keepalive), which talks to the
scripted upstream. ITEST_MODE=direct: clients talk to the upstream itself;
tests marked `proxy_only` are skipped. Direct mode validates the harness and
the transparency tests without the binary.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import proxy as proxy_mod  # noqa: E402
from harness.upstream import Upstream  # noqa: E402

MODE = os.environ.get("ITEST_MODE", "proxy")
DEFAULT_TEST_TIMEOUT = 30.0


def pytest_configure(config):
    config.addinivalue_line("markers", "proxy_only: needs the sse-keepalive binary (skipped in direct mode)")
    config.addinivalue_line("markers", "timeout(seconds): per-test time limit (default 30 s)")
    config.addinivalue_line("markers", "slow: takes several seconds (property test)")


def pytest_report_header(config):
    return f"sse-keepalive itest mode={MODE} binary={proxy_mod.binary_path()}"


def pytest_collection_modifyitems(config, items):
    if MODE != "direct":
        return
    skip = pytest.mark.skip(reason="ITEST_MODE=direct: needs the proxy")
    for item in items:
        if "proxy_only" in item.keywords:
            item.add_marker(skip)


class HarnessTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Guard: a SIGALRM after the test's limit turns a hang into a failure.
    Covers setup, call and teardown."""
    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker else DEFAULT_TEST_TIMEOUT

    def on_alarm(signum, frame):
        raise HarnessTimeout(f"{item.nodeid} exceeded {limit}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def require_binary():
    path = proxy_mod.binary_path()
    if not os.access(path, os.X_OK):
        pytest.fail(f"sse-keepalive binary not found at {path}: set SSE_KEEPALIVE_BIN, "
                    "or run with ITEST_MODE=direct to test the harness only", pytrace=False)
    return path


@pytest.fixture
def upstream():
    with Upstream() as up:
        yield up


class Stack:
    """A client-facing address plus the upstream (and proxy) behind it."""

    def __init__(self, upstream: Upstream, proxy: proxy_mod.Proxy | None):
        self.upstream = upstream
        self.proxy = proxy

    @property
    def addr(self):
        return self.proxy.addr if self.proxy else self.upstream.addr


@pytest.fixture
def start_proxy():
    """Factory: start_proxy(config) -> Proxy; stopped at teardown, and a
    proxy that died during the test fails it."""
    started: list[proxy_mod.Proxy] = []

    def start(config, **kwargs) -> proxy_mod.Proxy:
        require_binary()
        p = proxy_mod.Proxy(config, **kwargs)
        started.append(p)
        return p

    yield start
    dead = [p for p in started if not p.alive()]
    for p in started:
        p.stop()
    if dead:
        p = dead[0]
        pytest.fail(f"proxy exited during the test (status {p.proc.returncode}); log:\n{p.log_text()[-4000:]}")


@pytest.fixture
def stack(upstream, start_proxy):
    """Factory: stack(**config_overrides) -> Stack. In direct mode the proxy
    is skipped and clients talk to the upstream."""

    def make(**overrides) -> Stack:
        if MODE == "direct":
            return Stack(upstream, None)
        cfg = proxy_mod.base_config(upstream.config_addr, **overrides)
        return Stack(upstream, start_proxy(cfg))

    return make


@pytest.fixture
def short_tmp():
    """A short directory path (unix socket paths are limited to ~107 bytes)."""
    d = tempfile.mkdtemp(prefix="ssek-")
    yield d
    for name in os.listdir(d):
        try:
            os.unlink(os.path.join(d, name))
        except OSError:
            pass
    os.rmdir(d)
