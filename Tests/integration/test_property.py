"""Property test (docs/behaviour.md, "Event streams", "Heartbeats"): random event streams, sent by the upstream
in random read sizes with random idle gaps, reach the client as the exact
upstream bytes plus heartbeats at safe points only.

Seeded: ITEST_SEED=<n> replays a run; the seed is printed on failure.
Bounded: at most MAX_CASES cases and BUDGET seconds, 3 streams at a time.
"""
import os
import random
import threading
import time

import pytest

from conftest import MODE
from harness import sse
from harness import upstream as up
from harness.streams import fetch_stream

I = 0.2  # heartbeat interval of this test's proxy
LONG = (1.6 * I, 2.2 * I)  # an idle gap that must produce a heartbeat at a safe point
SHORT = (0.0, 0.03)  # a gap far below the interval
MAX_CASES, BUDGET, PARALLEL = 80, 25.0, 3

WORDS = ["a", "hello", "x y", "é", "αβγ", "€", "😀", "colon:inside", " lead", "tab\tx", "0"]
ENDINGS = [b"\n", b"\r\n", b"\r"]


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(WORDS) for _ in range(rng.randint(0, 4)))


def random_line(rng: random.Random) -> bytes:
    kind = rng.choices(["data", "data-nospace", "event", "id", "retry", "comment", "bare", "unknown", "blank"],
                       [6, 2, 1, 1, 1, 1, 1, 1, 4])[0]
    text = random_text(rng)
    line = {
        "data": f"data: {text}", "data-nospace": f"data:{text}", "event": f"event: {text or 'ev'}",
        "id": f"id: {text}", "retry": f"retry: {rng.randint(0, 5000)}",
        "comment": f":c {text}",  # never equal to the heartbeat comment
        "bare": "data", "unknown": f"foo: {text}", "blank": "",
    }[kind]
    return line.encode("utf-8")


def random_payload(rng: random.Random) -> bytes:
    out = bytearray(sse.BOM if rng.random() < 0.3 else b"")
    for _ in range(rng.randint(3, 25)):
        out += random_line(rng) + rng.choice(ENDINGS)
    if rng.random() < 0.2:
        out += random_line(rng)  # an unterminated last line
    return bytes(out)


def random_pieces(rng: random.Random, payload: bytes):
    """(gap before, bytes) pieces; a few long gaps, never inside or right after a BOM."""
    pieces, pos, longs = [], 0, 0
    while pos < len(payload):
        size = rng.randint(1, 40)
        no_long = payload.startswith(sse.BOM) and 0 < pos <= 3
        if not no_long and longs < 3 and rng.random() < (0.4 if pos == 0 else 0.12):
            gap, longs = rng.uniform(*LONG), longs + 1
        else:
            gap = rng.uniform(*SHORT)
        pieces.append((gap, payload[pos:pos + size]))
        pos += size
    return pieces


def expected_heartbeat_offsets(payload: bytes, pieces):
    """Cuts where a long gap sits at a safe point: a heartbeat is required.
    Also the cuts where one is allowed (a long gap just before or after)."""
    required, allowed, pos, prev_gap = set(), set(), 0, 0.0
    for gap, data in pieces:
        cursor = sse.LineCursor()
        cursor.feed(payload[:pos])
        if gap >= LONG[0] and cursor.safe:
            required.add(pos)
        if gap >= LONG[0] or prev_gap >= LONG[0]:
            allowed.add(pos)  # "waits for the next safe point" may flush here
        prev_gap = gap
        pos += len(data)
    if prev_gap >= LONG[0]:
        allowed.add(pos)
    return required, allowed


def run_case(addr, upstream, seed: int, n: int) -> str | None:
    """One random stream; returns a failure description or None."""
    rng = random.Random(f"{seed}-{n}")
    payload = random_payload(rng)
    pieces = random_pieces(rng, payload)
    framing = rng.choice(["chunked", "close", "length"])
    path = f"/prop/{n}"
    upstream.route(path, up.event_stream(pieces, framing))
    where = f"seed={seed} case={n} framing={framing} pieces={[(round(g, 3), d) for g, d in pieces]}"
    head, body = fetch_stream(addr, path, timeout=15)
    if head.status != 200 or not body.complete:
        return f"{where}: status {head.status}, complete={body.complete}, got {body.data!r}"
    a = sse.align(body.data, payload)
    if not a.ok:
        return f"{where}: {sse.describe(body.data, payload, a)}"
    if sse.strip_heartbeats(body.data) != (payload[3:] if a.bom_dropped else payload):
        return f"{where}: stripped payload differs: {body.data!r}"
    if sse.parse(body.data).as_tuple() != sse.parse(payload).as_tuple():
        return f"{where}: parsed events differ: {sse.parse(body.data)} vs {sse.parse(payload)}"
    if MODE == "direct":
        return None
    required, allowed = expected_heartbeat_offsets(payload, pieces)
    got = set(sse.offsets(a))
    if required - got:
        return f"{where}: no heartbeat at idle safe offsets {sorted(required - got)}; got {sorted(got)}"
    if got - allowed:
        return f"{where}: heartbeat at offsets {sorted(got - allowed)} with no idle gap around; " \
               f"client {body.data!r}"
    return None


@pytest.mark.slow
@pytest.mark.timeout(BUDGET + 25)
def test_random_streams_forwarded_exactly(stack):
    seed = int(os.environ.get("ITEST_SEED", random.randrange(1 << 30)))
    s = stack(heartbeat={"interval": "200ms"})
    failures, done = [], []
    lock = threading.Lock()
    start = time.monotonic()
    counter = iter(range(MAX_CASES))

    def worker():
        while time.monotonic() - start < BUDGET:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            try:
                problem = run_case(s.addr, s.upstream, seed, n)
            except Exception as e:  # a harness timeout or protocol error is a failure too
                problem = f"seed={seed} case={n}: {type(e).__name__}: {e}"
            with lock:
                done.append(n)
                if problem:
                    failures.append(problem)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BUDGET + 20)
    print(f"property test: seed={seed}, {len(done)} cases, {len(failures)} failures")
    assert len(done) >= 10, f"seed={seed}: only {len(done)} cases ran"
    assert not failures, f"seed={seed} (replay with ITEST_SEED={seed}):\n" + "\n\n".join(failures[:5])
