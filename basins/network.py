"""Build the directed flow graph from river lines.

Pipeline: :func:`reaches_from_rivers` cleans the raw lines (duplicates, shore
lines, closed rings, zero-length and non-line features), splits multi-part lines
and T-junctions and snaps endpoints into nodes; :func:`graph_from_reaches` orients
every reach and returns a :class:`networkx.MultiDiGraph` whose edges are reaches
pointing downstream (osmnx style: nodes carry ``x``/``y``, edges carry
``geometry``, ``length`` and attributes). :func:`reaches_from_graph` turns the
graph back into a GeoDataFrame.

Orientation strategies (``orientation=``):

``digitised``
    Trust the digitisation direction (use when the data is known to be oriented).
``outlets``
    Find outlets (user-given points, else network ends at the coast or at the
    edge of the study area) and direct every reach towards its nearest outlet
    along the network (multi-source Dijkstra).
``dem``
    As ``outlets``, but a DEM picks the outlets among the network ends (the
    lowest end, and every end at sea level) and checks every reach.
``auto``
    ``dem`` when a DEM is given, else ``outlets``.

Reaches whose direction stays ambiguous (divides between two outlets, loops,
networks without an outlet) or contradicts the DEM keep a direction but carry a
flag in ``orientation_flag``; they are never guessed silently.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import Delaunay, QhullError, cKDTree

from . import settings as st
from .read import BasinsInputError, Dem, LINE_TYPES, project_gdf

QA_COLUMNS = ["layer", "feature_id", "source", "source_row", "status", "reason"]


# ---------------------------------------------------------------------------
# helpers shared with sections.py
# ---------------------------------------------------------------------------
def sample_lines(geoms: np.ndarray, step: float, as_xy: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every ``step`` metres along each line, both ends included.

    Returns
    -------
    points, line_index, distance
        Flat arrays: the sample points (shapely points, or an (n, 2) coordinate
        array with ``as_xy``), which line each belongs to, and its distance from
        the start of that line.
    """
    lengths = shapely.length(geoms)
    line_index, dist = sample_plan(lengths, step)
    xy = points_along(geoms, line_index, dist)
    return (xy if as_xy else shapely.points(xy)), line_index, dist


def sample_counts(lengths: np.ndarray, step: float) -> np.ndarray:
    """How many samples :func:`sample_lines` takes on lines of these lengths."""
    return np.maximum(np.ceil(lengths / step).astype(np.int64), 1) + 1


def sample_plan(lengths: np.ndarray, step: float, lines: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Line index and distance of :func:`sample_lines`' samples, without the points.

    ``lines`` restricts the plan to those lines (indices into ``lengths``); their
    samples are the very ones :func:`sample_lines` gives them.
    """
    lines = np.arange(len(lengths)) if lines is None else np.asarray(lines, dtype=np.int64)
    ln = np.take(lengths, lines)
    n = sample_counts(ln, step)
    line_index = np.repeat(lines, n)
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    return line_index, k * np.repeat(ln / (n - 1), n)


def points_along(geoms: np.ndarray, line_index: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Coordinates ((n, 2) array) at ``dist`` metres along line ``geoms[line_index]``.

    Vectorised interpolation along cumulative vertex distances (shapely's
    ``line_interpolate_point`` walks each line from its start for every point).
    For several calls on the same lines, :class:`LinePoints` prepares them once.
    """
    return LinePoints(geoms).at(line_index, dist)


class LinePoints:
    """Lines prepared for :func:`points_along` (their coordinates and cumulative
    vertex distances), for several calls on the same lines."""

    def __init__(self, geoms: np.ndarray) -> None:
        coords, ci = shapely.get_coordinates(geoms, return_index=True)
        seg = np.linalg.norm(np.diff(coords, axis=0), axis=1)
        seg[ci[1:] != ci[:-1]] = 0.0
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        first = np.searchsorted(ci, np.arange(len(geoms)))
        self.base = cum[first]  # cumulative distance at each line's first vertex
        self.gap = np.arange(len(geoms)) * 1.0  # keeps lines apart in the global ordering
        self.gcum = cum + self.gap[ci]
        last = np.concatenate([first[1:], [len(coords)]]) - 1
        self.first, self.last_seg = first, np.maximum(last - 1, first)
        self.coords, self.ci = coords, ci

    def at(self, line_index: np.ndarray, dist: np.ndarray) -> np.ndarray:
        """:func:`points_along` of these lines."""
        coords, gcum = self.coords, self.gcum
        # (np.take: the same values as fancy indexing, several times faster)
        target = np.take(self.base, line_index) + np.take(self.gap, line_index) + dist
        j = np.searchsorted(gcum, target, side="right") - 1
        j = np.clip(j, np.take(self.first, line_index), np.take(self.last_seg, line_index))
        seglen = np.take(gcum, j + 1) - np.take(gcum, j) if len(coords) > 1 else np.zeros(len(j))
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.clip(np.where(seglen > 0, (target - np.take(gcum, j)) / seglen, 0.0), 0.0, 1.0)
        jn = np.minimum(j + 1, len(coords) - 1)
        xy = np.take(coords, j, axis=0)
        step_xy = np.take(coords, jn, axis=0)
        step_xy -= xy
        step_xy *= t[:, None]
        xy += step_xy
        return xy


def kdtree(points: np.ndarray) -> cKDTree:
    """A k-d tree for the exact range searches of this package.

    Unbalanced (median splits cost twice the build time and searches are no
    faster on river and outline points) and without node compaction (~25% faster
    to build, searches as fast; measured on the dense 100k basin and the national
    shore lines). The same points and pairs come out whatever the tree's shape.
    """
    return cKDTree(points, balanced_tree=False, compact_nodes=False)


def column_bounds(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column minimum and maximum of an (n, 2) array: ``xy.min(axis=0)`` and
    ``xy.max(axis=0)``, column by column (numpy reduces a C-ordered (n, 2) array
    along axis 0 about ten times slower)."""
    return (np.array([xy[:, 0].min(), xy[:, 1].min()]),
            np.array([xy[:, 0].max(), xy[:, 1].max()]))


def first_of_groups(key: np.ndarray, d: np.ndarray, at: np.ndarray) -> np.ndarray:
    """For each distinct ``key`` (ascending), its row with the smallest ``d``, then
    the smallest ``at``, then the first.

    The rows ``np.lexsort((at, d, key))`` puts first in each key's group, from one
    stable sort of the integer keys and two minima per group (``reduceat``): ~3x
    faster than sorting the two float columns too (nationally 144k near-duplicate
    pairs: 42 -> 13 ms). ``d`` and ``at`` hold no NaN (a group of NaN distances
    would give no row; the callers' pairs are all within a tolerance).
    """
    o = np.argsort(key, kind="stable")
    ks = key[o]
    if len(ks) == 0:
        return o
    start = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    count = np.diff(np.r_[start, len(ks)])
    ds = d[o]
    cand = ds == np.repeat(np.minimum.reduceat(ds, start), count)
    ats = np.where(cand, at[o], np.inf)
    hit = np.flatnonzero(cand & (ats == np.repeat(np.minimum.reduceat(ats, start), count)))
    group = np.repeat(np.arange(len(start)), count)[hit]
    return o[hit[np.r_[True, group[1:] != group[:-1]]]]


def line_ends(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last coordinates of each LineString, as two (n, 2) arrays.

    Numpy on the flat coordinate array: no Point objects are built (creating a
    million shapely Points costs about a second). Empty lines give NaN.
    """
    n = shapely.get_num_coordinates(geoms)
    coords = shapely.get_coordinates(geoms)
    last = np.cumsum(n) - 1
    first = last - n + 1
    if (n > 0).all():  # (the usual case: no masks)
        return np.take(coords, first, axis=0), np.take(coords, last, axis=0)
    start = np.full((len(n), 2), np.nan)
    stop = np.full((len(n), 2), np.nan)
    ok = n > 0
    start[ok], stop[ok] = coords[first[ok]], coords[last[ok]]
    return start, stop


def points_in_polygons(xy: np.ndarray, polys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (point, polygon) where the point lies inside or on the polygon.

    Like ``STRtree(points).query(polys, predicate="intersects")`` but without
    shapely Point objects (a million of them cost seconds): candidate pairs come
    from a grid of the polygons' bounding boxes in numpy, and are tested with
    :func:`shapely.intersects_xy` on prepared polygons, on two threads.

    Returns
    -------
    point, polygon
        Index arrays, sorted by polygon then point.
    """
    z = np.zeros(0, dtype=np.int64)
    if len(xy) == 0 or len(polys) == 0:
        return z, z
    ok = np.flatnonzero(~(shapely.is_missing(polys) | shapely.is_empty(polys)))
    if len(ok) == 0:
        return z, z
    fin = np.flatnonzero(np.isfinite(xy).all(axis=1))  # NaN points lie in nothing
    if len(fin) < len(xy):
        pi, ci = points_in_polygons(xy[fin], polys)
        return fin[pi], ci
    b = shapely.bounds(polys[ok])
    xlo, xhi = column_bounds(xy)
    lo = np.minimum(b[:, :2].min(axis=0), xlo)
    hi = np.maximum(b[:, 2:].max(axis=0), xhi)
    # cells of half the typical polygon, but at most ~1,000 a side (degenerate
    # polygons must not make the grid explode)
    cell = max(float(np.median(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))) / 2,
               float((hi - lo).max()) / 1000, 1e-9)
    # cells each polygon's box covers (a box far larger than the cell registers in
    # many cells: fine for counties, whose sizes vary by tens, not thousands)
    c0 = np.floor((b[:, :2] - lo) / cell).astype(np.int64)
    c1 = np.floor((b[:, 2:] - lo) / cell).astype(np.int64)
    ncol = int(max(c1[:, 1].max(), np.floor((xy[:, 1] - lo[1]) / cell).max())) + 1
    nx, ny = c1[:, 0] - c0[:, 0] + 1, c1[:, 1] - c0[:, 1] + 1
    reps = nx * ny
    owner = np.repeat(np.arange(len(ok)), reps)
    k = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
    cells = (c0[owner, 0] + k // ny[owner]) * ncol + c0[owner, 1] + k % ny[owner]
    o = np.argsort(cells, kind="stable")
    cells, owner = cells[o], owner[o]
    pc = np.floor((xy - lo) / cell).astype(np.int64)
    pkey = pc[:, 0] * ncol + pc[:, 1]
    start = np.searchsorted(cells, pkey, side="left")
    count = np.searchsorted(cells, pkey, side="right") - start
    pi = np.repeat(np.arange(len(xy)), count)
    ci = owner[np.repeat(start, count) + np.arange(int(count.sum()))
               - np.repeat(np.cumsum(count) - count, count)]
    x, y = xy[pi, 0], xy[pi, 1]
    inbox = (x >= b[ci, 0]) & (x <= b[ci, 2]) & (y >= b[ci, 1]) & (y <= b[ci, 3])
    o = np.lexsort((pi[inbox], ci[inbox]))  # by polygon, then point
    pi, ci = pi[inbox][o], ci[inbox][o]
    hit = polygons_contain_xy(polys[ok], ci, xy[pi], "intersects") if len(pi) \
        else np.zeros(0, bool)
    return pi[hit], ok[ci[hit]]


def polygons_contain_xy(polys: np.ndarray, which: np.ndarray, xy: np.ndarray,
                        predicate: str = "contains") -> np.ndarray:
    """``shapely.contains_xy(polys[which], x, y)`` (or ``intersects_xy``) for many pairs.

    The polygons are prepared; with many pairs the work is split on two threads,
    each with its own polygons: a prepared polygon builds its point-in-area index
    on first use, which two threads must not do at once (seen as a heap
    corruption).
    """
    test = shapely.contains_xy if predicate == "contains" else shapely.intersects_xy
    shapely.prepare(polys)
    which = np.asarray(which, dtype=np.int64)
    n = len(which)
    if n < 2 * _THREAD_MIN_POINTS:
        return test(polys[which], xy[:, 0], xy[:, 1])
    order = np.argsort(which, kind="stable")
    w = which[order]
    cut = int(np.searchsorted(w, w[n // 2]))  # no polygon on both sides of the cut
    spans = [(0, cut), (cut, n)] if cut > 0 else [(0, n)]

    def run(span):
        o = order[span[0]:span[1]]
        return test(polys[w[span[0]:span[1]]], xy[o, 0], xy[o, 1])

    out = np.empty(n, bool)
    out[order] = np.concatenate(thread_map(run, spans))
    return out


def point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray, with_t: bool = False):
    """Distance from each point ``p`` to the segment ``a``-``b`` (arrays of shape (n, 2)).

    With ``with_t``, also the position of the nearest point as a fraction of the
    segment (0 at ``a``, 1 at ``b``).
    """
    ab = b - a
    den = np.einsum("ij,ij->i", ab, ab)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip(np.where(den > 0, np.einsum("ij,ij->i", p - a, ab) / den, 0.0), 0.0, 1.0)
    qx = a[:, 0] + ab[:, 0] * t
    qy = a[:, 1] + ab[:, 1] * t
    d = np.hypot(p[:, 0] - qx, p[:, 1] - qy)
    return (d, t) if with_t else d


#: point-segment pairs per block in pair_distances
_PAIR_BLOCK = 1 << 15


def pair_distances(p: np.ndarray, pi: np.ndarray, a: np.ndarray, b: np.ndarray,
                   sj: np.ndarray, with_t: bool = False):
    """:func:`point_segment_distance` of the points ``p[pi]`` to the segments
    ``a[sj]``-``b[sj]``, pair by pair, to the bit.

    A block of ``_PAIR_BLOCK`` pairs at a time: the gathered coordinates and the
    temporaries stay a few hundred kB, in cache, instead of a dozen arrays as
    long as the pairs (nationally 1.4M pairs: ~30% faster once the memory is
    warm, several times faster in a fresh process, where each new page costs).
    """
    n = len(pi)
    d = np.empty(n)
    t = np.empty(n) if with_t else None
    for k in range(0, n, _PAIR_BLOCK):
        i, j = pi[k:k + _PAIR_BLOCK], sj[k:k + _PAIR_BLOCK]
        r = point_segment_distance(np.take(p, i, axis=0), np.take(a, j, axis=0),
                                   np.take(b, j, axis=0), with_t)
        if with_t:
            d[k:k + _PAIR_BLOCK], t[k:k + _PAIR_BLOCK] = r
        else:
            d[k:k + _PAIR_BLOCK] = r
    return (d, t) if with_t else d


def _arr(gdf) -> np.ndarray:
    """Geometries as a plain object array (shapely on a GeometryArray goes through pandas)."""
    return np.asarray(gdf.geometry.array, dtype=object)


def _qa_row(layer, fid, source, row, status, reason) -> dict:
    return {"layer": layer, "feature_id": fid, "source": source, "source_row": row,
            "status": status, "reason": reason}


# ---------------------------------------------------------------------------
# cleaning and noding
# ---------------------------------------------------------------------------
def reaches_from_rivers(
    rivers: gpd.GeoDataFrame,
    crs: str,
    water: gpd.GeoDataFrame | None = None,
    settings: st.Settings = st.DEFAULT,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Clean river lines into noded reaches in the analysis CRS.

    Parameters
    ----------
    rivers
        River layer in the river schema (:func:`basins.read.rivers_from_gdf`).
    crs
        Metric analysis CRS (:func:`basins.read.analysis_crs_for`).
    water
        Optional water polygons (lakes, double-line rivers). Lines running along
        their outlines are shore lines and are not used as flow lines.
    settings
        Tolerances.

    Returns
    -------
    reaches : geopandas.GeoDataFrame
        Columns ``reach_id``, ``river``, ``source_row``, geometry (LineString,
        analysis CRS); endpoints of touching reaches are identical.
    qa : pandas.DataFrame
        One row per input feature: ``status`` is ``used``, ``merged`` (duplicate
        of another line), ``excluded`` (not a usable flow line), with ``reason``.
    """
    source = rivers.attrs.get("source", "rivers")
    r = project_gdf(rivers, crs)
    qa: dict[int, dict] = {}
    geoms = _arr(r)
    type_names = np.array(["Point", "LineString", "LinearRing", "Polygon", "MultiPoint",
                           "MultiLineString", "MultiPolygon", "GeometryCollection"], dtype=object)
    tid = shapely.get_type_id(geoms)
    missing = (tid < 0) | shapely.is_empty(geoms)
    types = np.where(missing, None, type_names[np.clip(tid, 0, 7)])
    for i in np.flatnonzero(pd.isna(types)):
        qa[i] = _qa_row("rivers", r.reach_id.iat[i], source, int(r.source_row.iat[i]),
                        "excluded", "empty or missing geometry")
    for i in np.flatnonzero(~pd.isna(types) & ~np.isin(types, list(LINE_TYPES))):
        qa[i] = _qa_row("rivers", r.reach_id.iat[i], source, int(r.source_row.iat[i]),
                        "excluded", f"not a line ({types[i]}) in the river layer")
    keep = np.isin(types, list(LINE_TYPES))
    r = r.iloc[np.flatnonzero(keep)]
    # repair invalid lines (self-touching is fine for lines; drop repeated points)
    if (shapely.get_type_id(_arr(r)) == 1).all():  # single LineStrings: nothing to explode
        parts = r.reset_index(drop=True)
    else:
        parts = r.explode(index_parts=True)
        counts = parts.groupby(level=0).size()
        part_no = parts.index.get_level_values(1).to_numpy()
        multi = parts.index.get_level_values(0).map(counts).to_numpy() > 1
        parts = parts.reset_index(drop=True)
        parts["reach_id"] = np.where(multi, parts.reach_id + "-" + part_no.astype(str),
                                     parts.reach_id)
    line = shapely.get_type_id(_arr(parts)) == 1
    if not line.all():
        parts = parts[line].reset_index(drop=True)
    pg = _arr(parts)
    coords, ci = shapely.get_coordinates(pg, return_index=True)
    rep = np.unique(ci[1:][(ci[1:] == ci[:-1]) & (coords[1:] == coords[:-1]).all(axis=1)])
    if len(rep):  # (only the lines that have them: few do, and it costs ~2 µs a line)
        pg = pg.copy()
        pg[rep] = shapely.remove_repeated_points(pg[rep], 0.0)
        parts["geometry"] = pg
    rid_arr = parts.reach_id.to_numpy()  # plain array: .iat in loops costs 0.1 ms a call
    reasons: dict[str, str] = {}  # piece id -> exclusion reason
    statuses: dict[str, str] = {}
    g = _arr(parts)
    length = shapely.length(g)
    tiny = length < max(settings.snap_tolerance_m, 1.0)
    for rid in parts.reach_id[tiny].tolist():
        reasons[rid], statuses[rid] = "zero-length or shorter than the snap tolerance", "excluded"
    g0, g1 = line_ends(g)
    ring = ~tiny & (np.hypot(*(g1 - g0).T) <= settings.snap_tolerance_m)
    for rid in parts.reach_id[ring].tolist():
        reasons[rid] = "closed ring (lake shore or island bank), not a flow line"
        statuses[rid] = "excluded"
    alive = ~tiny & ~ring
    shore = np.zeros(len(parts), bool)  # bank lines of water polygons
    # exact duplicates (same line, either direction)
    idx = np.flatnonzero(alive)
    copy_of = first_copies(g[idx])
    dup = np.flatnonzero(copy_of != np.arange(len(idx)))
    for i, f in zip(idx[dup].tolist(), idx[copy_of[dup]].tolist()):
        reasons[rid_arr[i]] = f"duplicate of {rid_arr[f]}"
        statuses[rid_arr[i]] = "merged"
        alive[i] = False
    # shore lines along water polygon outlines
    # water polygons in the analysis CRS, repaired once for the shore test, the
    # centre lines and the links
    wgeoms = shapely.make_valid(_arr(project_gdf(water, crs))) if water is not None and len(water) \
        else None
    # the two NGCC polygon layers repeat ~40% of the polygons exactly: geometric
    # work (shore test, unions, links) uses one copy, QA still names every polygon
    wcopy = None if wgeoms is None else first_copies(wgeoms)
    wfirst = None if wgeoms is None else wcopy == np.arange(len(wgeoms))
    # touching water polygons (one copy each): groups for centre lines and links
    touching = None if wgeoms is None else \
        _touching(wgeoms, np.flatnonzero(~shapely.is_empty(wgeoms) & wfirst))
    if wgeoms is not None:
        wb = shapely.boundary(wgeoms[wfirst])
        wb = SegmentIndex(wb[~(shapely.is_missing(wb) | shapely.is_empty(wb))],
                          settings.shore_tolerance_m, keep_segments=True)
        idx = np.flatnonzero(alive)
        cover = _cover_share(g[idx], wb, settings.shore_tolerance_m, settings.sample_step_m)
        for i in idx[cover >= settings.shore_min_cover].tolist():
            reasons[rid_arr[i]] = "shore or bank line of a water polygon"
            statuses[rid_arr[i]] = "excluded"
            alive[i] = False
            shore[i] = True
    # double-line rivers: a centre line replaces the bank lines; near duplicates (the
    # same river digitised twice, e.g. hyd1_4l and hyd2_4l). Neither depends on the
    # other: with centre lines to derive, the duplicates are found on a second thread
    # meanwhile (much of both is GEOS, Qhull and k-d trees, which release the GIL).
    # Without, one thread: a second one only adds a malloc arena (+20% peak memory
    # at 300k and 1M synthetic reaches)
    shore_idx = np.flatnonzero(shore)
    idx = np.flatnonzero(alive)
    # the lines' segment index serves both: the near-duplicate search, and the test
    # whether a derived centre line is already in the river layer
    dup_index = _duplicate_index(g[idx], settings) if len(shore_idx) and len(idx) else None

    def centre_lines():
        return _centrelines(wgeoms, wcopy, water, parts.iloc[shore_idx], g[alive], crs, settings,
                            touching, dup_index)

    def duplicates():
        return _near_duplicates(g[idx], parts.reach_id.to_numpy()[idx], settings, dup_index)

    if len(shore_idx):
        with ThreadPoolExecutor(max_workers=1) as pool:
            dups = pool.submit(duplicates)
            extra, water_qa = centre_lines()
            dup_of = dups.result()
    else:
        extra, water_qa = centre_lines()
        dup_of = duplicates()
    for j, other in dup_of.items():
        rid = rid_arr[idx[j]]
        reasons[rid], statuses[rid] = f"duplicate of {other} (within tolerance)", "merged"
        alive[idx[j]] = False
    kept = parts[alive].reset_index(drop=True)
    if len(extra):
        kept = pd.concat([kept, project_gdf(extra, crs)], ignore_index=True)
        kept = pd.concat([kept, _connectors(kept, extra, settings)], ignore_index=True)
        kept = gpd.GeoDataFrame(kept, geometry="geometry", crs=crs)
    kept = _node(kept, settings)
    kept["virtual"] = False
    links = _water_links(kept, wgeoms, settings, touching)
    if len(links):
        kept = gpd.GeoDataFrame(pd.concat([kept, links], ignore_index=True), geometry="geometry",
                                crs=crs)
    # QA rows for every input feature
    # (columnar: a dict per row costs seconds on a million reaches)
    pieces = kept.source_row.value_counts()
    part_rows = parts.source_row.to_numpy().astype(np.int64)
    why = pd.Series(rid_arr, dtype=object).map(reasons).to_numpy(dtype=object)
    early_rows = np.fromiter(qa, np.int64, count=len(qa))  # rows decided before splitting
    gone = ~pd.isna(why) & ~np.isin(part_rows, pieces.index.to_numpy().astype(np.int64))
    gone &= ~np.isin(part_rows, early_rows)
    gi = np.flatnonzero(gone)
    _, firsts = np.unique(part_rows[gi], return_index=True)  # the first part of each row
    gi = gi[firsts]
    lost = pd.DataFrame({"layer": "rivers",
                         "feature_id": [x.split("-")[0] for x in rid_arr[gi].tolist()],
                         "source": source, "source_row": part_rows[gi],
                         "status": [statuses[x] for x in rid_arr[gi].tolist()],
                         "reason": why[gi]}, columns=QA_COLUMNS)
    rows = rivers.source_row.to_numpy().astype(np.int64)
    done = np.isin(rows, np.r_[early_rows, part_rows[gi]])
    n = pieces.reindex(rows, fill_value=0).to_numpy()
    reason = np.where(n == 0, "no usable line part", "").astype(object)
    many = np.flatnonzero(n > 1)
    reason[many] = [f"split into {k} reaches" for k in n[many].tolist()]
    rest = pd.DataFrame({"layer": "rivers", "feature_id": rivers.reach_id.to_numpy(),
                         "source": source, "source_row": rows,
                         "status": np.where(n == 0, "excluded", "used"), "reason": reason},
                        columns=QA_COLUMNS)[~done]
    early = pd.DataFrame([qa[k] for k in qa], columns=QA_COLUMNS)
    river_qa = pd.concat([early.assign(_k=early_rows),
                          lost.assign(_k=part_rows[gi]), rest.assign(_k=rows[~done])],
                         ignore_index=True).sort_values("_k", kind="stable")
    qa_df = pd.concat([river_qa.drop(columns="_k"), pd.DataFrame(water_qa, columns=QA_COLUMNS)],
                      ignore_index=True)
    return kept.reset_index(drop=True), qa_df


def first_copies(geoms: np.ndarray) -> np.ndarray:
    """Index of the first geometry exactly equal to each (any orientation or start).

    Missing geometries are copies of the first missing one.
    """
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) and (shapely.get_type_id(geoms) == 1).all():
        # LineStrings: copies share their vertex count and (unordered) end points,
        # so only lines sharing those with another line, and closed lines (whose
        # copies may start elsewhere), need the exact test below: in a river layer
        # few do, and normalising and serialising every line costs ~3 µs each
        e0, e1 = line_ends(geoms)
        swap = (e1[:, 0] < e0[:, 0]) | ((e1[:, 0] == e0[:, 0]) & (e1[:, 1] < e0[:, 1]))
        lo, hi = np.where(swap[:, None], e1, e0), np.where(swap[:, None], e0, e1)
        key = pd.DataFrame({"n": shapely.get_num_coordinates(geoms), "x0": lo[:, 0],
                            "y0": lo[:, 1], "x1": hi[:, 0], "y1": hi[:, 1]})
        odd = (lo == hi).all(axis=1) | ~np.isfinite(np.c_[lo, hi]).all(axis=1)  # closed, NaN
        test = np.flatnonzero(key.duplicated(keep=False).to_numpy() | odd)
        out = np.arange(len(geoms))
        if len(test):
            out[test] = test[_first_copies_exact(geoms[test])]
        return out
    return _first_copies_exact(geoms)


def _first_copies_exact(geoms: np.ndarray) -> np.ndarray:
    """:func:`first_copies` by comparing the normalised geometries' WKB."""
    code = pd.factorize(shapely.to_wkb(shapely.normalize(geoms)),  # hashed in C
                        use_na_sentinel=False)[0]
    _, first = np.unique(code, return_index=True)
    return first[code]


def thread_map(fn, items: list) -> list:
    """``[fn(x) for x in items]`` on up to two threads (results in input order).

    For work that releases the GIL (GEOS through shapely, Qhull through scipy).
    """
    if len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as ex:
        return list(ex.map(fn, items))


def _touching(geoms: np.ndarray, idx: np.ndarray) -> tuple:
    """``(idx, tree, a, b)``: an STRtree of ``geoms[idx]`` and its pairs of
    intersecting (touching or overlapping) geometries, positions into ``idx``,
    each pair once (``a < b``: the pairs are edges of an undirected graph);
    worked out once for the centre lines and the water links.

    The tree gives the pairs whose boxes meet and each is tested once, with the
    first geometry prepared: a predicate query would test every pair both ways
    and every geometry against itself (nationally 3,504 tests instead of 1,338,
    ~45 -> 25 ms on the main thread).
    """
    g = geoms[idx]
    tree = shapely.STRtree(g)
    a, b = tree.query(g)
    one = a < b
    a, b = a[one], b[one]
    shapely.prepare(g)
    try:
        hit = shapely.intersects(g[a], g[b])
    finally:  # as a predicate query leaves them (these polygons are used on more threads)
        shapely.destroy_prepared(g)
    return idx, tree, a[hit], b[hit]


def _water_links(kept: gpd.GeoDataFrame, geoms: np.ndarray | None,
                 settings: st.Settings, touching: tuple | None = None) -> gpd.GeoDataFrame:
    """Virtual links across water bodies drawn only as areas.

    A reservoir or lake with no line through it cuts the network: the river stops
    at one shore and starts again at the other. Network ends within
    ``water_link_tolerance_m`` of one group of touching water polygons, and
    belonging to one named river, are joined by straight links to a hub inside the
    largest polygon of the group, when every end is within ``water_link_max_m`` of
    the hub. Links carry ``virtual=True``; the hub is a candidate outlet like a
    lake end (see :func:`orient_reaches`). ``touching``: :func:`_touching` of
    ``geoms`` and its non-empty ones, when already worked out.
    """
    cols = ["reach_id", "river", "source", "source_row", "geometry", "u", "v", "virtual"]
    empty = gpd.GeoDataFrame(columns=cols, geometry="geometry", crs=kept.crs)
    if geoms is None or len(geoms) == 0 or len(kept) == 0:
        return empty
    if touching is None:
        touching = _touching(geoms, np.flatnonzero(~shapely.is_empty(geoms)))
    idx, wtree, wa, wb = touching
    poly = np.isin(shapely.get_type_id(geoms[idx]), [3, 6])  # (make_valid may give others)
    if not poly.any():
        return empty
    if not poly.all():  # the polygons' own tree and pairs
        at = np.cumsum(poly) - 1
        both = poly[wa] & poly[wb]
        idx, wtree, wa, wb = idx[poly], None, at[wa[both]], at[wb[both]]
    wg = geoms[idx]
    if wtree is None:
        wtree = shapely.STRtree(wg)
    _, lab = csgraph.connected_components(
        sparse.coo_matrix((np.ones(len(wa)), (wa, wb)), shape=(len(wg), len(wg))), directed=False)
    # network ends (nodes of degree one) and the reach each belongs to
    g = _arr(kept)
    nodes = np.concatenate([kept.u.to_numpy(), kept.v.to_numpy()])
    owner = np.concatenate([np.arange(len(kept)), np.arange(len(kept))])
    pts = np.concatenate([shapely.get_point(g, 0), shapely.get_point(g, -1)])
    _, inv, cnt = np.unique(nodes, return_inverse=True, return_counts=True)
    lone = np.flatnonzero(cnt[inv.ravel()] == 1)
    ei, wj = wtree.query(pts[lone], predicate="dwithin", distance=settings.water_link_tolerance_m)
    if len(ei) == 0:
        return empty
    # each end joins the nearest group only
    d = shapely.distance(pts[lone][ei], wg[wj])
    best = pd.DataFrame({"e": ei, "grp": lab[wj], "d": d}).sort_values(["e", "d", "grp"]) \
        .drop_duplicates("e")
    rows = []
    area = shapely.area(wg)
    river = kept.river.to_numpy()
    best["name"] = river[owner[lone[best.e.to_numpy()]]]
    # network components: only ends of different components are joined, one end
    # each, so a link never closes a loop (a river already drawn through, or round,
    # the water body stays as it is)
    n_nodes = len(cnt)
    node_i = inv.ravel()
    half = len(kept)
    _, comp = csgraph.connected_components(
        sparse.coo_matrix((np.ones(half), (node_i[:half], node_i[half:])),
                          shape=(n_nodes, n_nodes)), directed=False)
    best["comp"] = comp[node_i[lone[best.e.to_numpy()]]]
    best = best.sort_values(["grp", "name", "comp", "d", "e"]).drop_duplicates(
        ["grp", "name", "comp"])
    # (group, river) runs of the sorted rows, as groupby would give them
    b_grp, b_name, b_e = best.grp.to_numpy(), best.name.to_numpy(), best.e.to_numpy()
    cut = np.flatnonzero(np.r_[True, (b_grp[1:] != b_grp[:-1]) | (b_name[1:] != b_name[:-1])])
    for s0, s1 in zip(cut.tolist(), np.r_[cut[1:], len(best)].tolist()):
        grp, name = b_grp[s0], b_name[s0]
        # only a river passing through: ends of one named river. Ends of different
        # rivers at one lake are not joined (that would route one river into another
        # through the lake and could turn their flow around).
        ends = lone[b_e[s0:s1]]
        if not name or len(ends) < 2 or any(x in name for x in settings.water_link_skip_names):
            continue
        polys = np.flatnonzero(lab == grp)
        hub = shapely.point_on_surface(wg[polys[np.argmax(area[polys])]])
        if shapely.distance(hub, pts[ends]).max() > settings.water_link_max_m:
            continue  # a long river drawn as an area: a straight link would skip counties
        hub_key = node_keys(np.array([[hub.x, hub.y]]))[0]
        for k, e in enumerate(sorted(ends.tolist(), key=lambda e: nodes[e])):
            p = pts[e]
            rows.append({"reach_id": f"L{int(grp)}-{k + 1}", "river": name,
                         "source": "water link", "source_row": -1,
                         "geometry": shapely.linestrings([[p.x, p.y], [hub.x, hub.y]]),
                         "u": nodes[e], "v": hub_key, "virtual": True})
    if not rows:
        return empty
    return gpd.GeoDataFrame(rows, columns=cols, geometry="geometry", crs=kept.crs)


def simplified_line(line, tolerance: float):
    """``line`` simplified within ``tolerance``, without crossing itself.

    Douglas-Peucker, and GEOS's topology-preserving simplifier only when that
    result crosses itself: the plain one is ~15 times faster, and on simple lines
    such as medial paths it nearly always gives a simple line (every national
    centre line is the same either way).
    """
    out = shapely.simplify(line, tolerance, preserve_topology=False)
    return out if shapely.is_simple(out) else shapely.simplify(line, tolerance)


#: skip the GEOS containment test for Voronoi edges that provably lie inside (off
#: only in tests, which check it changes nothing)
_MEDIAL_SKIP = True


def _medial_path(poly, step: float):
    """Main path of the medial axis of a polygon (a double-line river's centre line).

    The Voronoi diagram of points along the outline gives the medial axis as the
    Voronoi edges inside the polygon; its longest path is the centre line. The
    Voronoi edges are built from the Delaunay triangulation (Qhull via scipy): a
    Voronoi vertex is a triangle's circumcentre and an edge joins the circumcentres
    of two neighbouring triangles. That is several times faster than GEOS's
    ``voronoi_polygons`` and gives the same axis. ``poly`` should be prepared
    (:func:`shapely.prepare`).
    """
    b = shapely.segmentize(poly.boundary, step)
    # unique points, lexicographic order (np.unique(axis=0) sorts rows far slower
    # than one complex array: same order, real part first)
    xy = np.unique(np.ascontiguousarray(shapely.get_coordinates(b)).view(np.complex128).ravel())
    xy = np.column_stack([xy.real, xy.imag])
    if len(xy) < 4:
        return None
    c0 = xy.mean(axis=0)
    pts = xy - c0  # centred: circumcentres in metres far from the origin lose digits
    try:
        tri = Delaunay(pts)
    except QhullError:  # degenerate outline (all points on a line)
        return None
    s = tri.simplices
    a0 = pts[s[:, 0]]
    bx, by = (pts[s[:, 1]] - a0).T
    cx, cy = (pts[s[:, 2]] - a0).T
    den = 2 * (bx * cy - by * cx)
    ok = np.abs(den) > 1e-12
    den = np.where(ok, den, 1.0)
    b2, c2 = bx * bx + by * by, cx * cx + cy * cy
    uv = np.column_stack([(cy * b2 - by * c2) / den, (bx * c2 - cx * b2) / den])
    radius = np.hypot(uv[:, 0], uv[:, 1])  # circumradius (distance to a vertex)
    vv = uv + a0 + c0
    inside = ok & shapely.contains_xy(poly, vv[:, 0], vv[:, 1])
    t = np.repeat(np.arange(len(s)), 3)
    n = tri.neighbors.ravel()
    m = (n > t) & inside[t] & inside[np.maximum(n, 0)]
    t, n = t[m], n[m]
    if len(t):  # both ends inside can still cross a narrow concavity of the outline
        # ... but not when the edge is shorter than its end's circumradius less half
        # the outline step: the circle holds no outline point (Delaunay), and every
        # outline point lies within step / 2 of one, so a disc of that smaller radius
        # round the end holds no outline either, and the edge lies inside it
        # (GEOS tests only the others; a small margin absorbs rounding)
        length = np.hypot(*(vv[n] - vv[t]).T)
        clear = np.maximum(radius[t], radius[n]) * (1 - 1e-9) - step / 2 - 1e-6
        test = np.flatnonzero(length >= clear) if _MEDIAL_SKIP else np.arange(len(t))
        good = np.ones(len(t), bool)
        if len(test):
            good[test] = shapely.contains_properly(
                poly, shapely.linestrings(np.stack([vv[t[test]], vv[n[test]]], 1)))
        t, n = t[good], n[good]
    if len(t) == 0:
        return None
    used, inv = np.unique(np.concatenate([t, n]), return_inverse=True)
    inv = inv.reshape(2, -1)
    keys = vv[used]
    # co-circular outline points give several triangles with one circumcentre:
    # a tiny weight keeps their zero-length joins as edges
    w = np.linalg.norm(keys[inv[0]] - keys[inv[1]], axis=1) + 1e-9
    adj = symmetric_csr(inv[0], inv[1], w, len(keys))
    _, lab = csgraph.connected_components(adj, directed=True, connection="weak")
    big = np.bincount(lab).argmax()
    start = int(np.flatnonzero(lab == big)[0])
    d = csgraph.dijkstra(adj, directed=True, indices=start)
    a = int(np.nanargmax(np.where(np.isfinite(d), d, -1)))
    d, pred = csgraph.dijkstra(adj, directed=True, indices=a, return_predecessors=True)
    z = int(np.nanargmax(np.where(np.isfinite(d), d, -1)))
    path = predecessor_chain(pred, z, a)
    if len(path) < 2:
        return None
    return simplified_line(shapely.linestrings(keys[path]), step / 2)


def symmetric_csr(i: np.ndarray, j: np.ndarray, w: np.ndarray, n: int) -> sparse.csr_matrix:
    """The ``n`` x ``n`` CSR matrix of the undirected edges ``i[k]``-``j[k]`` (weight
    ``w[k]``), stored in both directions, columns sorted within each row.

    For scipy's graph searches with ``directed=True``: given one direction only and
    ``directed=False`` they build the transpose at every call (the two searches per
    medial axis took ~30% longer, nationally ~0.03 s of CPU). The edges must be
    distinct pairs (no duplicate is summed).
    """
    rows, cols = np.concatenate([i, j]), np.concatenate([j, i])
    o = np.lexsort((cols, rows))
    indptr = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return sparse.csr_matrix((np.concatenate([w, w])[o], cols[o].astype(np.int32), indptr),
                             shape=(n, n))


def predecessor_chain(pred: np.ndarray, z: int, a: int) -> np.ndarray:
    """``[z, pred[z], pred[pred[z]], ..., a]``: the path back from ``z`` to the root ``a``.

    ``pred`` is a predecessor array of a shortest-path tree rooted at ``a`` (scipy's
    ``csgraph.dijkstra(..., return_predecessors=True)``), ``z`` a node reached from
    ``a``. Pointer doubling in numpy: the chain is extended by its own length with
    the predecessor applied ``2**k`` times, so a chain of L nodes takes ~log2(L)
    gathers over the array, not L Python steps (nationally 58k nodes over the 63
    medial paths, the longest 10.7k; the Python walk held the GIL ~0.05 s).
    """
    jump = np.asarray(pred, dtype=np.int64).copy()
    jump[jump < 0] = a  # the root (and nodes not reached) lead to the root, and stay
    jump[a] = a
    path = np.array([z], dtype=np.int64)
    while path[-1] != a:
        path = np.concatenate([path, jump[path]])
        jump = jump[jump]
    return path[: int(np.argmax(path == a)) + 1]


def union_of_polygons(geoms: np.ndarray) -> np.ndarray:
    """The polygons of the union of the polygon parts of ``geoms`` (other parts dropped).

    GEOS's buffer by 0 of the parts as one MultiPolygon, which is the union of
    valid polygons and ~2x faster than ``union_all`` (OverlayNG) on river polygons
    drawn in overlapping pieces (the NGCC Yangtze: 227 polygons, 0.13 s against
    0.21 s; nationally all 80 groups give the same polygons). ``geoms`` must be
    valid (:func:`shapely.make_valid`). Should the buffer ever lose area (its area
    below the largest part's, or above the parts' sum) ``union_all`` is used.

    The polygons come in a fixed order (by bounds, then area), whichever
    algorithm made them: derived centre lines are numbered in this order.
    """
    parts = shapely.get_parts(np.asarray(geoms, dtype=object))
    parts = parts[shapely.get_type_id(parts) == 3]
    if len(parts) <= 1:
        return parts
    out = shapely.buffer(shapely.multipolygons(parts), 0)
    area = shapely.area(parts)
    slack = 1e-9 * float(area.sum())
    if not (float(area.max()) - slack <= out.area <= float(area.sum()) + slack):
        out = shapely.union_all(parts)
    out = shapely.get_parts(out)
    out = out[shapely.get_type_id(out) == 3]
    b = shapely.bounds(out)
    return out[np.lexsort((shapely.area(out), b[:, 3], b[:, 2], b[:, 1], b[:, 0]))]


def _centrelines(geoms, copy_of, water, shores, kept_geoms, crs, settings, touching=None,
                 kept_index=None):
    """Centre lines of double-line rivers whose banks came as shore lines.

    ``geoms`` are the water polygons of ``water`` in ``crs``, repaired;
    ``copy_of`` is :func:`first_copies` of them (copies only get their QA rows);
    ``touching``: :func:`_touching` of the non-empty first copies, if worked out;
    ``kept_index``: a :class:`SegmentIndex` of ``kept_geoms``, if built (any
    segment length: the distance tests on it are exact).
    Returns the centre lines and one QA row per water polygon.
    """
    empty = gpd.GeoDataFrame(columns=["reach_id", "river", "source", "source_row", "geometry"],
                             geometry="geometry", crs=crs)
    if water is None or len(water) == 0:
        return empty, []
    source = water.attrs.get("source", "water")
    if len(shores) == 0:
        return empty, _water_qa(geoms, copy_of, {}, set(), source)
    first = copy_of == np.arange(len(geoms))
    rows = []
    shore_g = _arr(shores)
    shore_names = shores.river.to_numpy()  # (.iloc per polygon costs ~0.5 ms)
    tree = shapely.STRtree(shore_g)
    # merge touching water polygons (a river drawn in pieces), but only the groups
    # that shore lines run along: unioning every lake of the country costs seconds
    if touching is None:  # copies: QA rows only
        touching = _touching(geoms, np.flatnonzero(~shapely.is_empty(geoms) & first))
    once, wtree, wa, wb = touching
    _, lab = csgraph.connected_components(
        sparse.coo_matrix((np.ones(len(wa)), (wa, wb)), shape=(len(once), len(once))),
        directed=False)
    near_w, _ = tree.query(geoms[once], predicate="dwithin", distance=settings.shore_tolerance_m)
    merged = thread_map(lambda c: union_of_polygons(geoms[once[lab == c]]),
                        np.unique(lab[near_w]).tolist())
    merged = np.concatenate(merged) if merged else np.array([], dtype=object)
    shapely.prepare(merged)
    kept_tree = kept_index if kept_index is not None else \
        SegmentIndex(kept_geoms, settings.duplicate_tolerance_m) if len(kept_geoms) else None
    part_of = {}
    # medial axes first, on both cores (Qhull and GEOS release the GIL); the order
    # of the results is the order of the polygons, so the output does not change
    near_of = [tree.query(poly.boundary, predicate="dwithin", distance=settings.shore_tolerance_m)
               for poly in merged]
    rough = [2 * poly.area / poly.length for poly in merged]  # exact for an even strip
    todo = [k for k in range(len(merged))
            if len(near_of[k]) and rough[k] <= settings.max_river_width_m]
    # outline spacing: fine enough for the narrowest river, coarser for wide ones
    paths = dict(zip(todo, thread_map(
        lambda k: _medial_path(merged[k], max(settings.centreline_step_m, rough[k] / 4)), todo)))
    for k, poly in enumerate(merged):
        near = near_of[k]
        if len(near) == 0:
            continue
        rough_width = rough[k]
        if rough_width > settings.max_river_width_m:
            for j in once[wtree.query(poly, predicate="intersects")]:
                part_of.setdefault(int(j), []).append((k, rough_width, 0.0, ""))
            continue
        path = paths[k]
        if path is None or path.length == 0:
            continue
        width = poly.area / path.length
        names = [n for n in shore_names[near].tolist() if n]
        name = max(set(names), key=lambda x: (names.count(x), x)) if names else ""
        for j in once[wtree.query(poly, predicate="intersects")]:
            part_of.setdefault(int(j), []).append((k, width, path.length, name))
        if width > settings.max_river_width_m:
            continue
        rows.append({"reach_id": f"W{k}", "river": name, "source": source,
                     "source_row": -1, "geometry": path})
    for j, info in part_of.items():  # touching several merged polygons (at a point):
        if len(info) > 1:            # named after the one that holds its area
            held = shapely.area(shapely.intersection(geoms[j], merged[[i[0] for i in info]]))
            part_of[j] = [info[int(np.argmax(held))]]
    if kept_tree is not None and rows:  # a centre line already exists in the river layer
        # (one call for every path: a k-d tree query per path costs its thread start-up)
        share = _cover_share(np.array([r["geometry"] for r in rows], dtype=object), kept_tree,
                             settings.duplicate_tolerance_m, settings.sample_step_m)
        rows = [r for r, sh in zip(rows, share.tolist()) if sh < 0.5]
    out = gpd.GeoDataFrame(rows, columns=empty.columns, geometry="geometry", crs=crs) \
        if rows else empty
    return out, _water_qa(geoms, copy_of, part_of, {r["reach_id"] for r in rows}, source)


def _water_qa(geoms, copy_of, part_of: dict, built: set, source: str) -> list[dict]:
    """One QA row per water polygon: how :func:`_centrelines` used it."""
    qa = []
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    for j in range(len(geoms)):
        info = part_of.get(j)
        if missing[j]:
            status, reason = "excluded", "empty or missing geometry"
        elif copy_of[j] != j:
            status, reason = "merged", f"duplicate of W{copy_of[j]}"
        elif not info:
            status, reason = "used", "lake or river area (no shore lines along it)"
        else:
            k, width, length, _ = info[0]
            status = "used"
            reason = (f"double-line river: centre line W{k} derived "
                      f"({length / 1000:.1f} km, mean width {width:.0f} m)"
                      if f"W{k}" in built else
                      f"lake or existing centre line (mean width {width:.0f} m): "
                      "no centre line added")
        qa.append(_qa_row("water", f"W{j}", source, j, status, reason))
    return qa


def _connectors(kept: gpd.GeoDataFrame, centre: gpd.GeoDataFrame, settings) -> gpd.GeoDataFrame:
    """Join lines that end on the banks of a double-line river to its centre line."""
    cg = _arr(centre)
    g = _arr(kept)
    is_centre = kept.reach_id.isin(centre.reach_id).to_numpy()
    ends = np.concatenate([shapely.get_point(g, 0), shapely.get_point(g, -1)])
    owner = np.concatenate([np.arange(len(g)), np.arange(len(g))])
    # only network ends (an endpoint shared with another line is already connected)
    xy = np.round(shapely.get_coordinates(ends), 2)
    _, inv, cnt = np.unique(xy, axis=0, return_inverse=True, return_counts=True)
    lone = (cnt[inv] == 1) & ~is_centre[owner]
    tree = shapely.STRtree(cg)
    ei, cj = tree.query(ends[lone], predicate="dwithin", distance=settings.max_river_width_m)
    rows = []
    if len(ei):
        d = shapely.distance(ends[lone][ei], cg[cj])
        best = pd.DataFrame({"e": ei, "c": cj, "d": d}).sort_values(["e", "d", "c"]) \
            .drop_duplicates("e")
        lone_idx = np.flatnonzero(lone)
        river = kept.river.to_numpy()  # (.iat per row costs ~0.1 ms)
        for e, c in zip(best.e.tolist(), best.c.tolist()):
            p = ends[lone_idx[e]]
            q = shapely.ops.nearest_points(cg[c], p)[0]
            if shapely.distance(p, q) <= settings.snap_tolerance_m:
                continue
            i = owner[lone_idx[e]]
            rows.append({"reach_id": f"X{len(rows)}", "river": river[i],
                         "source": "connector", "source_row": -1,
                         "geometry": shapely.linestrings([[p.x, p.y], [q.x, q.y]])})
    cols = ["reach_id", "river", "source", "source_row", "geometry"]
    return gpd.GeoDataFrame(rows, columns=cols, geometry="geometry", crs=kept.crs)


#: below this many query points a second thread costs more than it gives
_THREAD_MIN_POINTS = 20_000


class SegmentIndex:
    """Lines cut into short two-point segments, with a k-d tree of their midpoints.

    Distance queries against long lines (river centre lines, lake outlines) are
    slow in GEOS one pair at a time; here candidate pairs come from the k-d tree in
    one call and exact point-segment distances are computed in numpy.

    Parameters
    ----------
    geoms
        Lines, rings or polygons' boundaries (any linear geometry).
    max_len
        Segments are at most this long (lines are densified first); keep it near
        the query tolerance so the candidate search stays tight.
    keep_segments
        Also keep the uncut segments, hashed, for :meth:`lines_on_segments`.
    """

    def __init__(self, geoms: np.ndarray, max_len: float, keep_segments: bool = False) -> None:
        geoms = np.asarray(geoms, dtype=object)
        # single parts, so no segment joins the end of one part to the next
        if (shapely.get_type_id(geoms) == 1).all():  # LineStrings: already single parts
            parts, part_of = geoms, np.arange(len(geoms))
        else:
            parts, part_of = shapely.get_parts(geoms, return_index=True)
        coords, idx = shapely.get_coordinates(parts, return_index=True)
        same = np.flatnonzero(idx[1:] == idx[:-1])
        a, b = np.take(coords, same, axis=0), np.take(coords, same + 1, axis=0)
        d = b - a
        seg_len = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])
        keep = seg_len > 0  # repeated points give no segment
        if not keep.all():  # (rare: a repeated point)
            same, a, b, d, seg_len = same[keep], a[keep], b[keep], d[keep], seg_len[keep]
        self._seg_hash = self._seg_four = None
        if keep_segments:  # one segment per hash (the first): see lines_on_segments
            h, four = _segment_keys(a, b)
            h, first = np.unique(h, return_index=True)
            self._seg_hash, self._seg_four = pd.Index(h), four[first]
        # densify in numpy, as GEOS's segmentize does: a segment longer than
        # max_len becomes n = ceil(len / max_len) equal pieces
        n = np.maximum(np.ceil(seg_len / max_len), 1).astype(np.int64) if len(same) \
            else np.zeros(0, dtype=np.int64)
        if (n > 1).any():
            # (np.repeat and np.take: the values of fancy indexing, several times faster)
            j = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
            len_r, n_r = np.repeat(seg_len, n), np.repeat(n, n)
            piece = len_r / n_r
            f0 = (j * piece) / len_r
            f1 = ((j + 1) * piece) / len_r
            a_r, d_r = np.repeat(a, n, axis=0), np.repeat(d, n, axis=0)
            self.a = a_r + d_r * f0[:, None]
            self.b = a_r + d_r * f1[:, None]
            self.b[np.cumsum(n) - 1] = b  # each segment's last piece ends on its vertex, exactly
            same = np.repeat(same, n)
        else:
            self.a, self.b = a, b
        self.owner = part_of[idx[same]]  # index of the input geometry
        self.length = np.hypot(*(self.b - self.a).T) if len(same) else np.zeros(0)
        # distance of each segment's start from the start of its line (part)
        cum = np.cumsum(self.length)
        first = np.r_[True, idx[same][1:] != idx[same][:-1]] if len(same) else np.zeros(0, bool)
        line_base = (cum - self.length)[first]
        self.start_pos = cum - self.length - np.repeat(line_base, np.diff(np.r_[np.flatnonzero(
            first), len(same)]))
        self.half = float(self.length.max()) / 2 if len(same) else 0.0
        self.tree = kdtree((self.a + self.b) / 2) if len(same) else None

    def __len__(self) -> int:
        return len(self.a)

    def lines_on_segments(self, lines: np.ndarray) -> np.ndarray:
        """Whether every segment of each line is exactly one of the indexed segments.

        Exact coordinates, either direction, before the segments were cut. Such a
        line lies on the indexed lines: every point of it is at distance 0 (a shore
        line copied from a lake outline). Needs ``keep_segments``.
        """
        if self._seg_hash is None:
            raise ValueError("SegmentIndex built without keep_segments=True")
        out = np.zeros(len(lines), bool)
        if len(lines) == 0 or len(self._seg_hash) == 0:
            return out
        coords, ci = shapely.get_coordinates(lines, return_index=True)
        same = np.flatnonzero(ci[1:] == ci[:-1])
        # (a repeated point, a zero-length segment, is never indexed: no match)
        h, four = _segment_keys(np.take(coords, same, axis=0), np.take(coords, same + 1, axis=0))
        # a hash collision can only hide a match (only the first segment of a hash
        # is kept to compare), never make one: such a line is tested the slow way
        pos = self._seg_hash.get_indexer(h)  # (a hash table: no sort)
        hit = pos >= 0
        hit[hit] = (self._seg_four[pos[hit]] == four[hit]).all(axis=1)
        line = ci[same]
        n = np.bincount(line, minlength=len(lines))
        out[:] = (n > 0) & (np.bincount(line, weights=hit, minlength=len(lines)) == n)
        return out

    def count(self, xy: np.ndarray, tol: float) -> np.ndarray:
        """Upper bound of the pairs each point will give (candidates, before the exact test)."""
        if self.tree is None or len(xy) == 0:
            return np.zeros(len(xy), dtype=np.int64)
        return np.asarray(self.tree.query_ball_point(xy, tol + self.half + 1e-6,
                                                     return_length=True, workers=-1),
                          dtype=np.int64)

    def pairs(self, xy: np.ndarray, tol: float):
        """Every (point, segment) pair within ``tol``.

        Returns
        -------
        point, segment, distance, position
            Index into ``xy``, index of the segment, their distance, and the
            position of the segment's nearest point along its line (like
            :func:`shapely.line_locate_point`).
        """
        if self.tree is None or len(xy) == 0:
            z = np.zeros(0, dtype=np.int64)
            return z, z, np.zeros(0), np.zeros(0)
        if len(xy) >= 2 * _THREAD_MIN_POINTS:  # two halves on two cores (scipy releases the GIL)
            cut = len(xy) // 2
            (i0, *r0), (i1, *r1) = thread_map(lambda ab: self._pairs(xy[ab[0]:ab[1]], tol),
                                              [(0, cut), (cut, len(xy))])
            return (np.concatenate([i0, i1 + cut]),
                    *(np.concatenate([u, v]) for u, v in zip(r0, r1)))
        return self._pairs(xy, tol)

    def _pairs(self, xy: np.ndarray, tol: float):
        reach = tol + self.half + 1e-6
        if len(xy) < max(_BALL_QUERY_POINTS, len(self.a) // 60):
            # few points: one ball query each. The dual-tree search below costs
            # ~0.05 µs per indexed segment whatever the points (33 ms on 660k
            # segments), a ball query ~4 µs per point.
            found = self.tree.query_ball_point(xy, reach)
            n = np.fromiter(map(len, found), np.int64, count=len(found))
            i = np.repeat(np.arange(len(xy), dtype=np.int64), n)
            j = np.fromiter(itertools.chain.from_iterable(found), np.int64, count=int(n.sum()))
        else:
            m = kdtree(xy).sparse_distance_matrix(
                self.tree, reach, output_type="ndarray")
            i, j = m["i"].astype(np.int64), m["j"].astype(np.int64)
        d, t = pair_distances(xy, i, self.a, self.b, j, with_t=True)
        ok = d <= tol
        i, j, d, t = i[ok], j[ok], d[ok], t[ok]
        return i, j, d, self.start_pos[j] + t * self.length[j]

    def any_within(self, xy: np.ndarray, tol: float, k: int = 4) -> np.ndarray:
        """Whether each point lies within ``tol`` of any segment (exact).

        The ``k`` nearest segment midpoints (k-d tree, both cores) decide most
        points: a hit among them is a hit, and fewer than ``k`` midpoints within
        reach means there is nothing else to test. Only points with ``k``
        candidates and no hit among them go through :meth:`pairs`.
        """
        hit = np.zeros(len(xy), bool)
        if self.tree is None or len(xy) == 0:
            return hit
        k = min(k, len(self.a))
        dd, jj = self.tree.query(xy, k=k, distance_upper_bound=tol + self.half + 1e-6,
                                 workers=-1)
        dd, jj = dd.reshape(len(xy), k), jj.reshape(len(xy), k)
        found = np.isfinite(dd)
        pi = np.repeat(np.arange(len(xy)), k)[found.ravel()]
        sj = jj[found]
        hit[pi[pair_distances(xy, pi, self.a, self.b, sj) <= tol]] = True
        rest = np.flatnonzero(~hit & found[:, -1])  # k candidates: there may be more
        if len(rest):
            hit[rest[self.pairs(xy[rest], tol)[0]]] = True
        return hit


#: odd 64-bit multipliers of the segment hash (one per coordinate)
_HASH_MULT = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                       0xD6E8FEB86659FD93], dtype=np.uint64)


def _segment_keys(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A hash of each segment ``a[i]``-``b[i]`` and its (n, 4) coordinates, both
    independent of the segment's direction (lower end point first)."""
    x0, y0, x1, y1 = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    swap = (x1 < x0) | ((x1 == x0) & (y1 < y0))
    four = np.empty((len(a), 4))
    four[:, 0], four[:, 1] = np.where(swap, x1, x0), np.where(swap, y1, y0)
    four[:, 2], four[:, 3] = np.where(swap, x0, x1), np.where(swap, y0, y1)
    four += 0.0  # -0.0 -> 0.0: equal values, equal bits
    bits = four.view(np.uint64)
    m = _HASH_MULT  # (uint64 products and sums wrap modulo 2**64)
    h = bits[:, 0] * m[0] + bits[:, 1] * m[1] + bits[:, 2] * m[2] + bits[:, 3] * m[3]
    return h ^ (h >> np.uint64(31)), four


#: SegmentIndex.pairs takes ball queries point by point below this many points
#: (or 1/60 of the segments), a dual-tree search above
_BALL_QUERY_POINTS = 1000
#: sample points per k-d tree query (bounds the candidate pair arrays)
_QUERY_CHUNK = 200_000


def _pairs_in_chunks(index: SegmentIndex, xy: np.ndarray, tol: float):
    """:meth:`SegmentIndex.pairs` over chunks of ``_QUERY_CHUNK`` points, concatenated."""
    out = [index.pairs(xy[a:a + _QUERY_CHUNK], tol) for a in range(0, len(xy), _QUERY_CHUNK)]
    if not out:
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0), np.zeros(0)
    offs = np.arange(0, len(xy), _QUERY_CHUNK)
    return (np.concatenate([o[0] + a for o, a in zip(out, offs)]),
            *(np.concatenate([o[k] for o in out]) for k in (1, 2, 3)))


def _cover_share(lines: np.ndarray, targets, tol: float, step: float) -> np.ndarray:
    """Share of each line's sample points within ``tol`` of any target geometry.

    ``targets`` is an array of linear geometries or a prebuilt :class:`SegmentIndex`.
    A line drawn on the targets' own segments (when ``targets`` keeps them, see
    :meth:`SegmentIndex.lines_on_segments`) has share 1 without sampling: every
    sample of it is at distance 0.
    """
    index = targets if isinstance(targets, SegmentIndex) else SegmentIndex(targets, tol)
    share = np.zeros(len(lines))
    if len(lines) == 0 or len(index) == 0:
        return share
    test = np.arange(len(lines))
    if index._seg_hash is not None:
        on = index.lines_on_segments(lines)
        share[on] = 1.0
        test = np.flatnonzero(~on)
    xy, li, _ = sample_lines(lines[test], min(step, tol), as_xy=True)
    hit = np.concatenate([index.any_within(xy[a:a + _QUERY_CHUNK], tol)
                          for a in range(0, len(xy), _QUERY_CHUNK)]) if len(xy) else np.zeros(0)
    share[test] = (np.bincount(li, weights=hit, minlength=len(test))
                   / np.bincount(li, minlength=len(test)))
    return share


#: candidate pairs per chunk in the near-duplicate search (bounds memory in dense networks)
_DUP_CHUNK_PAIRS = 4_000_000
#: test necessary conditions before the full near-duplicate search (off only in tests,
#: which check it changes nothing)
_DUP_PRETEST = True


def _duplicate_tolerance(lengths: np.ndarray, settings: st.Settings) -> float:
    """The near-duplicate tolerance for lines of these lengths (see :func:`_near_duplicates`)."""
    return min(settings.duplicate_tolerance_m,
               settings.duplicate_median_fraction * float(np.median(lengths)))


def _duplicate_index(g: np.ndarray, settings: st.Settings,
                     along: LinePoints | None = None) -> SegmentIndex:
    """The :class:`SegmentIndex` of lines that :func:`_near_duplicates` searches.

    Segments of 2 tol: fewer to index than short ones, and about as few candidates
    per query (the radius grows to 2 tol, the segments per area fall by four). Not
    shorter than the lines' own median segment: cutting segments finer than the
    network is drawn only multiplies them (a fine network's tolerance is a quarter
    of its reaches; at 100k dense reaches 660k -> 260k segments, the search ~0.2 s
    faster; nationally the 1,500 m tolerance decides). ``along``: the lines'
    :class:`LinePoints`, if made.
    """
    along = along if along is not None else LinePoints(g)
    coords, ci = along.coords, along.ci
    seg = np.hypot(*np.diff(coords, axis=0).T)[ci[1:] == ci[:-1]]
    tol = _duplicate_tolerance(shapely.length(g), settings) if len(g) else 0.0
    return SegmentIndex(g, max(2 * tol, float(np.median(seg)) if len(seg) else 0.0))


def _near_duplicates(g: np.ndarray, ids: np.ndarray, settings: st.Settings,
                     index: SegmentIndex | None = None) -> dict[int, str]:
    """Lines covered by longer lines within the duplicate tolerance, both ends included.

    The tolerance is ``duplicate_tolerance_m``, but never more than
    ``duplicate_median_fraction`` of the median line length: copies of one river
    differ by the generalisation of their scale, and line lengths shrink with scale
    too. A 1:50,000 network of 300 m reaches does not need the 1.5 km of
    1:4,000,000 data, and at its reach length would take short tributaries for
    copies of the rivers they join.

    A line that other lines hang on is not dropped (:func:`_needed_duplicates`):
    tributaries meeting at a narrow angle look like copies of each other. When
    such a line's covering line is a copy of it, the copy is dropped instead
    (:func:`_copies_of_spared`). ``index``: :func:`_duplicate_index` of ``g``, if built.
    """
    if len(g) < 2:
        return {}
    lengths = shapely.length(g)
    tol = _duplicate_tolerance(lengths, settings)
    snap = min(settings.snap_tolerance_m, tol)
    along = LinePoints(g)  # (samples are computed only where tested, in three calls)
    index = index if index is not None else _duplicate_index(g, settings, along)
    n = np.int64(len(g))
    # rank: longer first, ties by id so the result is deterministic (a copy that
    # outranks the line the network hangs on is swapped for it at the end)
    order = np.lexsort((ids, -lengths))
    rank = np.empty(len(g), int)
    rank[order] = np.arange(len(g))
    step = min(settings.sample_step_m, tol)
    count = sample_counts(lengths, step)
    todo = np.arange(len(g))
    if _DUP_PRETEST:
        # necessary conditions, cheap to test: a duplicate has both ends within tol
        # of higher-ranked lines (tested again below, against the covering lines
        # only), and at most ``allowed`` of its samples are not within tol of a
        # higher-ranked line, so of any allowed + 1 of its samples one is. Lines
        # failing are not searched further: in a dense network most lines.
        def near_higher(pts: np.ndarray, of: np.ndarray) -> np.ndarray:
            """Whether each point (of line ``of``) is within tol of a higher-ranked line."""
            pi, sj = _pairs_in_chunks(index, pts, tol)[:2]
            hit = np.zeros(len(pts), bool)
            hit[pi[rank[index.owner[sj]] < rank[of[pi]]]] = True
            return hit

        allowed = np.floor(count * (1.0 - settings.duplicate_min_cover) + 1e-9)
        # allowed + 1 samples spread along each line first (for one sample, the
        # middle one): away from the ends they are far from other lines in a dense
        # network (ends sit on junctions, near many lines, and cost more to test).
        # Only the samples tested are computed: the lines left are sampled in full.
        m = allowed.astype(np.int64) + 1
        of = np.repeat(np.arange(len(g)), m)
        j = np.arange(int(m.sum())) - np.repeat(np.cumsum(m) - m, m)
        c, mm = count[of], np.repeat(m, m)
        hit = near_higher(along.at(of, ((2 * j + 1) * c // (2 * mm)) * (lengths[of] / (c - 1))),
                          of)
        ok = np.zeros(len(g), bool)
        ok[of[hit]] = True
        rest = np.flatnonzero(ok)
        e0, e1 = line_ends(g[rest])
        hit = near_higher(np.concatenate([e0, e1]), np.concatenate([rest, rest]))
        ok[rest] = hit[: len(rest)] & hit[len(rest):]
        todo = np.flatnonzero(ok)
        if len(todo) == 0:
            return {}
    li, dist = sample_plan(lengths, step, todo)
    xy = along.at(li, dist)
    lines = np.unique(li)
    covered = np.zeros(len(xy), bool)
    out: dict[int, str] = {}
    cover_keys: list[np.ndarray] = []  # duplicate * n + covering line
    # samples come grouped by line, so chunks of whole lines see every pair of their
    # lines complete; chunking bounds the candidate arrays in dense networks
    # chunks of whole lines holding at most _DUP_CHUNK_PAIRS candidate pairs: dense
    # networks have hundreds of lines within the tolerance of every sample
    # candidate counts of every k-th sample (~10k of them), scaled, size the chunks:
    # an estimate is enough (it bounds memory, not the result: each chunk decides
    # its own lines). Counting every sample cost as much as a tenth of the search.
    k = max(1, len(xy) // 10_000)
    per_line = np.bincount(li[::k], weights=index.count(xy[::k], tol) * float(k),
                           minlength=len(g))[lines]
    before = np.cumsum(per_line) - per_line
    chunk = (before // _DUP_CHUNK_PAIRS).astype(np.int64)
    first_lines = lines[np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])]
    bounds = np.unique(np.r_[np.searchsorted(li, first_lines), len(xy)])
    for a, b in zip(bounds[:-1], bounds[1:]):
        pi, sj, d, at = index.pairs(xy[a:b], tol)
        pi = pi + a
        gj = index.owner[sj]
        own = li[pi]
        m = rank[gj] < rank[own]  # only strictly higher-ranked (longer) lines may cover
        pi, gj, own, d, at = pi[m], gj[m], own[m], d[m], at[m]
        if len(pi) == 0:
            continue
        # the nearest point of each other line to each sample (its nearest segment;
        # of two as near, as at a vertex they share, the one earlier along the line,
        # so the order the pairs come in does not matter)
        first = first_of_groups(pi * n + gj, d, at)
        pi, gj, own, at = pi[first], gj[first], own[first], at[first]
        # a duplicate runs alongside the other line: the nearest points on the other
        # line move along with it. A line that merely continues or joins the other (a
        # short reach next to a long one) is near it only around the shared end, where
        # the nearest point stays put, so it does not count as covered.
        key = own.astype(np.int64) * n + gj
        o = np.argsort(key, kind="stable")
        ks, ats = key[o], at[o]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        kk = ks[starts]
        span = np.maximum.reduceat(ats, starts) - np.minimum.reduceat(ats, starts)
        good = kk[span >= 0.5 * lengths[kk // n]]
        keep = np.isin(key, good)
        covered[pi[keep]] = True
        # every sample of this chunk's lines is in the chunk, so each line's cover,
        # and the duplicate test, are decided here (nothing large is kept between
        # chunks: dense networks have tens of millions of covering pairs)
        lo, hi = int(li[a]), int(li[b - 1]) + 1
        count = np.bincount(li[a:b] - lo, minlength=hi - lo)
        share = np.bincount(li[a:b] - lo, weights=covered[a:b], minlength=hi - lo) / \
            np.maximum(count, 1)  # lines not sampled (count 0) have share 0
        cand = lo + np.flatnonzero(share >= settings.duplicate_min_cover)
        if len(cand) == 0:
            continue
        ends = np.concatenate(line_ends(g[cand]))
        ei, ej_seg = index.pairs(ends, tol)[:2]
        ej = index.owner[ej_seg]
        owner = np.concatenate([cand, cand])[ei]
        ok = (rank[ej] < rank[owner]) & np.isin(owner.astype(np.int64) * n + ej, good)
        end_hit = np.zeros(len(ends), bool)
        end_hit[ei[ok]] = True
        dup = cand[end_hit[: len(cand)] & end_hit[len(cand):]]
        if len(dup) == 0:
            continue
        # the covering line most often seen for each duplicate names it in the QA
        # table (ties: the lower index, so the result is deterministic)
        ck, cc = np.unique(key[keep & np.isin(own, dup)], return_counts=True)
        cover_keys.append(ck)
        o = np.lexsort((ck % n, -cc, ck // n))
        ck = ck[o]
        firsts = ck[np.r_[True, (ck // n)[1:] != (ck // n)[:-1]]]
        out.update(zip((firsts // n).tolist(), ids[firsts % n].astype(str).tolist()))
    # never drop both of a pair: a line is dropped only in favour of a higher-ranked
    # line, and higher-ranked lines are processed first, so drop chains resolve to a
    # kept one. The two steps below keep that: a spared line is kept, and a copy is
    # dropped only in favour of a spared (kept) line.
    if out:
        cover_keys = np.concatenate(cover_keys)
        spared = _needed_duplicates(g, index, np.array(sorted(out)), cover_keys, n, snap)
        for j in spared.tolist():
            del out[j]
        # a spared line whose covering line is a copy of it (a copy a little longer,
        # so it ranked first): the copy is the duplicate
        for j, other in _copies_of_spared(g, index, spared, cover_keys, out, n, tol,
                                          step, snap, settings.duplicate_min_cover).items():
            out[j] = str(ids[other])
    return out


def _copies_of_spared(g: np.ndarray, index: SegmentIndex, spared: np.ndarray,
                      cover_keys: np.ndarray, out: dict, n: np.int64, tol: float, step: float,
                      snap: float, min_cover: float) -> dict[int, int]:
    """Covering lines of kept duplicates that are copies of them in turn.

    A line ``a`` covering a spared duplicate ``b`` is a copy of ``b`` when ``b``
    covers it the same way (``min_cover`` of its samples and both ends within
    ``tol``) and nothing hangs on it: no end of it farther than ``snap`` from ``b``
    carries a kept line. Returns {copy: the line it copies}.
    """
    cover_keys = cover_keys[np.isin(cover_keys // n, spared)]
    if len(cover_keys) == 0:
        return {}
    b, a = cover_keys // n, cover_keys % n
    xy, li, _ = sample_lines(g[a], step, as_xy=True)
    near = shapely.distance(shapely.points(xy), np.take(g[b], li)) <= tol
    share = np.bincount(li, weights=near, minlength=len(a)) / \
        np.maximum(np.bincount(li, minlength=len(a)), 1)
    e0, e1 = line_ends(g[a])
    d0 = shapely.distance(shapely.points(e0), g[b])
    d1 = shapely.distance(shapely.points(e1), g[b])
    m = (share >= min_cover) & (d0 <= tol) & (d1 <= tol) & ~np.isin(a, list(out))
    # one line to copy per copy: the first spared line it covers
    a, first = np.unique(a[m], return_index=True)
    b, d0, d1, e0, e1 = (x[m][first] for x in (b, d0, d1, e0, e1))
    if len(a) == 0:
        return {}
    # the copies' ends away from their originals, and the lines ending there
    far = np.concatenate([d0 > snap, d1 > snap])
    ends = np.concatenate([e0, e1])
    ai, other = _ends_attached(g, index, np.concatenate([a, a]), ends, snap)
    m = far[ai]
    ai, other = ai[m], other[m]
    dropped = np.zeros(len(g), bool)
    dropped[list(out)] = True
    copy = np.zeros(len(g), bool)
    copy[a] = True
    while True:  # a copy stays when a kept line (not a copy itself) ends on its far end
        hangs = np.zeros(len(ends), bool)
        hangs[ai[~dropped[other] & ~copy[other]]] = True
        stay = np.unique(np.concatenate([a, a])[hangs & copy[np.concatenate([a, a])]])
        if len(stay) == 0:
            break
        copy[stay] = False
    return {int(x): int(y) for x, y in zip(a.tolist(), b.tolist()) if copy[x]}


def _ends_attached(g: np.ndarray, index: SegmentIndex, owners: np.ndarray, pts: np.ndarray,
                   snap: float) -> tuple[np.ndarray, np.ndarray]:
    """Lines other than ``owners[i]`` with an end within ``snap`` of point ``pts[i]``.

    Returns pairs (point index, line index), each pair once.
    """
    pi, sj = _pairs_in_chunks(index, pts, snap)[:2]
    other = index.owner[sj]
    m = other != owners[pi]
    pi, other = pi[m], other[m]
    if len(pi) == 0:
        return pi, other
    key = np.unique(pi.astype(np.int64) * len(g) + other)
    pi, other = key // len(g), key % len(g)
    o0, o1 = line_ends(g[other])
    p = np.take(pts, pi, axis=0)
    near = (np.hypot(*(o0 - p).T) <= snap) | (np.hypot(*(o1 - p).T) <= snap)
    return pi[near], other[near]


def _needed_duplicates(g: np.ndarray, index: SegmentIndex, dups: np.ndarray,
                       cover_keys: np.ndarray, n: np.int64, snap: float) -> np.ndarray:
    """Duplicates that must stay: dropping them would cut other lines off.

    Two tributaries meeting at a narrow angle run within the tolerance of each
    other over a whole reach, so the shorter passes for a copy of the longer. A real
    copy hangs on nothing, but the tributary carries the lines that end on its
    upper end, away from the line covering it. A duplicate is kept when an end of
    it that is farther than ``snap`` from every line covering it has an end of a
    kept line on it (repeated: keeping one can make another needed).
    """
    e0, e1 = line_ends(g[dups])
    ends, eo = np.concatenate([e0, e1]), np.concatenate([dups, dups])
    # ends served by a covering line (within snap of it): nothing hangs on the duplicate there
    pi, sj = _pairs_in_chunks(index, ends, snap)[:2]
    covering = np.isin(eo[pi].astype(np.int64) * n + index.owner[sj], cover_keys)
    served = np.zeros(len(ends), bool)
    served[pi[covering]] = True
    ai, other = _ends_attached(g, index, eo, ends, snap)
    m = ~served[ai]
    ai, other = ai[m], other[m]
    dropped = np.zeros(len(g), bool)
    dropped[dups] = True
    kept_dups = []
    while True:
        needs = np.zeros(len(ends), bool)
        needs[ai[~dropped[other]]] = True
        spare = np.unique(eo[needs & dropped[eo]])
        if len(spare) == 0:
            return np.array(kept_dups, dtype=np.int64)
        dropped[spare] = False
        kept_dups.extend(spare.tolist())


def split_line(line, bounds) -> np.ndarray:
    """The pieces of ``line`` between consecutive distances ``bounds`` (increasing,
    within its length), as ``shapely.ops.substring`` gives them, vertex for vertex.

    ``substring`` walks the line's vertices in Python for every piece (~0.5 ms a
    piece on a long river); here the vertex distances are summed once, in the
    same order, and the end points interpolated by GEOS in one call.
    """
    bounds = np.asarray(bounds, dtype=float)
    xy = shapely.get_coordinates(line)
    d = np.diff(xy, axis=0)
    # substring's running distance at each vertex but the last, as its loop sums it:
    # left to right (as cumsum adds), Python's ``** 2`` and ``** 0.5`` being libm's
    # pow, which np.power calls with an array exponent (with a scalar one numpy
    # takes x * x and sqrt, which differ from pow in the last bit now and then)
    two, half = np.full(len(d), 2.0), np.full(len(d), 0.5)
    cum = np.r_[0.0, np.cumsum(np.power(np.power(d[:, 0], two) + np.power(d[:, 1], two),
                                        half))][:-1]
    ends = shapely.get_coordinates(shapely.line_interpolate_point(line, bounds))
    parts, owner = [], []
    for k in range(len(bounds) - 1):
        inner = xy[:-1][(cum > max(bounds[k], 0.0)) & (cum < bounds[k + 1])]
        parts += [ends[k:k + 1], inner, ends[k + 1:k + 2]]
        owner.append(np.full(len(inner) + 2, k))
    if not parts:
        return np.array([], dtype=object)
    return shapely.linestrings(np.concatenate(parts), indices=np.concatenate(owner))


def _node(reaches: gpd.GeoDataFrame, settings: st.Settings) -> gpd.GeoDataFrame:
    """Split reaches at T-junctions and snap nearby endpoints together."""
    tol = settings.snap_tolerance_m
    g = _arr(reaches)
    if len(g) == 0:
        return reaches
    # 1. T-junctions: an endpoint near another reach's interior splits that reach
    exy = np.concatenate(line_ends(g))
    owner = np.concatenate([np.arange(len(g)), np.arange(len(g))])
    # ends within tol of other reaches, and where on them (the nearest point, as
    # line_locate_point gives it: the smallest distance, ties to the earlier position)
    index = SegmentIndex(g, 10 * max(tol, 1.0))
    # ends shared by several reaches (a junction: most ends) are searched once
    uq, inv = np.unique(np.ascontiguousarray(exy).view(np.complex128).ravel(),
                        return_inverse=True)
    ui, sj, d, pos = _pairs_in_chunks(index, np.column_stack([uq.real, uq.imag]), tol)
    inv = inv.ravel()
    by_point = np.argsort(inv, kind="stable")  # ends grouped by their point
    count = np.bincount(inv, minlength=len(uq))
    first_end = np.cumsum(count) - count
    rep = count[ui]
    pair = np.repeat(np.arange(len(ui)), rep)
    k = np.arange(int(rep.sum())) - np.repeat(np.cumsum(rep) - rep, rep)
    ei = by_point[first_end[ui][pair] + k]
    sj, d, pos = sj[pair], d[pair], pos[pair]
    gj = index.owner[sj]
    m = gj != owner[ei]
    ei, gj, d, pos = ei[m], gj[m], d[m], pos[m]
    o = np.lexsort((pos, d, gj, ei))
    o = o[np.r_[True, (ei[o][1:] != ei[o][:-1]) | (gj[o][1:] != gj[o][:-1])]] if len(o) else o
    ei, gj, pos = ei[o], gj[o], pos[o]
    lengths = shapely.length(g)
    interior = (pos > tol) & (pos < lengths[gj] - tol)
    cuts: dict[int, list[float]] = {}
    for j, p in zip(gj[interior], pos[interior]):
        cuts.setdefault(int(j), []).append(float(p))
    ids = reaches.reach_id.to_numpy()
    rows = []
    for i in sorted(cuts):
        cs = sorted(set(round(c, 3) for c in cuts[i]))
        bounds = [0.0] + cs + [float(lengths[i])]
        for k, piece in enumerate(split_line(g[i], bounds)):
            if piece.length > 0:
                rows.append((i, f"{ids[i]}.{k + 1}", piece))
    is_cut = np.zeros(len(g), bool)
    is_cut[np.fromiter(cuts, int, count=len(cuts))] = True
    uncut = np.flatnonzero(~is_cut)
    src = np.concatenate([uncut, np.array([r[0] for r in rows], dtype=int)])
    order = np.argsort(src, kind="stable")  # keep input order, pieces in sequence
    src = src[order]
    new_ids = np.concatenate([ids[uncut], np.array([r[1] for r in rows], dtype=object)])[order]
    new_g = np.concatenate([g[uncut], np.array([r[2] for r in rows], dtype=object)])[order]
    out = reaches.iloc[src].reset_index(drop=True).copy()
    out["reach_id"] = new_ids
    out = out.set_geometry(gpd.GeoSeries(new_g, crs=reaches.crs).values)
    # 2. snap endpoints within tol into nodes
    g = _arr(out)
    pts = np.vstack(line_ends(g))
    pairs = kdtree(pts).query_pairs(tol, output_type="ndarray")
    n = len(pts)
    adj = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) \
        if len(pairs) else sparse.coo_matrix((n, n))
    _, lab = csgraph.connected_components(adj, directed=False)
    # node coordinate: the first endpoint (lowest index) of each cluster
    _, first = np.unique(lab, return_index=True)
    node_xy = pts[first[lab]]
    # rebuild only the lines with an end moved (a new geometry costs ~1.5 µs; where
    # reaches already share their end points, as in most networks, none is)
    moved = (node_xy != pts).any(axis=1)
    moved = np.flatnonzero(moved[: len(g)] | moved[len(g):])
    if len(moved):
        gm = g[moved]
        coords = shapely.get_coordinates(gm)
        counts = shapely.get_num_points(gm)
        offs = np.concatenate([[0], np.cumsum(counts)])
        coords[offs[:-1]] = node_xy[moved]
        coords[offs[1:] - 1] = node_xy[len(g) + moved]
        new = np.array(g, dtype=object)
        new[moved] = shapely.linestrings(coords, indices=np.repeat(np.arange(len(gm)), counts))
        out = out.set_geometry(gpd.GeoSeries(new, crs=out.crs).values)
    # one key per node (cluster), not per endpoint
    cluster_keys = node_keys(pts[first])
    _, cl = np.unique(lab, return_inverse=True)
    keys = cluster_keys[cl]
    out["u"] = keys[: len(g)]
    out["v"] = keys[len(g):]
    degenerate = out.u == out.v
    if degenerate.any():  # both ends snapped together: a loop of one reach
        out = out[~degenerate | (shapely.length(_arr(out)) > 2 * tol)]
    return out.reset_index(drop=True)


def node_keys(xy: np.ndarray) -> np.ndarray:
    """Stable node ids from coordinates (metres, rounded to 1 cm): 16 hex digits.

    A 64-bit mix (splitmix64) of the rounded coordinates, vectorised: a million
    nodes in well under a second, and a chance of two nodes sharing an id of
    about 3e-8 (48-bit ids, as sha1 prefixes of 12 digits, would collide with
    probability 0.2% at that size).
    """
    if len(xy) == 0:
        return np.array([], dtype=object)
    q = np.round(np.asarray(xy, float) * 100).astype(np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        z = q[:, 0] * np.uint64(0x9E3779B97F4A7C15) + q[:, 1]
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    # 16 hex digits per key, built as bytes in numpy (a format string per node
    # costs a second per million nodes)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nibbles = ((z[:, None] >> shifts) & np.uint64(15)).astype(np.uint8)
    text = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]
    return np.ascontiguousarray(text).view("S16").ravel().astype("U16").astype(object)


# ---------------------------------------------------------------------------
# orientation
# ---------------------------------------------------------------------------
def _edge_ends(xy: np.ndarray, counties: gpd.GeoDataFrame, tol: float) -> np.ndarray:
    """True where a position is at the outer edge of the county layer (coast or study edge)."""
    if len(xy) == 0:
        return np.zeros(0, bool)
    k = 16
    ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
    ring = xy[:, None, :] + tol * np.stack([np.cos(ang), np.sin(ang)], axis=1)[None, :, :]
    probes = np.vstack([xy, ring.reshape(-1, 2)])
    hit = np.zeros(len(probes), bool)
    hit[points_in_polygons(probes, _arr(counties))[0]] = True
    centre_out = ~hit[: len(xy)]
    ring_out = (~hit[len(xy):]).reshape(len(xy), k).sum(axis=1)
    return centre_out | (ring_out >= 2)


def graph_from_reaches(
    reaches: gpd.GeoDataFrame,
    counties: gpd.GeoDataFrame,
    orientation: str = "auto",
    dem: Dem | None = None,
    outlets: gpd.GeoDataFrame | None = None,
    settings: st.Settings = st.DEFAULT,
    water: gpd.GeoDataFrame | None = None,
) -> nx.MultiDiGraph:
    """Orient noded reaches into a directed flow graph.

    The same as ``orient_reaches(...).to_graph()``; see :func:`orient_reaches` for
    the parameters and :meth:`OrientedNetwork.to_graph` for the graph's attributes.
    """
    return orient_reaches(reaches, counties, orientation, dem, outlets, settings,
                          water).to_graph()


@dataclass
class OrientedNetwork:
    """Oriented reaches and their nodes: the flow graph as two tables.

    Discovery works on these arrays; :meth:`to_graph` builds the networkx graph
    (which costs seconds on a million reaches) only when someone asks for it.

    Attributes
    ----------
    edges
        One row per reach, pointing downstream (analysis CRS): ``reach_id``,
        ``river``, ``u``, ``v``, ``length``, ``orientation``, ``orientation_flag``,
        ``reversed``, ``source_row``, ``virtual`` (a link across a water body
        drawn only as an area), geometry.
    nodes
        One row per node: ``node``, ``x``, ``y``, ``end``, ``outlet``, ``elevation``.
    crs, orientation
        Analysis CRS and the strategy used.
    """

    edges: gpd.GeoDataFrame
    nodes: pd.DataFrame
    crs: str
    orientation: str

    def to_graph(self) -> nx.MultiDiGraph:
        """The flow graph (osmnx style): nodes carry ``x``/``y``, edges ``geometry``."""
        G = nx.MultiDiGraph(crs=self.crs, orientation=self.orientation)
        n = self.nodes
        G.add_nodes_from(
            (k, {"x": x, "y": y, "end": e, "outlet": o, "elevation": z})
            for k, x, y, e, o, z in zip(n.node.tolist(), n.x.tolist(), n.y.tolist(),
                                        n.end.tolist(), n.outlet.tolist(),
                                        n.elevation.tolist()))
        e = self.edges
        G.add_edges_from(
            (u, v, r, {"reach_id": r, "geometry": geom, "length": ln, "river": rv,
                       "source_row": int(sr), "orientation": me, "orientation_flag": fl,
                       "reversed": rev, "virtual": vt})
            for u, v, r, geom, ln, rv, sr, me, fl, rev, vt in zip(
                e.u.tolist(), e.v.tolist(), e.reach_id.tolist(), _arr(e), e.length.tolist(),
                e.river.tolist(), e.source_row.tolist(), e.orientation.tolist(),
                e.orientation_flag.tolist(), e.reversed.tolist(), e.virtual.tolist()))
        return G

    @classmethod
    def from_graph(cls, G: nx.MultiDiGraph) -> "OrientedNetwork":
        """The tables of a flow graph (e.g. one edited by hand in networkx)."""
        nodes = pd.DataFrame(
            [dict(node=k, x=d.get("x"), y=d.get("y"), end=d.get("end", ""),
                  outlet=bool(d.get("outlet", False)), elevation=d.get("elevation", np.nan))
             for k, d in G.nodes(data=True)],
            columns=["node", "x", "y", "end", "outlet", "elevation"])
        return cls(reaches_from_graph(G), nodes, G.graph["crs"],
                   G.graph.get("orientation", ""))


def orient_reaches(
    reaches: gpd.GeoDataFrame,
    counties: gpd.GeoDataFrame,
    orientation: str = "auto",
    dem: Dem | None = None,
    outlets: gpd.GeoDataFrame | None = None,
    settings: st.Settings = st.DEFAULT,
    water: gpd.GeoDataFrame | None = None,
) -> OrientedNetwork:
    """Orient noded reaches: which way each one flows, and why.

    Parameters
    ----------
    reaches
        Output of :func:`reaches_from_rivers` (analysis CRS, columns ``u``, ``v``).
    counties
        County layer in the analysis CRS; its outer edge tells where networks end
        at the coast or the edge of the study area.
    orientation
        ``auto``, ``digitised``, ``outlets`` or ``dem`` (see module docstring).
    dem
        Elevation grid in WGS84 (:class:`basins.read.Dem`), for ``dem``/``auto``.
    outlets
        User-given outlet points; a network with one near it uses only those.
    settings
        Tolerances.
    water
        Optional lake polygons: a network end on a lake shore is a candidate outlet
        (a river flowing into a lake), like an end at the coast or study edge.

    Returns
    -------
    OrientedNetwork
        Nodes: ``x``, ``y``, ``end`` (``edge``/``lake``/``inland``/``""``), ``outlet``,
        ``elevation`` (NaN without DEM). Edges (reaches, by ``reach_id``), pointing
        downstream: ``geometry``, ``length``, ``river``, ``source_row``,
        ``orientation`` (strategy that set it), ``orientation_flag`` (why it is
        uncertain, or ``""``), ``reversed`` (against the digitisation). Its
        :meth:`~OrientedNetwork.to_graph` is the networkx graph (``G.graph`` holds
        ``crs`` and ``orientation``).
    """
    if orientation not in st.ORIENTATIONS:
        raise BasinsInputError(
            f"orientation {orientation!r} unknown; use one of {', '.join(st.ORIENTATIONS)}."
        )
    if orientation == "dem" and dem is None:
        raise BasinsInputError("orientation 'dem' needs a DEM (--dem PATH).")
    strategy = orientation
    if orientation == "auto":
        strategy = "dem" if dem is not None else "outlets"
    crs = reaches.crs
    # node codes in order of first appearance (as pd.unique), without a dict lookup per reach
    codes, nodes = pd.factorize(np.concatenate([reaches.u.to_numpy(), reaches.v.to_numpy()]))
    nodes = np.asarray(nodes, dtype=object)
    ui, vi = codes[: len(reaches)], codes[len(reaches):]
    g = _arr(reaches)
    length = shapely.length(g)
    xy = np.zeros((len(nodes), 2))
    xy[ui], xy[vi] = line_ends(g)
    deg = np.bincount(np.concatenate([ui, vi]), minlength=len(nodes))
    terminal = deg == 1
    end_kind = np.array([""] * len(nodes), dtype=object)
    t_idx = np.flatnonzero(terminal)
    at_edge = _edge_ends(xy[t_idx], project_gdf(counties, crs), settings.edge_tolerance_m)
    end_kind[t_idx] = np.where(at_edge, "edge", "inland")
    virtual = reaches["virtual"].to_numpy(bool) if "virtual" in reaches else \
        np.zeros(len(reaches), bool)
    hub = np.zeros(len(nodes), bool)
    if virtual.any():  # hubs of water links (decided below whether they may be outlets)
        real_deg = np.bincount(np.concatenate([ui[~virtual], vi[~virtual]]), minlength=len(nodes))
        hub = (deg >= 2) & (real_deg == 0)
    if water is not None and len(water):
        # (not repaired: a distance is the same to an invalid polygon, and GEOS
        # computes it without complaint; make_valid here cost ~40 ms nationally)
        lakes = _arr(project_gdf(water, crs))
        lakes = lakes[~(shapely.is_missing(lakes) | shapely.is_empty(lakes))]
        inl = t_idx[~at_edge]
        if len(inl) and len(lakes):
            hit, _ = shapely.STRtree(lakes).query(shapely.points(xy[inl]), predicate="dwithin",
                                                  distance=settings.edge_tolerance_m)
            end_kind[inl[np.unique(hit)]] = "lake"
    elev = np.full(len(nodes), np.nan)
    if dem is not None:
        lonlat = project_gdf(gpd.GeoSeries(shapely.points(xy), crs=crs), st.OUTPUT_CRS)
        elev = dem.sample(lonlat.x.to_numpy(), lonlat.y.to_numpy())
    n = len(nodes)
    adj = sparse.coo_matrix(
        (np.concatenate([length, length]), (np.concatenate([ui, vi]), np.concatenate([vi, ui]))),
        shape=(n, n)).tocsr()
    ncomp, comp = csgraph.connected_components(adj, directed=False)
    if hub.any():
        # a water body the links pass through is an outlet candidate (a terminal
        # lake) only where the network has no other end at a coast, edge or lake
        has_end = np.zeros(ncomp, bool)
        has_end[comp[np.isin(end_kind, ("edge", "lake"))]] = True
        end_kind[hub & ~has_end[comp]] = "lake"
    is_outlet = np.zeros(n, bool)
    comp_flag = np.array([""] * ncomp, dtype=object)
    user_out = np.zeros(n, bool)
    if outlets is not None and len(outlets):
        opts = shapely.get_coordinates(_arr(project_gdf(outlets, crs)))
        d, k = cKDTree(xy).query(opts)
        user_out[k[d <= settings.outlet_snap_m]] = True
    is_end = np.isin(end_kind, ("edge", "lake"))
    is_inland = end_kind == "inland"
    by_comp = np.argsort(comp, kind="stable")  # members of each component, no O(n²) scans
    bounds = np.searchsorted(comp[by_comp], np.arange(ncomp + 1))
    for c in range(ncomp):
        members = by_comp[bounds[c]:bounds[c + 1]]
        if strategy == "digitised":
            continue
        if user_out[members].any():
            is_outlet[members[user_out[members]]] = True
            continue
        ends = members[is_end[members]]
        if strategy == "dem":
            inland = members[is_inland[members]]
            zi = elev[inland]
            low_inland = inland[np.nanargmin(zi)] if np.isfinite(zi).any() else None
            # candidates: ends at the coast or study edge, and an inland end at sea level
            # (a mouth short of the coastline: the delta has grown since it was mapped)
            cand = ends
            if low_inland is not None and elev[low_inland] <= settings.coast_elevation_m:
                cand = np.append(ends, low_inland)
            zc = elev[cand]
            if len(cand) and np.isfinite(zc).any():
                is_outlet[cand[np.nanargmin(zc)]] = True
                is_outlet[cand[np.nan_to_num(zc, nan=np.inf) <= settings.coast_elevation_m]] = True
                continue
            if low_inland is not None:
                is_outlet[low_inland] = True
                if elev[low_inland] > settings.coast_elevation_m:
                    comp_flag[c] = "outlet is an inland network end (terminal lake?) chosen by DEM"
                continue
        if len(ends):
            is_outlet[ends] = True  # with several, divide reaches are flagged below
        else:
            comp_flag[c] = ("no outlet found (no network end at the coast, a lake or the study "
                            "edge): as digitised")
    flags = np.array([""] * len(reaches), dtype=object)
    method = np.array([strategy] * len(reaches), dtype=object)
    forward = np.ones(len(reaches), bool)
    if strategy != "digitised" and is_outlet.any():
        out_idx = np.flatnonzero(is_outlet)
        dist, _, src = csgraph.dijkstra(adj, directed=False, indices=out_idx, min_only=True,
                                        return_predecessors=True)
        du, dv = dist[ui], dist[vi]
        reachable = np.isfinite(du) & np.isfinite(dv)
        forward = np.where(reachable, du >= dv, True)
        tie = reachable & np.isclose(du, dv)
        divide = reachable & (src[ui] != src[vi])
        flags[divide] = "ambiguous: divide between two outlets (canal or distributary?)"
        flags[tie & ~divide] = "ambiguous: equal distance to the outlet both ways"
        in_loop = _non_bridges(ui, vi, n)
        flags[in_loop & (flags == "")] = "uncertain: reach in a loop (braided channel or canal)"
        unreach = ~reachable
        flags[unreach] = "no outlet found (no network end at the coast or study edge): as digitised"
        method[unreach] = "digitised"
    edge_flag = comp_flag[comp[ui]]
    has = (edge_flag != "") & (flags == "")
    flags[has] = edge_flag[has]
    method[np.char.startswith(edge_flag.astype(str), "no outlet")] = "digitised"
    # oriented geometry and DEM check
    geoms = np.array(g, dtype=object)  # (reversing only the lines that need it)
    back = np.flatnonzero(~forward)
    geoms[back] = shapely.reverse(geoms[back])
    up = np.where(forward, ui, vi)
    dn = np.where(forward, vi, ui)
    if dem is not None:
        rise = elev[dn] - elev[up]
        contra = np.isfinite(rise) & (rise > settings.dem_contradiction_m)
        flags[contra & (flags == "")] = "contradicts DEM (downstream end higher)"
    nodes_df = pd.DataFrame({"node": nodes, "x": xy[:, 0], "y": xy[:, 1], "end": end_kind,
                             "outlet": is_outlet, "elevation": elev})
    edges = gpd.GeoDataFrame({
        "reach_id": reaches.reach_id.to_numpy(), "river": reaches.river.to_numpy(),
        "u": nodes[up], "v": nodes[dn], "length": length, "orientation": method,
        "orientation_flag": flags, "reversed": ~forward,
        "source_row": reaches.source_row.to_numpy().astype(np.int64), "virtual": virtual},
        geometry=gpd.GeoSeries(geoms, crs=crs).values, crs=crs)
    return OrientedNetwork(edges, nodes_df, crs, strategy)


def _non_bridges(ui: np.ndarray, vi: np.ndarray, n: int) -> np.ndarray:
    """True for edges that lie on a cycle of the undirected (multi)graph.

    River networks are nearly trees, so: take a BFS spanning forest (scipy), then
    every edge outside it closes a cycle, and the cycle is that edge plus the tree
    path between its ends (walked up to the lowest common ancestor). Parallel
    edges and self-loops are cycles by themselves. Linear in the edges plus the
    length of the cycles.
    """
    m = len(ui)
    on = np.zeros(m, bool)
    if m == 0:
        return on
    a, b = np.minimum(ui, vi), np.maximum(ui, vi)
    on[a == b] = True
    key = a.astype(np.int64) * n + b
    uniq, first, count = np.unique(key, return_index=True, return_counts=True)
    on[np.isin(key, uniq[count > 1])] = True  # parallel edges
    ua, ub = a[first], b[first]
    keep = ua != ub
    ua, ub, eid = ua[keep], ub[keep], first[keep]
    adj = sparse.coo_matrix((np.ones(len(ua)), (ua, ub)), shape=(n, n)).tocsr()
    _, comp = csgraph.connected_components(adj, directed=False)
    _, roots = np.unique(comp, return_index=True)
    # one BFS from a virtual root (node n) joined to one node of every component
    big = sparse.coo_matrix((np.ones(len(ua) + len(roots)),
                             (np.concatenate([ua, np.full(len(roots), n)]),
                              np.concatenate([ub, roots]))), shape=(n + 1, n + 1)).tocsr()
    order, pred = csgraph.breadth_first_order(big, n, directed=False, return_predecessors=True)
    parent = pred[:n].copy()
    parent[parent == n] = -1
    # depth in the tree by pointer jumping (log(depth) numpy passes, not a Python
    # loop over every node): each pass adds the depth of the ancestor reached so far
    depth = (parent >= 0).astype(np.int64)
    anc = parent.copy()
    while True:
        up = np.flatnonzero(anc >= 0)
        if len(up) == 0:
            break
        depth[up] += depth[anc[up]]
        anc[up] = anc[anc[up]]
    up_a = parent[ua] == ub
    tree = up_a | (parent[ub] == ua)
    # the tree edge from each node to its parent
    edge_up = np.full(n, -1, dtype=np.int64)
    edge_up[np.where(up_a, ua, ub)[tree]] = eid[tree]
    depth, parent, edge_up = depth.tolist(), parent.tolist(), edge_up.tolist()
    cyc = []
    for x, y, e in zip(ua[~tree].tolist(), ub[~tree].tolist(), eid[~tree].tolist()):
        cyc.append(e)
        while x != y:  # climb to the common ancestor, collecting tree edges
            if depth[x] < depth[y]:
                x, y = y, x
            cyc.append(edge_up[x])
            x = parent[x]
    hit = np.zeros(m, bool)
    hit[np.asarray(cyc, dtype=int)] = True
    # map back: every copy of a cycle edge's node pair is on the cycle
    on |= np.isin(key, key[hit])
    return on


def reaches_from_graph(G: nx.MultiDiGraph) -> gpd.GeoDataFrame:
    """The graph's edges as a GeoDataFrame of oriented reaches (analysis CRS)."""
    rows = [dict(u=u, v=v, **d) for u, v, d in G.edges(data=True)]
    cols = ["reach_id", "river", "u", "v", "length", "orientation", "orientation_flag",
            "reversed", "source_row", "virtual", "geometry"]
    df = pd.DataFrame(rows, columns=cols)
    df["virtual"] = df["virtual"].fillna(False).astype(bool)
    return gpd.GeoDataFrame(df, geometry="geometry", crs=G.graph["crs"])
