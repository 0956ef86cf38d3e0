"""Benchmark 1: national real run (2,875 counties, NGCC 1:4M) against the read time.

Prints the wall time of reading the inputs (the baseline, measured in this run),
of discovery including boundary rivers, and their ratio. Targets (issue): discovery
<= 5 s and <= 3x the read time on a 2-core machine.

Both are timed the same way: the first discovery in the process (cold: numpy,
GEOS, PROJ and the k-d tree code warm up on it) and the median of ``--repeat``
more; the read is timed after one untimed read (which builds the cache when
needed), as the median of ``--repeat`` reads. The ratio uses the cold discovery,
the less favourable figure.

    python benchmarks/bench_national.py [--repeat N]  # builds the national cache if needed
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from basins.data import load_region
from basins.discover import discover


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="timed reads and warm discoveries")
    repeat = max(ap.parse_args().repeat, 1)
    load_region("national")  # build the cache outside the timing
    reads = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        reg = load_region("national")
        reads.append(time.perf_counter() - t0)
    read_s = statistics.median(reads)
    stages: dict[str, float] = {}
    last = [time.perf_counter(), None]

    def tick(msg: str) -> None:
        now = time.perf_counter()
        if last[1] is not None:
            stages[last[1]] = now - last[0]
        last[0], last[1] = now, msg

    t1 = time.perf_counter()
    res = discover(reg.rivers, reg.counties, reg.water, reg.dem, progress=tick)
    disc_s = time.perf_counter() - t1
    tick("end")
    warm = []
    for _ in range(repeat):
        t1 = time.perf_counter()
        discover(reg.rivers, reg.counties, reg.water, reg.dem)
        warm.append(time.perf_counter() - t1)
    warm_s = statistics.median(warm)
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"inputs: {len(reg.counties)} counties, {len(reg.rivers)} river lines, "
          f"{len(reg.water)} water polygons")
    print(f"read (baseline):   {read_s:7.2f} s  (median of {repeat})")
    for k, v in stages.items():
        print(f"  {k:28s} {v:7.2f} s")
    print(f"discovery, cold:   {disc_s:7.2f} s  ({len(res.sections)} sections, "
          f"{len(res.boundary_rivers)} boundary stretches)")
    print(f"discovery, warm:   {warm_s:7.2f} s  (median of {repeat})")
    print(f"ratio discovery/read: {disc_s / read_s:.1f}x cold, {warm_s / read_s:.1f}x warm "
          "(target <= 3x; absolute target <= 5 s)")


if __name__ == "__main__":
    main()
