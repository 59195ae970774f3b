#!/usr/bin/env python3
"""Heap held per call site, from `perf script` of libc malloc/calloc/realloc/free uprobes.

Used by Benchmarks/profile memory: reads perf script text (-F tid,event,trace,ip,sym,dso),
keeps the allocations still live at the end, and groups them by the first frame in
sse-keepalive (or libevent) code. Prints bytes and allocations per stream.
"""
import collections
import re
import subprocess
import sys

streams = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
head = re.compile(r"^\s*(\d+)\s+probe_libc:(\w+):.*?(?:bytes=(\d+)|n=(\d+) sz=(\d+)|ptr=(\d+)|p=(\d+) sz=(\d+)|arg1=(0x[0-9a-f]+))")
records = []
cur = None
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    m = head.match(line)
    if m:
        cur = dict(tid=m.group(1), ev=m.group(2), g=m.groups(), frames=[])
        records.append(cur)
    elif cur is not None:
        parts = line.split(None, 1)
        if len(parts) == 2:
            cur["frames"].append(parts[1].strip())


def site(frames):
    keep = []
    for f in frames:
        if "libc.so" in f or "libswiftCore" in f and not keep:
            continue
        keep.append(f.rsplit(" (", 1))
        if len(keep) >= 2:
            break
    return " <- ".join(k[0] + (" [libevent]" if "libevent" in k[1] else "") for k in keep) if keep else "?"


def chunk(n):
    return max(32, (n + 8 + 15) & ~15)


pending = {}
live = {}
allocs = collections.Counter()
for r in records:
    ev, g = r["ev"], r["g"]
    if ev == "malloc":
        pending[r["tid"]] = (int(g[2]), site(r["frames"]))
    elif ev == "calloc":
        if r["tid"] in pending and pending[r["tid"]][0] == int(g[3]) * int(g[4]):
            continue  # plt and body probes of one call
        pending[r["tid"]] = (int(g[3]) * int(g[4]), site(r["frames"]))
    elif ev == "realloc":
        live.pop(int(g[6]), None)
        pending[r["tid"]] = (int(g[7]), site(r["frames"]))
    elif ev.endswith("_return"):
        p = pending.pop(r["tid"], None)
        if p and g[8]:
            live[int(g[8], 16)] = p
            allocs[p[1]] += 1
    elif ev == "free":
        live.pop(int(g[5]), None)

by_site = collections.defaultdict(lambda: [0, 0])
for size, s in live.values():
    by_site[s][0] += chunk(size)
    by_site[s][1] += 1
names = list(by_site)
try:
    demangled = subprocess.run(["swift-demangle", "--simplified", "--compact"], input="\n".join(names),
                               capture_output=True, text=True).stdout.splitlines()
except OSError:
    demangled = names
total = sum(v[0] for v in by_site.values())
print(f"live heap at the end: {total} bytes in {len(live)} blocks = {total / streams:.0f} B/stream "
      f"({len(live) / streams:.1f} blocks/stream), malloc chunk overhead included")
print(f"allocations during the run: {sum(allocs.values())} = {sum(allocs.values()) / streams:.1f} per stream")
for (name, (b, n)), d in sorted(zip(by_site.items(), demangled), key=lambda x: -x[0][1][0])[:25]:
    print(f"{b / streams:8.0f} B/stream {n / streams:6.2f} blocks/stream  {d[:200]}")
sizes = collections.Counter((s, size) for size, s in live.values())
print("\nlive blocks by (site, requested size), top:")
for (s, size), n in sorted(sizes.items(), key=lambda x: -x[1] * chunk(x[0][1]))[:15]:
    print(f"{n / streams:6.2f}/stream  {size:6d} B (chunk {chunk(size)})  {s[:120]}")
