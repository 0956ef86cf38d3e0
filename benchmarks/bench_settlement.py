"""Benchmark 4: settlement of 3,000 sections x 120 months (10 years), SYNTHETIC data.

One Shandong county-level agreement per section; monitoring values drawn so that
months fall better, equal and worse than target. Prints the time of settle()
(monitoring already validated, as after read_monitoring) and, as the baseline
measured in the same run, the time to compute the monthly classes alone; checks
that money is conserved. The first call in a fresh process pays one-off costs
(template files parsed, first touches of fresh memory); the median of repeated
calls is printed too. Target (issue): <= 1 s.

    python benchmarks/bench_settlement.py [sections] [years]
"""

from __future__ import annotations

import sys
import time
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd

from basins.agreements import Agreement, SectionRef
from basins.quality import monthly_classes
from basins.settlement import settle


def data(n_sections: int, years: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sids = [f"S{k:010x}" for k in range(n_sections)]
    months = [f"{2016 + y}-{m:02d}" for y in range(years) for m in range(1, 13)]
    nh3 = rng.choice([Decimal("0.3"), Decimal("0.8"), Decimal("1.2")], size=(n_sections, len(months)))
    mon = pd.DataFrame({
        "section_id": np.repeat(sids, len(months) * 2),
        "month": np.tile(np.repeat(months, 2), n_sections),
        "indicator": np.tile(["DO", "NH3-N"], n_sections * len(months)),
        "value_mg_l": np.column_stack([np.full(nh3.size, Decimal("7")), nh3.ravel()]).ravel(),
    })
    ags = [Agreement(agreement_id=f"A{k:05d}", name="", signed=date(2015, 1, 1),
                     valid_from=date(2016, 1, 1), valid_to=date(2016 + years - 1, 12, 31),
                     template="shandong_county", annual_amount=Decimal(12_000_000),
                     sections=(SectionRef(where="", row=k, section_id=s, upstream=(f"U{k % 97}",),
                                          downstream=(f"D{k % 89}", f"E{k % 83}")),))
           for k, s in enumerate(sids)]
    secs = pd.DataFrame({"section_id": sids, "level": ["city"] * n_sections})
    return ags, mon, secs, list(range(2016, 2016 + years))


def main(n_sections: int = 3000, years: int = 10, repeats: int = 3) -> None:
    ags, mon, secs, yrs = data(n_sections, years)
    print(f"{n_sections} sections x {12 * years} months, {len(mon):,} monitoring values")
    t = time.perf_counter()
    monthly_classes(mon)
    base = time.perf_counter() - t
    times = []
    for _ in range(1 + repeats):  # the first call in a fresh process, then repeats
        t = time.perf_counter()
        s = settle(ags, mon, yrs, secs)
        times.append(time.perf_counter() - t)
    first, again = times[0], float(np.median(times[1:]))
    print(f"monthly classes only (baseline): {base:6.2f} s")
    print(f"settle(), first call:            {first:6.2f} s  ({len(s.ledger):,} ledger rows, "
          f"conserved: {s.conserved()})  ratio {first / base:.1f}x")
    print(f"settle(), median of {repeats} more:       {again:6.2f} s  ratio {again / base:.1f}x  "
          "(target <= 1 s)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
