"""Benchmark 1: national real run (2,875 counties, NGCC 1:4M) against the read time.

Prints the wall time of reading the inputs (the baseline, measured in this run),
of discovery including boundary rivers, and their ratio. Targets (issue): discovery
<= 5 s and <= 3x the read time on a 2-core machine.

    python benchmarks/bench_national.py          # builds the national cache first if needed
"""

from __future__ import annotations

import platform
import time

from basins.data import load_region
from basins.discover import discover


def main() -> None:
    load_region("national")  # build the cache outside the timing
    t0 = time.perf_counter()
    reg = load_region("national")
    read_s = time.perf_counter() - t0
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
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"inputs: {len(reg.counties)} counties, {len(reg.rivers)} river lines, "
          f"{len(reg.water)} water polygons")
    print(f"read (baseline):   {read_s:7.2f} s")
    for k, v in stages.items():
        print(f"  {k:28s} {v:7.2f} s")
    print(f"discovery:         {disc_s:7.2f} s  ({len(res.sections)} sections, "
          f"{len(res.boundary_rivers)} boundary stretches)")
    print(f"ratio discovery/read: {disc_s / read_s:.1f}x  (target <= 3x; absolute target <= 5 s)")


if __name__ == "__main__":
    main()
