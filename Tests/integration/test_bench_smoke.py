"""The benchmark runs: `scripts/bench --smoke` (direct + sse-keepalive, tiny
counts, a few seconds) completes and writes the JSON with every scenario's
figures. Never asserts on timing: only that the figures are there and sane.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import proxy as proxy_mod  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.proxy_only
@pytest.mark.timeout(180)  # ~15 s when sse-bench is built; more if the test has to build it
def test_bench_smoke_writes_all_figures(tmp_path):
    binary = proxy_mod.binary_path()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"sse-keepalive binary not found at {binary}", pytrace=False)
    out = tmp_path / "smoke.json"
    env = dict(os.environ, SSE_KEEPALIVE_BIN=binary)
    bench_bin = os.path.join(REPO, ".build", "debug", "sse-bench")
    argv = [os.path.join(REPO, "scripts", "bench"), "--smoke", "--build", "debug", "--out", str(out)]
    if os.access(bench_bin, os.X_OK):
        env["SSE_BENCH_BIN"] = bench_bin
    run = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=170)
    assert run.returncode == 0, f"scripts/bench --smoke failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"

    results = json.loads(out.read_text())
    assert results["failures"] == []
    assert results["meta"]["mode"] == "smoke"
    assert set(results["peers"]) == {"direct", "sse-keepalive"}

    ssk = results["peers"]["sse-keepalive"]
    idle = ssk["idle"]
    assert idle["streams"] == results["meta"]["params"]["idle_streams"]
    assert idle["failed"] == 0 and idle["closed_early"] == 0
    assert {"kib_per_stream", "pss_anon_rest_kib", "pss_anon_loaded_kib", "kib_per_stream_total_pss",
            "heartbeats_per_stream"} <= set(idle)
    assert idle["upstreams_left_open_after_clients_left"] == 0

    for name in ("direct", "sse-keepalive"):
        peer = results["peers"][name]
        assert peer["flood"]["mb_per_s"] > 0
        assert peer["latency"]["rounds"] and all(r["events"] > 0 for r in peer["latency"]["rounds"])
        assert {"p50_us", "p99_us", "added_p50_us", "added_p99_us"} <= set(peer["latency"])
        assert peer["churn"]["conn_per_s"] > 0
        assert all(r["failed"] == 0 for r in peer["churn"]["rounds"])
        # Event-stream churn: every stream got its first event through the peer.
        sse = peer["sse_churn"]
        assert sse["streams_per_s"] > 0 and sse["rounds"]
        assert all(r["failed"] == 0 and r["streams"] > 0 for r in sse["rounds"])
    assert ssk["flood"]["cpu_s_per_gib"] is not None
    assert ssk["churn"]["cpu_s_per_1000"] is not None
    assert ssk["sse_churn"]["cpu_s_per_1000"] is not None
    assert "p999_us" in ssk["latency"]

    hb = results["heartbeat_cost"]
    assert hb["heartbeats"] > 0 and hb["min_heartbeats_per_stream"] >= 1
    assert {"cpu_s_per_1000_heartbeats", "percent_of_one_core"} <= set(hb)
    assert "table" in results and any("memory per idle stream" in line for line in results["table"])
    # The table goes to stdout too.
    assert "memory per idle stream" in run.stdout
    assert "sse churn streams/s" in run.stdout

    # One stream, many clients: one upstream connection with `share`, one per client without.
    shared = results["shared"]["runs"]
    n = results["meta"]["params"]["shared_streams"]
    assert set(shared) == {"sse-keepalive shared", "sse-keepalive"}
    assert shared["sse-keepalive shared"]["upstream_connections"] == 1
    assert shared["sse-keepalive shared"]["upstream_requests"] == 1
    assert shared["sse-keepalive"]["upstream_connections"] == n
    for r in shared.values():
        assert r["clients"] == n and r["failed"] == 0 and r["delivered_gib"] > 0 and r["cpu_s_per_gib"] is not None
    assert "shared stream:" in run.stdout
