"""Benchmark 2: scaling on SYNTHETIC dense networks (10k to 1M reaches, 3,025 counties).

Each size runs in a fresh subprocess (so peak memory is its own). Prints, per size,
the discovery wall time (generation excluded), peak RSS, whether the sections equal
the generator's known truth, how many reaches were not used (merged or flagged:
should be none), and the time per reach relative to the smallest size
(the baseline measured in this run); then the fitted growth exponent
(time ~ reaches^k). Targets (issue): 1M reaches <= 60 s and <= 6 GiB, k close to 1.

    python benchmarks/bench_scaling.py                # 10k 100k 300k 1M
    python benchmarks/bench_scaling.py 10000 100000   # chosen sizes
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import numpy as np

CHILD = r"""
import json, resource, sys, time
from basins.synthetic import make_dense_basin
from basins.read import rivers_from_gdf, counties_from_gdf
from basins.discover import discover
n = int(sys.argv[1])
b = make_dense_basin(reaches=n, link_pieces=3 if n < 15000 else 7)
riv = rivers_from_gdf(b.rivers, "NAME")
cty = counties_from_gdf(b.counties, "county_id", "county", "city", "province")
stages, last = {}, [time.perf_counter(), None]
def tick(m):
    now = time.perf_counter()
    if last[1]:
        stages[last[1]] = now - last[0]
    last[0], last[1] = now, m
t = time.perf_counter()
res = discover(riv, cty, progress=tick)
tick("end")
el = time.perf_counter() - t
got = sorted(zip(res.sections.upstream_ids, res.sections.downstream_ids))
want = sorted(zip(b.truth.upstream_ids, b.truth.downstream_ids))
print(json.dumps(dict(n=len(b.rivers), seconds=el, stages=stages, counties=len(b.counties),
                      peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      sections=len(res.sections), truth=len(want), equal=got == want,
                      # the generator has no duplicates and one outlet: every reach
                      # should be used, none merged or flagged
                      not_used=int((res.qa.query("layer == 'rivers'").status != "used").sum()))))
"""


def main(sizes: list[int]) -> None:
    print(f"machine: {platform.machine()} python {platform.python_version()}")
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n)], capture_output=True,
                             text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        base = rows[0]["seconds"] / rows[0]["n"]
        st = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
        print(f"{r['n']:>9,} reaches  {r['seconds']:8.1f} s  peak {r['peak_mib']:7.0f} MiB  "
              f"sections {r['sections']} (truth {r['truth']}, equal: {r['equal']}; "
              f"reaches not used: {r['not_used']})  "
              f"time/reach vs first size: {r['seconds'] / r['n'] / base:.2f}x  [{st}]",
              flush=True)
    if len(rows) >= 2:
        k = np.polyfit(np.log([r["n"] for r in rows]), np.log([r["seconds"] for r in rows]), 1)[0]
        print(f"fitted growth exponent k (time ~ reaches^k): {k:.2f}")
    big = rows[-1]
    print(f"largest: {big['n']:,} reaches in {big['seconds']:.1f} s (target <= 60 s for 1M), "
          f"{big['peak_mib'] / 1024:.2f} GiB (target <= 6 GiB)")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 100_000, 300_000, 1_000_000])
