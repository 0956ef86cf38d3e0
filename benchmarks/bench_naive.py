"""Benchmark 3: basins against the naive pipeline a GIS analyst would write.

Naive: geopandas ``overlay`` of the reaches with the counties, then, reach by reach
and pair by pair, a crossing wherever consecutive pieces (within a reach, and from a
reach to the next one downstream) lie in different counties. It is given the
correctly digitised reaches (it has no orientation step) and cannot see boundary
rivers, so the benchmark uses a SYNTHETIC dense basin without them. Both results are
checked equal to each other and to the generator's truth. Prints both times and the
ratio. Target (issue): basins >= 10x faster at 100k reaches.

    python benchmarks/bench_naive.py [reaches]
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import geopandas as gpd
import numpy as np
import shapely

from basins.discover import discover
from basins.read import counties_from_gdf, rivers_from_gdf
from basins.synthetic import make_dense_basin


def naive_crossings(rivers: gpd.GeoDataFrame, counties: gpd.GeoDataFrame) -> Counter:
    r = rivers[["geometry"]].assign(rid=np.arange(len(rivers)))
    pieces = gpd.overlay(r, counties[["county_id", "geometry"]], how="intersection",
                         keep_geom_type=True).explode(index_parts=False)
    geoms = r.geometry.values
    start = shapely.get_point(pieces.geometry.values, 0)
    pieces["pos"] = shapely.line_locate_point(geoms[pieces.rid.to_numpy()], start)
    pieces = pieces.sort_values(["rid", "pos"])
    out: Counter = Counter()
    first, last = {}, {}
    for rid, grp in pieces.groupby("rid", sort=False):
        ids = grp.county_id.tolist()
        first[rid], last[rid] = ids[0], ids[-1]
        for a, b in zip(ids[:-1], ids[1:]):
            if a != b:
                out[(a, b)] += 1
    # reach to reach: the end node of one reach is the start node of the next
    key = lambda p: (round(p[0], 2), round(p[1], 2))  # noqa: E731
    starts: dict = {}
    for rid, g in enumerate(geoms):
        starts.setdefault(key(g.coords[0]), []).append(rid)
    for rid, g in enumerate(geoms):
        for nxt in starts.get(key(g.coords[-1]), []):
            if rid in last and nxt in first and last[rid] != first[nxt]:
                out[(last[rid], first[nxt])] += 1
    return out


def main(n: int = 100_000) -> None:
    b = make_dense_basin(reaches=n, reverse_prob=0.0)
    print(f"SYNTHETIC: {len(b.rivers):,} reaches, {len(b.counties):,} counties, "
          f"{len(b.truth)} true sections")
    truth = Counter(zip(b.truth.upstream_ids, b.truth.downstream_ids))
    t = time.perf_counter()
    naive = naive_crossings(b.rivers, b.counties)
    t_naive = time.perf_counter() - t
    t = time.perf_counter()
    res = discover(rivers_from_gdf(b.rivers, "NAME"),
                   counties_from_gdf(b.counties, "county_id", "county", "city", "province"))
    t_basins = time.perf_counter() - t
    got = Counter(zip(res.sections.upstream_ids, res.sections.downstream_ids))
    print(f"naive overlay pipeline: {t_naive:7.1f} s  ({sum(naive.values())} crossings, "
          f"equal to truth: {naive == truth})")
    rq = res.qa[res.qa.layer == "rivers"]
    print(f"basins discover():      {t_basins:7.1f} s  ({sum(got.values())} sections, "
          f"equal to truth: {got == truth}; reaches not used: {(rq.status != 'used').sum()} "
          f"of {len(rq)}; also orients, cleans, finds boundary rivers)")
    print(f"speed-up basins vs naive: {t_naive / t_basins:.2f}x  (target >= 10x)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
