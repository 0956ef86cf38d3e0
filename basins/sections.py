"""Discover every cross-boundary section (断面) on a directed flow graph.

How it works
------------
1. The flow graph is cut into *chains*: maximal runs of reaches between
   confluences, bifurcations and network ends.
2. Each chain is sampled every ``sample_step_m``. A sample lies in county A when A
   is the only county within ``boundary_tolerance_m``; it lies on the border A|B
   when A and B are the two nearest counties within the tolerance; it lies
   outside when no county is that close.
3. Consecutive samples with one label form *runs*. Runs shorter than
   ``min_run_m`` (in a county) or ``min_boundary_run_m`` (along a border) are
   absorbed by their neighbours, so a river crossing a border, or meandering over
   it, yields one section.
4. A section is every change of label downstream, inside a chain or across a
   node: ``crossing`` (A → B), ``joins_border`` (A → A|B), ``leaves_border``
   (A|B → B) and ``border_change`` (A|B → A|C). A border side has two parties,
   the left and right bank looking downstream, with shares 1/2 each.
5. A crossing is then placed where the river passes from A into B (on their
   border, or in the middle of a gap or overlap between them), the passage
   nearest the label change; one at a confluence may lie just above it (on the
   incoming river) or below it, and stays the confluence's section for
   navigation. Its flags say when no passage is seen near, or when the passage
   runs far through neither county (a third county, named). The other kinds stay
   at the label change (where the river comes within, or goes beyond,
   ``boundary_tolerance_m``).

The result is a :class:`Discovery` holding the ``sections``, ``boundary_rivers``,
``reaches`` and ``qa`` layers, the flow graph and the section graph for navigation.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from . import settings as st
from . import network as _network
from .network import (QA_COLUMNS, OrientedNetwork, column_bounds, first_of_groups, kdtree,
                      line_ends, pair_distances, points_in_polygons, reaches_from_graph,
                      polygons_contain_xy, sample_lines, thread_map)
from .read import analysis_crs_for, project_gdf

OUTSIDE = -1
#: label of samples on virtual links across water bodies (county unknown there)
VIRTUAL = -2

SECTION_COLUMNS = [
    "section_id", "river", "kind", "level", "upstream_ids", "downstream_ids",
    "upstream_names", "downstream_names", "upstream_shares", "downstream_shares",
    "upstream_city", "downstream_city", "upstream_province", "downstream_province",
    "reach_id", "flags", "geometry",
]


@dataclass(slots=True)
class Run:
    """A stretch of one chain with one label: a county, or a border pair."""

    a: int  # county index, or OUTSIDE
    b: int  # second county index for a border pair, else -1
    start: float
    end: float
    left: int = -1  # for a pair: county on the left bank looking downstream
    right: int = -1

    @property
    def is_pair(self) -> bool:
        return self.b >= 0

    @property
    def label(self) -> tuple[int, int]:
        return (self.a, self.b)

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class Chain:
    """Reaches in flow order between two junctions or ends of the network."""

    cid: int
    u: str
    v: str
    reach_ids: list[str]
    offsets: np.ndarray  # start distance of each reach along the chain
    geometry: shapely.LineString
    river: str
    runs: list[Run] = field(default_factory=list)
    #: (start, end) along the chain of virtual links across water bodies
    virtual: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Discovery:
    """Everything section discovery found.

    Attributes
    ----------
    sections
        One row per section (columns in :data:`SECTION_COLUMNS`), EPSG:4326.
    boundary_rivers
        Boundary stretches (界河) with ``left_ids``/``right_ids``, EPSG:4326.
    reaches
        Oriented reaches with orientation method and flags, EPSG:4326.
    qa
        One row per input reach and county: used, merged, excluded or flagged.
    network
        The oriented reaches and nodes (analysis CRS).
    graph
        The directed flow graph (networkx, analysis CRS), built from ``network``
        the first time it is asked for.
    section_graph
        Directed graph of sections: an edge X → Y when Y is the next section
        downstream of X.
    """

    sections: gpd.GeoDataFrame
    boundary_rivers: gpd.GeoDataFrame
    reaches: gpd.GeoDataFrame
    qa: pd.DataFrame
    network: OrientedNetwork
    section_graph: nx.DiGraph
    counties: gpd.GeoDataFrame
    chains: list[Chain] = field(repr=False, default_factory=list)
    _section_pos: dict = field(repr=False, default_factory=dict)

    @cached_property
    def graph(self) -> nx.MultiDiGraph:
        """The directed flow graph (networkx), built on first use."""
        return self.network.to_graph()

    def downstream_sections(self, section_id: str) -> list[str]:
        """The next sections downstream of ``section_id`` (several below a bifurcation)."""
        return sorted(self.section_graph.successors(section_id))

    def upstream_sections(self, section_id: str) -> list[str]:
        """The sections immediately upstream of ``section_id``."""
        return sorted(self.section_graph.predecessors(section_id))

    def counties_draining_to(self, section_id: str) -> list[str]:
        """Ids of the counties the river network passes through upstream of a section.

        This is the set of counties whose rivers reach the section along the
        network (a proxy for the catchment at the scale of the river layer).
        """
        cid, s, via = self._section_pos[section_id]
        ids: set[int] = set()
        chains_by_v: dict[str, list[Chain]] = defaultdict(list)
        for c in self.chains:
            chains_by_v[c.v].append(c)
        start = [self.chains[via]] if via is not None else []
        if via is None:
            for r in self.chains[cid].runs:
                if r.start < s:
                    ids.update(x for x in (r.a, r.b) if x >= 0)
            start = chains_by_v[self.chains[cid].u]
        seen: set[int] = set()
        stack = list(start)
        while stack:
            c = stack.pop()
            if c.cid in seen:
                continue
            seen.add(c.cid)
            for r in c.runs:
                ids.update(x for x in (r.a, r.b) if x >= 0)
            stack.extend(chains_by_v[c.u])
        return sorted(self.counties.county_id.iloc[list(ids)].tolist())


# ---------------------------------------------------------------------------
# chains
# ---------------------------------------------------------------------------
def chains_from_graph(G: nx.MultiDiGraph) -> list[Chain]:
    """Cut the flow graph into chains between junctions and ends (see :func:`chains_from_reaches`)."""
    return chains_from_reaches(reaches_from_graph(G))


def chains_from_reaches(edges: gpd.GeoDataFrame) -> list[Chain]:
    """Cut oriented reaches (``reach_id``, ``u``, ``v``, ``river``, geometry) into chains.

    A chain runs between junctions and ends of the network. A node is passed
    through when it has one reach in, one reach out and both carry the same river
    name (a change of name starts a new chain). Array-based: one pass over the
    reaches, chain geometries built with a single ``linestrings`` call.
    """
    if len(edges) == 0:
        return []
    order = np.argsort(edges.reach_id.to_numpy().astype(str), kind="stable")
    keys = edges.reach_id.to_numpy()[order]
    codes, names = pd.factorize(np.concatenate([edges.u.to_numpy()[order],
                                                edges.v.to_numpy()[order]]))
    names = np.asarray(names, dtype=object)
    ui, vi = codes[: len(order)], codes[len(order):]
    # names: anything not text (missing) is no name, "" (the reader gives "" already;
    # cleaned among the distinct names, not per reach)
    fcode, fnames = pd.factorize(edges.river.to_numpy()[order].astype(object))  # missing: -1
    river = np.array([r if isinstance(r, str) else "" for r in fnames] + [""],
                     dtype=object)[fcode]
    geoms = np.asarray(edges.geometry.array, dtype=object)[order]
    n_e, n_n = len(order), len(names)
    indeg = np.bincount(vi, minlength=n_n)
    outdeg = np.bincount(ui, minlength=n_n)
    out_edge = np.full(n_n, -1)
    out_edge[ui] = np.arange(n_e)
    in_edge = np.full(n_n, -1)
    in_edge[vi] = np.arange(n_e)
    through = (indeg == 1) & (outdeg == 1)
    t_idx = np.flatnonzero(through)
    through[t_idx] = river[in_edge[t_idx]] == river[out_edge[t_idx]]
    nxt = np.where(through[vi], out_edge[vi], -1)
    # chains by pointer jumping (numpy, log2 of the longest chain in passes):
    # every reach finds the first reach of its chain and its position in it
    prv = np.full(n_e, -1)
    prv[nxt[nxt >= 0]] = np.flatnonzero(nxt >= 0)
    head = np.where(prv < 0, np.arange(n_e), prv)
    depth = (prv >= 0).astype(np.int64)
    for _ in range(int(np.ceil(np.log2(max(n_e, 2)))) + 1):  # enough for a chain of n_e
        more = prv[head] >= 0
        if not more.any():
            break
        depth = np.where(more, depth + depth[head], depth)
        head = np.where(more, head[head], head)
    # reaches whose predecessors run round in a circle have no first reach: closed
    # loops of through-nodes, walked one by one (rare)
    looped = prv[head] >= 0
    order_e = np.lexsort((depth, head))
    order_e = order_e[~looped[order_e]]
    starts = np.flatnonzero(np.r_[True, head[order_e][1:] != head[order_e][:-1]]) \
        if len(order_e) else np.zeros(0, dtype=np.int64)
    seq_len = np.diff(np.r_[starts, len(order_e)]).tolist()
    loops: list[list[int]] = []
    used = ~looped
    for e in np.flatnonzero(looped).tolist():
        if not used[e]:
            seq = [e]
            used[e] = True
            while nxt[e] >= 0 and not used[nxt[e]]:
                e = int(nxt[e])
                used[e] = True
                seq.append(e)
            loops.append(seq)
    # geometry of every chain at once; chain k is flat[bounds[k]:bounds[k + 1]]
    flat = np.concatenate([order_e] + [np.array(q) for q in loops]).astype(np.int64)
    seq_len = np.array(seq_len + [len(q) for q in loops], dtype=np.int64)
    n_chains = len(seq_len)
    chain_of = np.repeat(np.arange(n_chains), seq_len)
    first = np.ones(n_e, bool)
    first[1:] = chain_of[1:] != chain_of[:-1]
    coords, _ = shapely.get_coordinates(geoms, return_index=True)
    npts = shapely.get_num_points(geoms)
    off = np.concatenate([[0], np.cumsum(npts)])
    lo = off[flat] + (~first).astype(int)  # drop the joint vertex repeated by the next reach
    cnt = off[flat + 1] - lo
    gather = np.repeat(lo - np.concatenate([[0], np.cumsum(cnt)[:-1]]), cnt) + np.arange(cnt.sum())
    lines = shapely.linestrings(np.take(coords, gather, axis=0),
                                indices=np.repeat(chain_of, cnt))
    lengths = shapely.length(geoms[flat])
    csum = np.cumsum(lengths)
    chain_start = np.flatnonzero(first)
    before = np.repeat(csum[chain_start] - lengths[chain_start], seq_len)
    offsets_all = csum - lengths - before
    # a chain's name: the most common non-empty name of its reaches (most chains
    # have one name throughout: decided with arrays, the vote only for the others)
    rcode, runiq = pd.factorize(river[flat], sort=True)
    lo_c = np.minimum.reduceat(rcode, chain_start) if n_e else rcode
    hi_c = np.maximum.reduceat(rcode, chain_start) if n_e else rcode
    uniform = (lo_c == hi_c).tolist()
    runiq = np.asarray(runiq, dtype=object)
    virtual = edges["virtual"].to_numpy(bool)[order] if "virtual" in edges else \
        np.zeros(n_e, bool)
    has_virtual = bool(virtual.any())
    chains: list[Chain] = []
    flat_keys = keys[flat].tolist()
    chain_u = names[ui[flat[chain_start]]].tolist()
    chain_v = names[vi[flat[np.r_[chain_start[1:], n_e] - 1]]].tolist()
    chain_name = runiq[lo_c].tolist()
    bounds = np.r_[chain_start, n_e].tolist()
    for cid in range(n_chains):
        p0, p1 = bounds[cid], bounds[cid + 1]
        if uniform[cid]:
            name = chain_name[cid]
        else:
            named = [r for r in river[flat[p0:p1]] if r]
            name = max(set(named), key=lambda r: (named.count(r), r)) if named else ""
        offs = offsets_all[p0:p1]
        spans = [(float(offs[j]), float(offs[j] + lengths[p0 + j]))
                 for j in np.flatnonzero(virtual[flat[p0:p1]]).tolist()] if has_virtual else []
        chains.append(Chain(cid, chain_u[cid], chain_v[cid], flat_keys[p0:p1], offs, lines[cid],
                            name, virtual=spans))
    return chains


# ---------------------------------------------------------------------------
# labelling
# ---------------------------------------------------------------------------
#: counties cut into outline segments this many at a time, and vertices put in the
#: outline grid this many at a time (see :class:`CountyOutlines`)
_OUTLINE_CHUNK = 64
_OUTLINE_CHUNK_VERTICES = 1 << 16


def _outline_room(counties: np.ndarray, max_len: float) -> int:
    """How many outline vertices ``counties`` can have once densified to ``max_len``:
    a segment of length L becomes ceil(L / max_len) <= L / max_len + 1 pieces, so
    a ring gains at most its length over ``max_len`` (a bound, with a margin for
    rounding; :class:`CountyOutlines` grows its arrays should it ever be short)."""
    length = shapely.length(counties)
    return int(shapely.get_num_coordinates(counties).sum()
               + np.sum(length[np.isfinite(length)]) / max_len) + 16

class CountyOutlines:
    """County outlines as two-point segments of at most ``max_len``, for near searches.

    County outlines have millions of vertices and a river passes near few of them:
    the outlines are cut into segments once per county layer (nationally ~0.2 s;
    :func:`basins.discover.discover` does it while the rivers are cleaned), and
    each search keeps the segments near its points before any distance is computed.

    The outlines are held lean, as one array of vertices (ring after ring) with
    each vertex's county and whether a segment starts at it: nationally 1.68M
    vertices in ~36 MB, built a few counties at a time, so that GEOS's copies of
    the rings never exist for the whole layer at once (building them for all of
    it at once peaked ~150 MB above the layer; on a machine where fresh memory is
    slow to come by, as on the project's VMs, that cost more than the work).

    Parameters
    ----------
    counties
        County polygons (analysis CRS); ``owner`` indexes this array.
    max_len
        Longest segment (outlines are densified as GEOS ``segmentize`` does).
    """

    def __init__(self, counties: np.ndarray, max_len: float) -> None:
        counties = np.asarray(counties, dtype=object)
        room = _outline_room(counties, max_len)
        coords = np.empty((room, 2))
        owner = np.empty(room, dtype=np.int32)
        starts = np.empty(room, dtype=bool)
        n = 0
        for a in range(0, len(counties), _OUTLINE_CHUNK):
            parts, part_of = shapely.get_parts(counties[a:a + _OUTLINE_CHUNK], return_index=True)
            rings, ring_of = shapely.get_rings(parts, return_index=True)
            rings = shapely.segmentize(rings, max_len)
            xy = shapely.get_coordinates(rings)
            per = shapely.get_num_coordinates(rings)
            if n + len(xy) > len(coords):  # (only if the room above was short: grow)
                grow = max(2 * len(coords), n + len(xy))
                coords, owner, starts = (np.concatenate([v[:n], np.empty((grow - n,) + v.shape[1:],
                                                                        v.dtype)])
                                         for v in (coords, owner, starts))
            coords[n:n + len(xy)] = xy
            owner[n:n + len(xy)] = np.repeat((part_of[ring_of] + a).astype(np.int32), per)
            ring_end = np.zeros(len(xy), bool)
            ring_end[np.cumsum(per[per > 0]) - 1] = True
            starts[n:n + len(xy)] = ~ring_end  # a segment starts at every vertex but a ring's last
            n += len(xy)
        #: the outline vertices, ring after ring
        self.coords = coords[:n]
        self._owner = owner[:n]  # county of each vertex
        self._starts = starts[:n]  # whether a segment starts at each vertex
        self.n_segments = int(np.count_nonzero(self._starts))
        self.max_len = float(max_len)
        self.n_counties = len(counties)
        self._grid: tuple | None = None  # see _grid_for

    @property
    def first(self) -> np.ndarray:
        """Index in :attr:`coords` of each segment's first vertex (the next vertex ends it)."""
        return np.flatnonzero(self._starts)

    @property
    def owner(self) -> np.ndarray:
        """County of each segment (in the order of :attr:`first`)."""
        return self._owner[self._starts].astype(np.int64)

    @classmethod
    def for_tolerance(cls, counties: np.ndarray, tol: float) -> "CountyOutlines":
        """Outlines for searches within ``tol``: segments of at most ``tol / 2``.

        The candidate reach is ``tol`` plus half the longest segment: segments up
        to ``tol`` long made it 1.5 ``tol``, half as long make it 1.25 ``tol``
        (nationally ~10% fewer candidates, labelling 0.40 -> 0.37 s), while few
        outline segments are long enough to be cut (the median is ~440 m).
        The grid of :meth:`near` for ``tol`` is laid out here too.
        """
        outlines = cls(counties, tol / 2)
        outlines._grid_for(tol)
        return outlines

    def _grid_for(self, tol: float) -> tuple:
        """The grid :meth:`near` uses, laid out for the first ``tol`` asked for.

        Cells of side ``tol + max_len``; the outline vertices' cells are worked
        out once (one pass over every vertex). Returns the grid's origin, cell
        side, shape, and each vertex's cell number.
        """
        if self._grid is None:
            cell = float(tol) + self.max_len
            c = self.coords
            lo, hi = column_bounds(c) if len(c) else (np.zeros(2), np.zeros(2))
            lo = lo - 2 * cell if len(c) else lo
            # (the last vertex cell, as the cells are computed below, and two more)
            shape = tuple(int(np.floor((h - o) / cell)) + 3 if len(c) else 3
                          for h, o in zip(hi.tolist(), lo.tolist()))
            key = np.empty(len(c), dtype=np.int32 if shape[0] * shape[1] < 2**31 else np.int64)
            for a in range(0, len(c), _OUTLINE_CHUNK_VERTICES):  # (small temporaries)
                vx = np.floor((c[a:a + _OUTLINE_CHUNK_VERTICES, 0] - lo[0]) / cell).astype(np.int64)
                vy = np.floor((c[a:a + _OUTLINE_CHUNK_VERTICES, 1] - lo[1]) / cell).astype(np.int64)
                key[a:a + _OUTLINE_CHUNK_VERTICES] = vx * shape[1] + vy
            self._grid = (lo, cell, shape, key)
        return self._grid

    def near(self, xy: np.ndarray, tol: float):
        """The segments that may lie within ``tol`` of a point.

        A segment is kept when one of its ends lies in a grid cell within ``k``
        cells of a point's cell, ``k`` cells spanning ``tol + max_len``: a segment
        within ``tol`` of a point has both ends within ``tol + max_len`` of it, so
        nothing near is lost. The grid is laid out once (:meth:`_grid_for`); a
        search costs one lookup a vertex.

        Returns
        -------
        start, end, owner
            Coordinates of the segments' ends, and the index of their county.
        """
        if len(xy) == 0 or self.n_segments == 0:
            return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, dtype=int)
        return self._segments_near_cells(self._cells(xy, tol), self._reach_cells(tol))

    def _reach_cells(self, tol: float) -> int:
        """``k``: how many cells of the grid span ``tol + max_len``."""
        cell = self._grid_for(tol)[1]
        return max(int(np.ceil((float(tol) + self.max_len) / cell)), 1)

    def _cells(self, xy: np.ndarray, tol: float) -> np.ndarray:
        """The grid cell (column, row) of each point, in the grid laid out for ``tol``."""
        lo, cell = self._grid_for(tol)[:2]
        return np.floor((xy - lo) / cell).astype(np.int64)

    def _cell_set(self, pc: np.ndarray, k: int):
        """Membership of the grid's cells within ``k`` cells of the cells ``pc``: a
        function from cell numbers to booleans (only cells of the grid count)."""
        nx, ny = self._grid[2]
        # points along lines come many to a cell: repeats of the cell before are
        # dropped (nationally 67k densified line vertices -> 17k)
        if len(pc) > 1:
            pc = pc[np.r_[True, (pc[1:, 0] != pc[:-1, 0]) | (pc[1:, 1] != pc[:-1, 1])]]
        keys = []
        for dx in range(-k, k + 1):
            for dy in range(-k, k + 1):
                x, y = pc[:, 0] + dx, pc[:, 1] + dy
                on = (x >= 0) & (y >= 0) & (x < nx) & (y < ny)  # cells with vertices
                keys.append(x[on] * ny + y[on])
        if nx * ny <= 50_000_000:
            near = np.zeros(nx * ny, bool)
            for key in keys:
                near[key] = True
            return lambda key: near[key]
        # a huge sparse extent: look cells up by sorting instead
        wanted = np.unique(np.concatenate(keys))
        return lambda key: np.isin(key, wanted)

    def _segments_near_cells(self, pc: np.ndarray, k: int):
        """The segments with an end within ``k`` cells of the cells ``pc`` (see :meth:`near`)."""
        vhit = self._cell_set(pc, k)(self._grid[3])
        hit = vhit[:-1] | vhit[1:]
        hit &= self._starts[:-1]
        same = np.flatnonzero(hit)  # (segments in the order of :attr:`first`)
        return (np.take(self.coords, same, axis=0), np.take(self.coords, same + 1, axis=0),
                self._owner[same].astype(np.int64))

    def near_lines(self, lines: np.ndarray, tol: float) -> "NearOutlines":
        """The segments :meth:`near` gives for any points on ``lines``, found before the points.

        A superset: the segments near every grid cell the lines pass through and
        the cells next to those (a point on a line densified to one cell per
        segment lies within half a cell of a vertex, so in a cell next to that
        vertex's). With their midpoints' k-d tree. :func:`_label_samples` checks
        that its points lie in those cells before it uses them.
        """
        _lo, cell, (nx, ny), _vkey = self._grid_for(tol)
        z = np.zeros((0, 2))
        lines = np.asarray(lines, dtype=object)
        if self.n_segments == 0 or len(lines) == 0:
            return NearOutlines(self, float(tol), lambda key: np.zeros(len(key), bool), z, z,
                                np.zeros(0, dtype=int), None)
        # (vertices off the grid count in the grid's nearest cell, as in :meth:`serves`)
        pc = np.clip(self._cells(shapely.get_coordinates(shapely.segmentize(lines, cell)), tol),
                     0, [nx - 1, ny - 1])
        sa, sb, owner = self._segments_near_cells(pc, self._reach_cells(tol) + 1)
        tree = kdtree((sa + sb) / 2) if len(sa) else None
        return NearOutlines(self, float(tol), self._cell_set(pc, 1), sa, sb, owner, tree)


@dataclass(frozen=True)
class NearOutlines:
    """Outline segments near some lines (:meth:`CountyOutlines.near_lines`).

    Nationally, finding them and their k-d tree takes ~0.07 s, which
    :func:`basins.discover.discover` spends on the second core while the flow
    graph is oriented rather than at the start of labelling.
    """

    #: the outlines they were found among (their grid numbers the cells)
    outlines: CountyOutlines
    #: the search distance they were found for
    tol: float
    #: cell numbers -> whether a point in that cell is served (see :meth:`serves`)
    covered: Callable[[np.ndarray], np.ndarray]
    start: np.ndarray
    end: np.ndarray
    owner: np.ndarray
    #: k-d tree of the segments' midpoints (None when there are none)
    tree: cKDTree | None

    def serves(self, outlines: CountyOutlines, xy: np.ndarray, tol: float) -> bool:
        """Whether these segments include :meth:`CountyOutlines.near` ``(xy, tol)``: whether
        every point lies in a covered cell (a point off the grid: in the grid's
        cell nearest to it, whose neighbours include every grid cell near it)."""
        if outlines is not self.outlines or float(tol) != self.tol or outlines.n_segments == 0:
            return False
        nx, ny = outlines._grid_for(tol)[2]
        pc = np.clip(outlines._cells(xy, tol), 0, [nx - 1, ny - 1])
        return bool(self.covered(pc[:, 0] * ny + pc[:, 1]).all())


def _candidate_pairs(xy: np.ndarray, sa: np.ndarray, sb: np.ndarray, tol: float,
                     tree: cKDTree | None = None):
    """(point, segment) pairs with the segment's midpoint within ``tol`` plus half the
    longest segment of the point: every segment within ``tol`` of a point is among
    them (k-d trees, no geometry objects). ``tree``: the midpoints' tree, if built."""
    reach = tol + float(np.hypot(*(sb - sa).T).max()) / 2 + 1e-6
    tree = tree if tree is not None else kdtree((sa + sb) / 2)
    pairs = kdtree(xy).sparse_distance_matrix(tree, reach, output_type="ndarray")
    return pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)


def _usable(counties: gpd.GeoDataFrame) -> np.ndarray:
    """Counties with a geometry: the ones samples are labelled with."""
    return ~(counties.geometry.isna() | counties.geometry.is_empty).to_numpy()


def county_outlines_for(counties: gpd.GeoDataFrame,
                        settings: st.Settings = st.DEFAULT) -> CountyOutlines:
    """The :class:`CountyOutlines` that :func:`sections_from_network` labels samples with.

    ``counties`` must be in the analysis CRS. Building them takes a while on a
    large layer; :func:`basins.discover.discover` does it on a second thread.
    """
    cty = counties[_usable(counties)]
    return CountyOutlines.for_tolerance(np.asarray(cty.geometry.array, dtype=object),
                                        settings.boundary_tolerance_m)


def _label_samples(xy: np.ndarray, counties: np.ndarray, tol: float,
                   outlines: CountyOutlines | None = None, line: np.ndarray | None = None,
                   step: float | None = None, near: NearOutlines | None = None):
    """Nearest and second-nearest county within ``tol`` of each point (-1 when none).

    ``xy`` is an (n, 2) array of coordinates in the counties' CRS; ``outlines``,
    when given, are the :class:`CountyOutlines` of ``counties``. When the points
    are samples along lines, in order, at most ``step`` apart (``line``: the line
    of each), a sample farther than ``tol`` from every outline that follows such
    a sample of its line lies in the same counties: the line between them cannot
    reach an outline when ``step <= 2 tol``. Only the first of each such stretch
    is tested against the polygons (nationally half the samples are far).
    ``near``: outline segments found ahead (:meth:`CountyOutlines.near_lines`),
    used when they serve the points (else the outlines are searched here).
    """
    # inside: distance 0; near: distance to the county's outline, cut into short
    # segments so each distance is cheap (county outlines have thousands of vertices)
    outlines = outlines if outlines is not None else CountyOutlines.for_tolerance(counties, tol)
    if near is not None and len(xy) and near.serves(outlines, xy, tol):
        sa, sb, seg_owner, tree = near.start, near.end, near.owner, near.tree
    else:
        sa, sb, seg_owner = outlines.near(xy, tol)
        tree = kdtree((sa + sb) / 2) if len(sa) and len(xy) else None
    # candidate pairs, then exact distances in numpy; in two halves of the points
    # on two threads when there are many (k-d trees and numpy release the GIL;
    # nationally ~1.4M candidate pairs). The pairs' order does not matter below.
    cut = len(xy) // 2 if len(xy) >= 2 * _network._THREAD_MIN_POINTS else 0
    spans = [(0, cut), (cut, len(xy))] if cut else [(0, len(xy))]

    def candidates(span: tuple[int, int]):
        lo, hi = span
        if tree is None or hi <= lo:
            z = np.zeros(0, dtype=np.int64)
            return z, z
        pj, sj = _candidate_pairs(xy[lo:hi], sa, sb, tol, tree)
        return pj + lo, sj

    cand = thread_map(candidates, spans)
    test = np.ones(len(xy), bool)
    if line is not None and step is not None and step <= 2 * tol and len(xy):
        far = np.ones(len(xy), bool)
        for pj, _ in cand:
            far[pj] = False
        follows = np.r_[False, far[:-1] & (line[1:] == line[:-1])]
        test = ~(far & follows)
    if test.all():
        pin, cin = points_in_polygons(xy, counties)
    else:
        tested = np.flatnonzero(test)
        pin, cin = points_in_polygons(xy[tested], counties)
        pin = tested[pin]
        # each untested sample takes the polygons of the last tested one before it
        idx = np.arange(len(xy))
        src = np.maximum.accumulate(np.where(test, idx, 0))
        order = np.argsort(pin, kind="stable")
        pin, cin = pin[order], cin[order]
        first = np.searchsorted(pin, src)
        count = np.searchsorted(pin, src, side="right") - first
        rows = np.repeat(first, count) + np.arange(int(count.sum())) - np.repeat(
            np.cumsum(count) - count, count)
        pin, cin = np.repeat(idx, count), cin[rows]
    home = np.full(len(xy), -1, dtype=np.int64)
    home[pin] = cin

    nc = max(len(counties), 1)
    first = np.full(len(xy), -1)
    second = np.full(len(xy), -1)

    def nearest_two(k: int) -> None:
        """The samples of span k: distances, then their two nearest counties (the
        spans' samples are apart, so each thread fills its own entries)."""
        lo, hi = spans[k]
        pj, sj = cand[k]
        # a point inside a county is at distance 0 from it: its own outline's
        # segments need no distance (about half the pairs on a border river)
        other = seg_owner[sj] != home[pj]
        pj, sj = pj[other], sj[other]
        dj = pair_distances(xy, pj, sa, sb, sj)
        near = dj <= tol
        mine = (pin >= lo) & (pin < hi)
        pi = np.concatenate([pin[mine], pj[near]])
        ci = np.concatenate([cin[mine], seg_owner[sj[near]]])
        d = np.concatenate([np.zeros(int(mine.sum())), dj[near]])
        # one row per (point, county) with its smallest distance
        key = pi.astype(np.int64) * nc + ci
        order = np.argsort(key, kind="stable")
        key, d = key[order], d[order]
        if len(key) == 0:
            return
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        d = np.minimum.reduceat(d, starts)
        key = key[starts]
        pi, ci = key // nc, key % nc
        # each point's nearest county, then the next nearest (ties: the lower index),
        # as np.lexsort((ci, d, pi)) would order them, without sorting the distances
        one = first_of_groups(pi, d, ci)
        first[pi[one]] = ci[one]
        rest = np.ones(len(pi), bool)
        rest[one] = False
        pi, ci, d = pi[rest], ci[rest], d[rest]
        two = first_of_groups(pi, d, ci)
        second[pi[two]] = ci[two]

    thread_map(nearest_two, list(range(len(spans))))
    a = np.where(second >= 0, np.minimum(first, second), first)
    b = np.where(second >= 0, np.maximum(first, second), -1)
    return a, b


def _distances_to_counties(xy: np.ndarray, county: np.ndarray, counties: np.ndarray,
                           outlines: CountyOutlines, reach: float) -> np.ndarray:
    """Distance from each point ``xy[i]`` to the polygon ``counties[county[i]]``.

    For points outside their polygon (the distance to a polygon is then the
    distance to its outline) that are expected within ``reach`` of it: the
    outline segments near the points come from ``outlines`` and distances are
    exact, in numpy; a point with no segment of its county within ``reach`` gets
    GEOS's distance to the whole polygon. That replaces one GEOS call per point
    over every vertex of the county (~20 µs each).
    """
    out = np.full(len(xy), np.nan)
    if len(xy) == 0:
        return out
    sa, sb, own = outlines.near(xy, reach)
    wanted = np.zeros(outlines.n_counties, bool)
    wanted[county] = True
    keep = wanted[own]
    sa, sb, own = sa[keep], sb[keep], own[keep]
    if len(sa):
        pi, sj = _candidate_pairs(xy, sa, sb, reach)
        mine = own[sj] == county[pi]
        pi, sj = pi[mine], sj[mine]
        d = pair_distances(xy, pi, sa, sb, sj)
        order = np.argsort(pi, kind="stable")
        pi, d = pi[order], d[order]
        if len(pi):
            starts = np.flatnonzero(np.r_[True, pi[1:] != pi[:-1]])
            out[pi[starts]] = np.minimum.reduceat(d, starts)
    far = np.flatnonzero(np.isnan(out) | (out > reach))  # nothing within reach: whole polygon
    if len(far):
        out[far] = shapely.distance(shapely.points(xy[far]), counties[county[far]])
    return out


def _contested(votes: np.ndarray, run: np.ndarray) -> np.ndarray:
    """Samples whose vote (now 0, to come in [-0.5, 0.5]) could change their run's sign.

    A run's sign (sum >= 0) is settled when its other votes outweigh half a vote
    per open sample; a tie is left open, so it is worked out in full.
    """
    runs, r = np.unique(run, return_inverse=True)
    decided = np.bincount(r, weights=votes, minlength=len(runs))
    undecided = votes == 0
    room = np.bincount(r[undecided], minlength=len(runs)) * 0.5
    return undecided & (np.abs(decided) <= room)[r]


def _side_votes(xy, tangents, a, b, counties, tol,
                outlines: CountyOutlines | None = None,
                run: np.ndarray | None = None) -> np.ndarray:
    """Positive where county ``a`` lies to the left of the flow direction.

    Probes at ``tol / 2`` and ``tol`` to each side of the river: +1 for each probe
    in the county that side would put it in (a left, b right), -1 for each probe in
    the other; summed over a run this measures which county fills which side. Where
    the probes decide nothing (both in a gap, or both in one county) the distances
    from the outer probes to the two counties vote instead, scaled into
    [-0.5, 0.5]. ``a`` and ``b`` are both within ``tol`` of each sample (they are
    its label), so every one of those distances is at most ``2 * tol``.

    With ``run`` (the run of each sample), only the sign of each run's sum is
    kept exact: a run whose probe votes outweigh half a vote per undecided sample
    has its sign whatever the distances say, and its undecided samples vote 0.
    """
    normal = np.column_stack([-tangents[:, 1], tangents[:, 0]])
    # two probes a side sample the strip beside the river: at each offset, a left,
    # b right, b left, a right; every probe tested in one call (on both cores)
    n = len(xy)
    probes = []
    for k in (0.5, 1.0):
        lxy, rxy = xy + normal * (k * tol), xy - normal * (k * tol)
        probes += [lxy, rxy, lxy, rxy]
    inside = polygons_contain_xy(counties, np.concatenate([a, b, b, a, a, b, b, a]),
                                 np.concatenate(probes)).reshape(8, n)
    votes = np.zeros(n)
    for row, sign in zip(inside, (1, 1, -1, -1, 1, 1, -1, -1)):
        votes += sign * row
    la, rb, lb, ra = inside[4:]  # the outer probes' (lxy, rxy: the last offset's)
    u = np.flatnonzero(votes == 0)
    if run is not None and len(u):
        u = u[_contested(votes, run)[u]]
    if len(u):
        # the outer probes: a left, b right, then b left, a right; zero where a
        # probe lies inside the county
        pts = np.concatenate([lxy[u], rxy[u], lxy[u], rxy[u]])
        cty = np.concatenate([a[u], b[u], b[u], a[u]])
        inside = np.concatenate([la[u], rb[u], lb[u], ra[u]])
        d = np.zeros(len(pts))
        o = np.flatnonzero(~inside)
        outlines = outlines if outlines is not None else CountyOutlines.for_tolerance(counties, tol)
        d[o] = _distances_to_counties(pts[o], cty[o], counties, outlines, 2 * tol + 1.0)
        n = len(u)
        d1 = d[:n] + d[n:2 * n]  # a left, b right
        d2 = d[2 * n:3 * n] + d[3 * n:]
        # scaled below one probe's vote: distances only break ties
        votes[u] = np.clip((d2 - d1) / (4 * tol), -0.5, 0.5)
    return votes


def _runs_for_chains(chains, counties_g, settings, outlines: CountyOutlines | None = None,
                     near: NearOutlines | Future | None = None):
    geoms = np.array([c.geometry for c in chains], dtype=object)
    if len(geoms) == 0:
        return
    step = settings.sample_step_m
    xy, li, dist = sample_lines(geoms, step, as_xy=True)
    tol = settings.boundary_tolerance_m
    outlines = outlines if outlines is not None else \
        CountyOutlines.for_tolerance(counties_g, tol)
    if isinstance(near, Future):  # found ahead on another thread: needed from here on
        near = near.result()
    a, b = _label_samples(xy, counties_g, tol, outlines, line=li, step=step, near=near)
    for c in chains:  # samples inside virtual links: no county is known there
        for s0, s1 in c.virtual:
            on = (li == c.cid) & (dist > s0) & (dist < s1)
            a[on], b[on] = VIRTUAL, -1
    # raw runs: stretches of equal labels along each chain, in arrays; a run ends
    # half-way between its last sample and the next run's first
    brk = np.flatnonzero(np.r_[True, (li[1:] != li[:-1]) | (a[1:] != a[:-1]) | (b[1:] != b[:-1])])
    # tangents for pair samples (for left/right bank)
    pair = b >= 0
    if pair.any():
        # tangent from the neighbouring samples of the same chain
        idx = np.arange(len(xy))
        prev = np.where((idx > 0) & (li[np.maximum(idx - 1, 0)] == li), idx - 1, idx)
        nxt = np.where((idx < len(xy) - 1) & (li[np.minimum(idx + 1, len(xy) - 1)] == li),
                       idx + 1, idx)
        t = (xy[nxt] - xy[prev])[pair]
        norm = np.linalg.norm(t, axis=1)
        norm[norm == 0] = 1.0
        votes = np.zeros(len(xy))
        run_of = np.zeros(len(xy), dtype=np.int64)
        run_of[brk[1:]] = 1
        run_of = np.cumsum(run_of)
        votes[pair] = _side_votes(xy[pair], t / norm[:, None], a[pair], b[pair], counties_g,
                                  tol, outlines, run_of[pair])
    else:
        votes = np.zeros(len(xy))
    last = np.r_[brk[1:], len(xy)] - 1
    vote_sum = np.add.reduceat(votes, brk) if len(brk) else np.zeros(0)
    chain_of = li[brk]
    first_of_chain = np.r_[True, chain_of[1:] != chain_of[:-1]]
    last_of_chain = np.r_[chain_of[1:] != chain_of[:-1], True]
    lengths = shapely.length(geoms)
    r_start = np.where(first_of_chain, 0.0, (dist[brk - 1] + dist[brk]) / 2)
    r_end = np.where(last_of_chain, lengths[chain_of],
                     (dist[last] + dist[np.minimum(last + 1, len(xy) - 1)]) / 2)
    ra, rb = a[brk], b[brk]
    left = np.where(rb >= 0, np.where(vote_sum >= 0, ra, rb), -1)
    right = np.where(rb >= 0, np.where(vote_sum >= 0, rb, ra), -1)
    bounds = np.r_[np.flatnonzero(first_of_chain), len(brk)].tolist()
    rows = list(zip(ra.tolist(), rb.tolist(), r_start.tolist(), r_end.tolist(), left.tolist(),
                    right.tolist()))
    along = _Along.for_lines(geoms)
    for k, c in enumerate(chains):  # samples come chain by chain, in chain order
        runs = [Run(*row) for row in rows[bounds[k]:bounds[k + 1]]]
        c.runs = _smooth(runs, settings, along(k)) if len(runs) > 1 else runs


class _Along:
    """Points along one line by distance from its start (numpy, no shapely call per point)."""

    __slots__ = ("x", "y", "cum", "_memo")

    def __init__(self, line, _arrays: tuple | None = None) -> None:
        if _arrays is None:
            xy = shapely.get_coordinates(line)
            # contiguous: np.interp copies a strided column on every call
            x, y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
            seg = np.hypot(np.diff(x), np.diff(y))
        else:
            x, y, seg = _arrays
        self.x, self.y = x, y
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])
        self._memo: dict[tuple[float, float], float] = {}

    @classmethod
    def for_lines(cls, lines: np.ndarray) -> Callable[[int], "_Along"]:
        """``_Along(lines[k])`` for any k, from one coordinate pass over all lines.

        The same arrays (to the bit) as one ``_Along`` per line, without the few
        numpy calls per line that cost more than the work on lines of few vertices.
        """
        coords, ci = shapely.get_coordinates(lines, return_index=True)
        x, y = np.ascontiguousarray(coords[:, 0]), np.ascontiguousarray(coords[:, 1])
        seg = np.hypot(np.diff(x), np.diff(y))
        bounds = np.searchsorted(ci, np.arange(len(lines) + 1)).tolist()

        def along(k: int) -> "_Along":
            a, b = bounds[k], bounds[k + 1]
            return cls(None, (x[a:b], y[a:b], seg[a:max(a, b - 1)]))

        return along

    def distance(self, s0: float, s1: float) -> float:
        """Straight-line distance between the points at ``s0`` and ``s1`` along the line."""
        key = (s0, s1)
        if key not in self._memo:  # smoothing asks for the same runs again and again
            x = np.interp(key, self.cum, self.x)
            y = np.interp(key, self.cum, self.y)
            self._memo[key] = float(np.hypot(x[1] - x[0], y[1] - y[0]))
        return self._memo[key]

    def distances(self, s0: list[float], s1: list[float]) -> list[float]:
        """:meth:`distance` for many pairs at once (the same values, one numpy call)."""
        x = np.interp(s0 + s1, self.cum, self.x)
        y = np.interp(s0 + s1, self.cum, self.y)
        n = len(s0)
        d = np.hypot(x[n:] - x[:n], y[n:] - y[:n]).tolist()
        self._memo.update(zip(zip(s0, s1), d))
        return d


def _extent(r: Run, line: _Along | None) -> float:
    """Straight-line distance between the ends of a run (its reach over the ground).

    Measuring runs this way, not along the river, makes a river that meanders
    back and forth over one border count as a short run however long its path.
    """
    if line is None:
        return r.length
    return line.distance(r.start, r.end)


def _min_extent(r: Run, settings) -> float:
    """Shortest extent a run keeps its label with (border pairs need longer runs)."""
    return settings.min_boundary_run_m if r.is_pair else settings.min_run_m


def _merge_equal(runs: list[Run]) -> list[Run]:
    out: list[Run] = []
    for r in runs:
        if out and out[-1].label == r.label:
            prev = out[-1]
            if r.is_pair:  # keep the bank assignment of the longer part
                if r.length > prev.length:
                    prev.left, prev.right = r.left, r.right
            prev.end = r.end
        else:
            out.append(Run(r.a, r.b, r.start, r.end, r.left, r.right))
    return out


def _smooth(runs: list[Run], settings, line: _Along | None = None) -> list[Run]:
    """Absorb short runs into their neighbours (meanders, grazes, crossings).

    Repeatedly the shortest short run (by extent, ties by position) goes: at an end
    of the chain its neighbour takes its stretch; between two runs of one label the
    three merge; between two different labels each takes half. Extents are kept in
    a list and recomputed only for the runs a step changed.
    """
    runs = _merge_equal(runs)
    ext = [r.length for r in runs] if line is None else \
        line.distances([r.start for r in runs], [r.end for r in runs])  # = _extent each
    lim = [_min_extent(r, settings) if r.a != VIRTUAL else -np.inf
           for r in runs]  # virtual runs never go
    while len(runs) > 1:
        best, i = np.inf, -1
        for k, (e, m) in enumerate(zip(ext, lim)):
            if e < m and e < best:
                best, i = e, k
        if i < 0:
            break
        r = runs[i]
        if i == 0:
            runs[1].start = r.start
            del runs[0], ext[0], lim[0]
            ext[0] = _extent(runs[0], line)
        elif i == len(runs) - 1:
            runs[-2].end = r.end
            del runs[-1], ext[-1], lim[-1]
            ext[-1] = _extent(runs[-1], line)
        else:
            prev, nxt = runs[i - 1], runs[i + 1]
            del runs[i], ext[i], lim[i]
            if prev.label == nxt.label:  # the three become one (as _merge_equal does)
                prev.end = r.end
                if nxt.is_pair and nxt.length > prev.length:
                    prev.left, prev.right = nxt.left, nxt.right
                prev.end = nxt.end
                del runs[i], ext[i], lim[i]
                ext[i - 1] = _extent(prev, line)
            else:
                mid = (r.start + r.end) / 2
                prev.end = mid
                nxt.start = mid
                ext[i - 1] = _extent(prev, line)
                ext[i] = _extent(nxt, line)
    return runs


def _smooth_network(chains: list[Chain], settings) -> None:
    """A chain too short to hold its own label takes its neighbours' label.

    The label of the chain downstream when there is one, else of the chain
    upstream, as those chains found it (not one taken in this step).
    """
    # a single run spans its whole chain: its extent is the chord between the ends;
    # only chains of one short run are candidates (decided up front: a chain's own
    # runs change only at its own turn)
    geoms = np.array([c.geometry for c in chains], dtype=object)
    g0, g1 = line_ends(geoms) if len(geoms) else (np.zeros((0, 2)), np.zeros((0, 2)))
    chord = np.hypot(*(g1 - g0).T).tolist()
    cand = [c for c, ext in zip(chains, chord)
            if len(c.runs) == 1 and c.runs[0].a != VIRTUAL
            and ext < _min_extent(c.runs[0], settings)]
    need = {c.v for c in cand} | {c.u for c in cand}
    by_u: dict[str, list[Chain]] = defaultdict(list)
    by_v: dict[str, list[Chain]] = defaultdict(list)
    for c in chains:  # neighbours of the candidates only, in chain order
        if c.u in need:
            by_u[c.u].append(c)
        if c.v in need:
            by_v[c.v].append(c)
    # neighbours' labels as the chains themselves found them: a label taken here is
    # not passed on to the next short chain (a run of short chains would otherwise
    # carry one label any distance upstream, the farther the more chains, and the
    # result would depend on the order the chains are visited in)
    head = {c.cid: c.runs[0] for c in chains if c.runs}
    tail = {c.cid: c.runs[-1] for c in chains if c.runs}
    for c in cand:
        r = c.runs[0]
        downs = [head[d.cid] for d in by_u[c.v] if d.cid in head]
        ups = [tail[p.cid] for p in by_v[c.u] if p.cid in tail]
        down = {x.label for x in downs}
        up = {x.label for x in ups}
        if r.label in down or r.label in up:
            continue
        src = None
        if len(down) == 1:
            src = downs[0]
        elif len(up) == 1:
            src = ups[0]
        if src is not None and src.a != VIRTUAL:
            c.runs = [Run(src.a, src.b, r.start, r.end, src.left, src.right)]


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------
def _side(run: Run) -> list[int]:
    return [run.left, run.right] if run.is_pair else [run.a]


def _kind(up: Run, down: Run) -> str:
    if up.is_pair and down.is_pair:
        return "border_change"
    if up.is_pair:
        return "leaves_border"
    if down.is_pair:
        return "joins_border"
    return "crossing"


def _level(idx: list[int], counties: gpd.GeoDataFrame | tuple[np.ndarray, np.ndarray]) -> str:
    """province | city | county from the parties' provinces and cities."""
    prov_arr, city_arr = counties if isinstance(counties, tuple) else (
        counties.province.to_numpy(), counties.city.to_numpy())
    prov = set(prov_arr[idx])
    city = set(city_arr[idx])
    if len(prov) > 1:
        return "province"
    if len(city) > 1:
        return "city"
    return "county"


def _reach_at(chain: Chain, s: float) -> str:
    k = int(np.searchsorted(chain.offsets, s, side="right") - 1)
    return chain.reach_ids[max(k, 0)]


def sections_from_graph(
    G: nx.MultiDiGraph,
    counties: gpd.GeoDataFrame,
    settings: st.Settings = st.DEFAULT,
    qa: pd.DataFrame | None = None,
) -> Discovery:
    """Find every cross-boundary section on a flow graph.

    The same as :func:`sections_from_network` on ``OrientedNetwork.from_graph(G)``.
    """
    return sections_from_network(OrientedNetwork.from_graph(G), counties, settings, qa)


def sections_from_network(
    net: OrientedNetwork,
    counties: gpd.GeoDataFrame,
    settings: st.Settings = st.DEFAULT,
    qa: pd.DataFrame | None = None,
    outlines: CountyOutlines | None = None,
    near: NearOutlines | Future | None = None,
) -> Discovery:
    """Find every cross-boundary section on an oriented network.

    Parameters
    ----------
    net
        Oriented reaches from :func:`basins.network.orient_reaches`.
    counties
        County layer in the county schema (:func:`basins.read.counties_from_gdf`).
    settings
        Tolerances.
    qa
        QA rows from :func:`basins.network.reaches_from_rivers`, completed here with
        orientation flags and county rows.
    outlines
        :func:`county_outlines_for` the same counties, when already built (else
        they are built here).
    near
        ``outlines.near_lines`` of the reaches' lines (before orientation will
        do), when already found: the outline segments the samples are labelled
        with (else they are searched here). A :class:`concurrent.futures.Future`
        of them is waited for only when the samples are to be labelled.

    Returns
    -------
    Discovery
    """
    crs = net.crs
    cty = project_gdf(counties, crs).reset_index(drop=True)
    usable = _usable(cty)
    cty_used = cty[usable].reset_index(drop=True)
    pc_arrays = (cty_used.province.to_numpy(), cty_used.city.to_numpy())
    cg = np.asarray(cty_used.geometry.array, dtype=object)  # plain array: no pandas ufunc path
    if outlines is not None and outlines.n_counties != len(cg):
        raise ValueError(f"outlines are of {outlines.n_counties} counties, the layer has "
                         f"{len(cg)} usable ones: build them with county_outlines_for(counties)")
    # the reaches' output projection and the boundary stretches need nothing of the
    # sections: on a second thread (PROJ and numpy release the GIL), for networks
    # up to _SECOND_THREAD_MAX_REACHES (beyond, its malloc arena adds ~15% to the
    # peak memory: 1M synthetic reaches 1.89 -> 2.19 GiB)
    two = len(net.edges) <= _SECOND_THREAD_MAX_REACHES
    with ThreadPoolExecutor(max_workers=1) if two else nullcontext() as pool:
        later = pool.submit if two else _now
        reaches = later(project_gdf, net.edges, st.OUTPUT_CRS)
        chains = chains_from_reaches(net.edges)
        _runs_for_chains(chains, cg, settings, outlines, near)
        _smooth_network(chains, settings)
        boundary = later(_boundary_frame, chains, cty_used, crs)
        sections, pos = _sections_of_chains(chains, net, cty_used, pc_arrays, crs, settings)
        boundary, reaches = boundary.result(), reaches.result()
    section_graph = _section_graph(chains, pos)
    qa_full = _qa_frame(qa, reaches, sections, cty, usable, counties)
    return Discovery(
        sections=sections, boundary_rivers=boundary, reaches=reaches, qa=qa_full, network=net,
        section_graph=section_graph, counties=cty_used, chains=chains, _section_pos=pos,
    )


#: sections_from_network uses a second thread up to this many reaches
_SECOND_THREAD_MAX_REACHES = 50_000


def _now(fn, *args) -> Future:
    """``fn(*args)`` run at once, as a finished future (the one-thread path)."""
    done: Future = Future()
    done.set_result(fn(*args))
    return done


def _sections_of_chains(chains, net, cty_used, pc_arrays, crs, settings=st.DEFAULT):
    """The sections of chains with their runs, in their output order, and where each
    lies (section id -> chain, distance along it, chain it was reached by)."""
    edge_flags = dict(zip(net.edges.reach_id.tolist(), net.edges.orientation_flag.tolist()))
    rows = []
    crossings: list[tuple[int, Run, Run]] = []  # (row, run before, run after)
    pos: dict[str, tuple] = {}

    def add(chain: Chain, s: float, up: Run, down: Run, river: str, node: str | None, via,
            note: str = ""):
        up_ids, down_ids = _side(up), _side(down)
        parties = up_ids + down_ids
        reach_id = _reach_at(chain, s) if node is None else chain.reach_ids[0]
        flag = edge_flags.get(reach_id, "")
        if via is not None:
            flag = flag or edge_flags.get(chains[via].reach_ids[-1], "")
        if note:
            flag = "; ".join(x for x in (flag, note) if x)
        rows.append(dict(
            _chain=chain.cid, _s=s, _via=via, river=river, kind=_kind(up, down),
            level=_level(parties, pc_arrays), _up=up_ids, _down=down_ids,
            reach_id=reach_id, flags=flag, geometry=None,
        ))

    for c in chains:
        for k in range(1, len(c.runs)):
            r1, r2 = c.runs[k - 1], c.runs[k]
            if r2.a == VIRTUAL:
                continue  # decided at the run after the link
            if r1.a == VIRTUAL:  # the river crossed a water body: compare both shores
                if k < 2 or c.runs[k - 2].a in (OUTSIDE, VIRTUAL) or r2.a == OUTSIDE or \
                        c.runs[k - 2].label == r2.label:
                    continue
                add(c, (r1.start + r1.end) / 2, c.runs[k - 2], r2, c.river, None, None,
                    "location approximate: the river passes through a water body drawn "
                    "only as an area; the border crossing lies somewhere inside it")
                continue
            if r1.a == OUTSIDE or r2.a == OUTSIDE:
                continue
            add(c, r2.start, r1, r2, c.river, None, None)
            if not r1.is_pair and not r2.is_pair:  # a crossing: placed on the border below
                crossings.append((len(rows) - 1, r1, r2))
    by_u: dict[str, list[Chain]] = defaultdict(list)
    for c in chains:
        by_u[c.u].append(c)
    seen_node: dict[tuple, int] = {}  # one section per (node, labels, outgoing chain)
    node_crossings: list[tuple[int, tuple]] = []  # (row, its key)
    for ci in chains:
        for co in by_u[ci.v]:
            if not ci.runs or not co.runs:
                continue
            r1, r2 = ci.runs[-1], co.runs[0]
            if r1.label == r2.label or r1.a in (OUTSIDE, VIRTUAL) or r2.a in (OUTSIDE, VIRTUAL):
                continue
            key = (ci.v, r1.label, r2.label, co.cid)
            if key in seen_node:
                seen_node[key] += 1  # another incoming chain shares the section
                continue
            seen_node[key] = 1
            add(co, 0.0, r1, r2, ci.river or co.river, ci.v, ci.cid)
            if not r1.is_pair and not r2.is_pair:
                node_crossings.append((len(rows) - 1, key))

    if crossings:
        _place_crossings(rows, crossings, chains, cty_used, settings, edge_flags)
    if node_crossings:  # (after: the in-chain ones bound their windows)
        _place_node_crossings(rows, [(i, seen_node[key] == 1) for i, key in node_crossings],
                              chains, cty_used, settings, edge_flags)
    # the points, in one call (the very values of a scalar interpolate per row); a
    # crossing at a confluence may lie on another chain than the one it is on for
    # navigation (its "_at")
    at_of = [r.get("_at", (r["_chain"], r["_s"])) for r in rows]
    at = shapely.line_interpolate_point(
        np.array([chains[c].geometry for c, _ in at_of], dtype=object),
        np.array([s for _, s in at_of], dtype=float))
    for r, pt in zip(rows, at):
        r["geometry"] = pt
    _note_passages(rows, at, cty_used, settings)
    sections = _sections_frame(rows, cty_used, crs)
    for r, sid in zip(rows, sections["_rowid_sid"]):
        pos[sid] = (r["_chain"], r["_s"], r["_via"])
    sections = sections.drop(columns="_rowid_sid")
    order = sections.assign(_lv=sections.level.map({k: i for i, k in enumerate(st.LEVELS)}))
    sections = order.sort_values(["_lv", "river", "section_id"]).drop(columns="_lv")
    return sections.reset_index(drop=True), pos


def _place_crossings(rows: list[dict], crossings: list[tuple[int, Run, Run]], chains,
                     cty_used: gpd.GeoDataFrame, settings: st.Settings, edge_flags: dict) -> None:
    """Move each crossing section onto the border its river crosses (in place).

    A crossing is found where the labels change, and a border zone shorter than
    ``min_boundary_run_m`` between the two counties is split in its middle, so the
    section sat up to half that zone away from the border (nationally, of those
    inside a chain, a median 305 m, 10% over 1.4 km, the most 4.2 km). It is moved
    to where the river passes from the upstream county into the downstream one
    (:func:`crossing_spans`: half-way between leaving the one and entering the
    other), within ``min_boundary_run_m / 2 + sample_step_m``
    of where it was (where none is seen, within ``min_boundary_run_m +
    sample_step_m``, as at a confluence) and within the runs on either side (a run
    between two crossings is shared at its middle), so the sections keep their
    order along the chain. The two runs then meet there, and the section's reach is
    the one there. A crossing with no such passage near it stays where it was, flagged
    (:func:`_not_seen`); a long passage through neither county is flagged later,
    once the points are known (:func:`_note_passages`).
    """
    k = [c[0] for c in crossings]
    s = np.array([rows[i]["_s"] for i in k])
    lo, hi = np.empty(len(k)), np.empty(len(k))
    for m, (_, r1, r2) in enumerate(crossings):
        shared_before = m > 0 and crossings[m - 1][2] is r1
        shared_after = m + 1 < len(crossings) and crossings[m + 1][1] is r2
        lo[m] = (r1.start + r1.end) / 2 if shared_before else r1.start
        hi[m] = (r2.start + r2.end) / 2 if shared_after else r2.end
    cid, line = np.unique([rows[i]["_chain"] for i in k], return_inverse=True)
    lines = np.array([chains[c].geometry for c in cid.tolist()], dtype=object)
    line = line.ravel()
    polys = np.asarray(cty_used.geometry.array, dtype=object)
    up, down = np.array([rows[i]["_up"][0] for i in k]), np.array([rows[i]["_down"][0] for i in k])
    reach = settings.min_boundary_run_m / 2 + settings.sample_step_m
    leave, enter = crossing_spans(lines, line, s, np.maximum(lo, s - reach),
                                  np.minimum(hi, s + reach), polys, up, down,
                                  settings.sample_step_m)
    # not seen: once more as far as a confluence's are looked for (a third county
    # absorbed whole on one side puts the border up to a whole short run away);
    # only these, so that the others keep the passage found on their own window
    again = np.flatnonzero(np.isnan(leave))
    if len(again):
        reach = settings.min_boundary_run_m + settings.sample_step_m
        used, on = np.unique(line[again], return_inverse=True)  # (their lines only)
        leave[again], enter[again] = crossing_spans(
            lines[used], on.ravel(), s[again], np.maximum(lo[again], s[again] - reach),
            np.minimum(hi[again], s[again] + reach), polys, up[again], down[again],
            settings.sample_step_m)
    for (i, r1, r2), a, b in zip(crossings, leave.tolist(), enter.tolist()):
        r = rows[i]
        if np.isnan(a):  # no passage from one into the other near it: left where it was
            r["flags"] = _with_note(r["flags"], _not_seen(reach))
            continue
        r["_s"] = r1.end = r2.start = (a + b) / 2
        r["_span"] = (a, b)
        r["reach_id"] = _reach_at(chains[r["_chain"]], r["_s"])
        r["flags"] = edge_flags.get(r["reach_id"], "")


def _with_note(flag: str, note: str) -> str:
    return "; ".join(x for x in (flag, note) if x)


def _not_seen(reach: float) -> str:
    """The flag of a crossing left where its labels change (no passage near)."""
    return ("location approximate: the river is not seen passing from the upstream county "
            f"into the downstream one within {reach:.0f} m of here (a third county, or land "
            "outside the layer, may lie between them)")


def _note_passages(rows: list[dict], points: np.ndarray, cty_used: gpd.GeoDataFrame,
                   settings: st.Settings) -> None:
    """Flag the crossings placed half-way along a passage through neither of their
    counties longer than ``sample_step_m`` (``_span``: leave, enter), naming what
    holds their point: a third county the smoothing absorbed (it may be a party
    the 1:4M scale hides), or land in no county of the layer (in place)."""
    k = [j for j, r in enumerate(rows)
         if "_span" in r and r["_span"][1] - r["_span"][0] > settings.sample_step_m]
    if not k:
        return
    pi, ci = points_in_polygons(shapely.get_coordinates(points[k]),
                                np.asarray(cty_used.geometry.array, dtype=object))
    held: dict[int, list[int]] = defaultdict(list)
    for p, c in zip(pi.tolist(), ci.tolist()):
        held[p].append(c)
    names, ids = cty_used.county.to_numpy(), cty_used.county_id.to_numpy()
    for p, j in enumerate(k):
        r = rows[j]
        where = ", ".join(f"{names[c]} ({ids[c]})" for c in sorted(held[p])) or \
            "land in no county of the layer"
        r["flags"] = _with_note(r["flags"], (
            f"the river runs {r['_span'][1] - r['_span'][0]:.0f} m in neither county between "
            f"leaving the upstream one and entering the downstream one; half-way, where the "
            f"section is: {where}"))


def _place_node_crossings(rows: list[dict], nodes: list[tuple[int, bool]], chains,
                          cty_used: gpd.GeoDataFrame, settings: st.Settings,
                          edge_flags: dict) -> None:
    """Put the point of each crossing at a confluence where its river crosses the
    border (in place).

    Such a section is found where the last run of an incoming chain and the first
    run of the outgoing chain have different labels, and sat at the node, up to a
    whole short run from the border (nationally 5 sections, 0.1 to 5.4 km away;
    4 now lie on the border, 1 in a 46 m gap between the two counties). The
    passage from the upstream county into the downstream one
    (:func:`crossing_spans`) is looked for on the outgoing chain after the node,
    and on the incoming chain before it when that chain is the only one the
    section stands for (``nodes``: row, and whether it is alone), each within
    ``min_boundary_run_m + sample_step_m`` of the node (a short run at a chain's
    end is taken whole by its neighbour, not split, so the border may lie up to a
    whole short run away) and within half the run on that side (so it stays
    before the chain's next section, or after its last); the one nearer the node
    is taken. Only the point and its reach move: for navigation
    (:meth:`Discovery.downstream_sections`, ``counties_draining_to``) the section
    stays at the node. With no passage near, it stays at the node, flagged.
    """
    reach = settings.min_boundary_run_m + settings.sample_step_m
    req = []  # (node crossing, chain, distance of the node along it, lo, hi)
    for m, (i, alone) in enumerate(nodes):
        r = rows[i]
        co, ci = chains[r["_chain"]], chains[r["_via"]]
        r2, r1 = co.runs[0], ci.runs[-1]
        req.append((m, co.cid, 0.0, 0.0, min(reach, (r2.start + r2.end) / 2)))
        if alone:
            end = r1.end  # the chain's length
            req.append((m, ci.cid, end, max(end - reach, (r1.start + r1.end) / 2), end))
    cid, line = np.unique([q[1] for q in req], return_inverse=True)
    leave, enter = crossing_spans(
        np.array([chains[c].geometry for c in cid.tolist()], dtype=object), line.ravel(),
        np.array([q[2] for q in req]), np.array([q[3] for q in req]),
        np.array([q[4] for q in req]), np.asarray(cty_used.geometry.array, dtype=object),
        np.array([rows[nodes[q[0]][0]]["_up"][0] for q in req]),
        np.array([rows[nodes[q[0]][0]]["_down"][0] for q in req]), settings.sample_step_m)
    best: dict[int, tuple[float, int, float, float]] = {}
    for (m, c, s0, _, _), a, b in zip(req, leave.tolist(), enter.tolist()):
        x = (a + b) / 2
        if not np.isnan(x) and (m not in best or abs(x - s0) < best[m][0]):
            best[m] = (abs(x - s0), c, a, b)
    for m, (i, _) in enumerate(nodes):
        r = rows[i]
        if m not in best:
            r["flags"] = _with_note(r["flags"], _not_seen(reach))
            continue
        _, c, a, b = best[m]
        r["_at"], r["_span"] = (c, (a + b) / 2), (a, b)
        r["reach_id"] = _reach_at(chains[c], (a + b) / 2)
        r["flags"] = edge_flags.get(r["reach_id"], "") or \
            edge_flags.get(chains[r["_via"]].reach_ids[-1], "")


def crossing_spans(lines: np.ndarray, line: np.ndarray, s: np.ndarray, lo: np.ndarray,
                   hi: np.ndarray, polys: np.ndarray, up: np.ndarray, down: np.ndarray,
                   step: float) -> tuple[np.ndarray, np.ndarray]:
    """Where line ``lines[line[k]]`` leaves polygon ``polys[up[k]]`` and enters
    ``polys[down[k]]``, in the passage from one into the other nearest ``s[k]``.

    Points every ``step`` from ``lo[k]`` to ``hi[k]`` along the line are tested
    for being in each polygon; a passage is a point in ``up`` only followed by one
    in ``down`` only, with only points in neither or in both (a gap or an overlap
    of the two polygons, or a third one) between; the one whose middle lies
    nearest ``s[k]`` is taken. Between the last of its points in ``up`` and the
    next, the line leaves ``up`` (its first crossing of the outline there), and
    between the last not in ``down`` and the next it enters ``down`` (its last
    crossing): both are exact segment intersections (:func:`_outline_crossings`).
    Where the polygons share a border the two are one point; the line enters
    ``down`` before it leaves ``up`` where they overlap, and after it where a gap,
    a third polygon, or land in no polygon lies between them.

    Parameters
    ----------
    lines, line
        LineStrings (the flow direction: up before down), and the one of each row.
    s, lo, hi
        Position near which to look, and the stretch to look in (distances along
        each row's line).
    polys, up, down
        Polygons (prepared or not), and each row's upstream and downstream one.
    step
        Spacing of the test points; a passage over a sliver narrower than this may
        be missed (another one is taken, or none).

    Returns
    -------
    leave, enter
        Distances along each line; NaN where no passage lies in the stretch.
    """
    n = len(line)
    out_leave, out_enter = np.full(n, np.nan), np.full(n, np.nan)
    if n == 0:
        return out_leave, out_enter
    lo, hi, s = (np.asarray(v, dtype=float) for v in (lo, hi, s))
    line, up, down = (np.asarray(v, dtype=np.int64) for v in (line, up, down))
    polys = np.asarray(polys, dtype=object)
    # each line's coordinates and distances once, in flat arrays (chains are long:
    # GEOS's interpolate walks a line from its start at every point)
    path = _Paths(np.asarray(lines, dtype=object))
    count = np.maximum(np.ceil((hi - lo) / step).astype(np.int64), 0) + 1
    q = np.repeat(np.arange(n), count)
    j = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    t = np.minimum(lo[q] + j * step, hi[q])  # (the last point is hi itself)
    xy = path.at(line[q], t)
    in_up = shapely.contains_xy(polys[up[q]], xy[:, 0], xy[:, 1])
    in_down = shapely.contains_xy(polys[down[q]], xy[:, 0], xy[:, 1])
    only_up, only_down = in_up & ~in_down, in_down & ~in_up
    # the passages: consecutive decided points (in one only), up then down, of a line
    d = np.flatnonzero(only_up | only_down)
    pair = np.flatnonzero((q[d[:-1]] == q[d[1:]]) & only_up[d[:-1]] & only_down[d[1:]])
    if len(pair) == 0:
        return out_leave, out_enter
    i, k = d[pair], d[pair + 1]
    qi = q[i]
    miss = np.abs((t[i] + t[k]) / 2 - s[qi])
    best = np.lexsort((miss, qi))  # per line, the passage nearest s first
    best = best[np.r_[True, qi[best][1:] != qi[best][:-1]]]
    i, k, qi = i[best], k[best], qi[best]
    # leaving up: after the last point in up before k; entering down: before the
    # first point in down after i (points between are in neither or in both)
    a = np.array([i0 + int(np.flatnonzero(in_up[i0:k0])[-1]) for i0, k0 in
                  zip(i.tolist(), k.tolist())], dtype=np.int64)
    b = np.array([i0 + 1 + int(np.flatnonzero(in_down[i0 + 1:k0 + 1])[0]) for i0, k0 in
                  zip(i.tolist(), k.tolist())], dtype=np.int64)
    on = line[qi]
    m = len(qi)
    # the first crossing of up's outline after the last point in it, and the last
    # crossing of down's before the first point in it; each piece reaches a hair
    # beyond the test point at its far end, which may lie on the outline itself (in
    # neither polygon, its crossing then rounds to just outside the piece)
    eps = 1e-6 * step
    total = path.cum[path.end[on] - 1]
    cross = _outline_crossings(path, np.concatenate([on, on]),
                               np.concatenate([t[a], np.maximum(t[b - 1] - eps, 0.0)]),
                               np.concatenate([np.minimum(t[a + 1] + eps, total), t[b]]),
                               polys, np.concatenate([up[qi], down[qi]]))
    leave = np.where(np.isnan(cross[0][:m]), t[a], cross[0][:m])
    enter = np.where(np.isnan(cross[1][m:]), t[b], cross[1][m:])
    out_leave[qi], out_enter[qi] = leave, enter
    return out_leave, out_enter


class _Paths:
    """Lines as flat coordinate arrays with each vertex's distance along its line:
    points and pieces at given distances, for many lines in one numpy call.

    The values are ``np.interp``'s on each line's own distances (the same
    arithmetic: a chain's pieces are the same to the bit whichever call cut them).
    """

    def __init__(self, lines: np.ndarray) -> None:
        xy, li = shapely.get_coordinates(lines, return_index=True)
        seg = np.hypot(*np.diff(xy, axis=0).T)
        start = np.r_[0, np.flatnonzero(li[1:] != li[:-1]) + 1] if len(li) else np.zeros(0, int)
        end = np.r_[start[1:], len(li)].astype(np.int64)
        cum = np.zeros(len(li))
        for a, b in zip(start.tolist(), end.tolist()):  # each line's own sums, as _Along's
            cum[a + 1:b] = np.cumsum(seg[a:b - 1])
        self.xy, self.cum, self.start, self.end = xy, cum, start, end
        # (line, distance) as one sortable key: numpy orders complex numbers by
        # their real part, then their imaginary part
        self.key = li + 1j * cum

    def _after(self, line: np.ndarray, t: np.ndarray, side: str) -> np.ndarray:
        """The first vertex of each line beyond distance ``t`` (``side="right"``), or
        at or beyond it (``"left"``), as ``np.searchsorted`` on that line's distances."""
        return np.searchsorted(self.key, line + 1j * t, side=side)

    def at(self, line: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The points at distances ``t`` along lines ``line``: ``np.interp(t, cum, x)``
        (and ``y``) of each line, to the bit."""
        s0, e0 = self.start[line], self.end[line]
        j = np.clip(self._after(line, t, "right") - 1, s0, e0 - 1)
        j1 = np.minimum(j + 1, e0 - 1)
        c0, c1 = self.cum[j], self.cum[j1]
        x0, x1 = self.xy[j], self.xy[j1]
        inner = (j < e0 - 1) & (t > c0)  # (before the start: j is the start, t < c0)
        slope = (x1 - x0) / np.where(inner, c1 - c0, 1.0)[:, None]
        out = np.where(inner[:, None], slope * (t - c0)[:, None] + x0, x0)
        return np.where((t >= self.cum[e0 - 1])[:, None], self.xy[e0 - 1], out)

    def pieces(self, line: np.ndarray, t0: np.ndarray, t1: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The parts of lines ``line`` between ``t0[k]`` < ``t1[k]``, in one array.

        Each part is its interpolated start, the vertices strictly between and
        its end. Returns the (n, 2) coordinates, the part each belongs to (in
        order: ready for one ``shapely.linestrings`` call) and each one's
        distance along its line.
        """
        lo = self._after(line, t0, "right")
        size = np.maximum(self._after(line, t1, "left") - lo, 0) + 2
        part = np.repeat(np.arange(len(lo)), size)
        pos = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
        first, last = pos == 0, pos == np.repeat(size - 1, size)
        vert = np.where(first | last, 0, np.repeat(lo - 1, size) + pos)
        xy, d = self.xy[vert], self.cum[vert]
        xy[first], d[first] = self.at(line, t0), t0
        xy[last], d[last] = self.at(line, t1), t1
        return xy, part, d


def _outline_crossings(path: _Paths, line: np.ndarray, t0: np.ndarray, t1: np.ndarray,
                       polys: np.ndarray, poly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last distance along path ``line`` between ``t0`` and ``t1`` where it
    crosses the outline of ``polys[poly]`` (NaN where it does not), each row on its own.

    Exact segment intersections in numpy: the piece's segments against the
    outline segments of its polygon whose boxes meet the piece's box.
    """
    n = len(line)
    first, last = np.full(n, np.nan), np.full(n, np.nan)
    # the pieces, and each vertex's distance along its line
    pxy, row, pd_ = path.pieces(line, t0, t1)
    tail = np.r_[row[1:] != row[:-1], True]
    seg = np.flatnonzero(~tail)  # segment k: pxy[k] -> pxy[k + 1], of row row[k]
    if len(seg) == 0:
        return first, last
    p0, p1, srow = pxy[seg], pxy[seg + 1], row[seg]
    # the outline segments of the polygons used, each polygon once
    upoly, pinv = np.unique(poly, return_inverse=True)
    pinv = pinv.ravel()
    parts, part_of = shapely.get_parts(polys[upoly], return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    oxy, oi = shapely.get_coordinates(rings, return_index=True)
    # the pieces' boxes, and per polygon the box round its rows' pieces: one pass
    # over the outline segments keeps those meeting it (a few of ~1,000 a county)
    lo_b = np.full((n, 2), np.inf)
    hi_b = np.full((n, 2), -np.inf)
    np.minimum.at(lo_b, srow, np.minimum(p0, p1))
    np.maximum.at(hi_b, srow, np.maximum(p0, p1))
    plo = np.full((len(upoly), 2), np.inf)
    phi = np.full((len(upoly), 2), -np.inf)
    np.minimum.at(plo, pinv, lo_b)
    np.maximum.at(phi, pinv, hi_b)
    vpoly = part_of[ring_of[oi]]
    ox, oy = oxy[:, 0], oxy[:, 1]
    vp = vpoly[:-1]
    same = (oi[1:] == oi[:-1]) \
        & (np.minimum(ox[:-1], ox[1:]) <= phi[vp, 0]) \
        & (np.maximum(ox[:-1], ox[1:]) >= plo[vp, 0]) \
        & (np.minimum(oy[:-1], oy[1:]) <= phi[vp, 1]) \
        & (np.maximum(oy[:-1], oy[1:]) >= plo[vp, 1])
    same = np.flatnonzero(same)
    q0, q1, qpoly = oxy[same], oxy[same + 1], vpoly[same]
    # ... each with the rows of its polygon
    by_poly = np.argsort(pinv, kind="stable")
    rs = np.searchsorted(pinv[by_poly], np.arange(len(upoly)))
    cnt = np.searchsorted(pinv[by_poly], np.arange(len(upoly)), side="right")[qpoly] - rs[qpoly]
    sidx = np.repeat(np.arange(len(same)), cnt)
    r = by_poly[np.repeat(rs[qpoly], cnt) + (np.arange(int(cnt.sum()))
                                              - np.repeat(np.cumsum(cnt) - cnt, cnt))]
    qlo, qhi = np.minimum(q0[sidx], q1[sidx]), np.maximum(q0[sidx], q1[sidx])
    meet = ((qlo <= hi_b[r]) & (qhi >= lo_b[r])).all(axis=1)
    r, sidx = r[meet], sidx[meet]
    if len(r) == 0:
        return first, last
    # ... then each against the piece's own segments
    pstart = np.searchsorted(srow, np.arange(n))
    pcount = np.searchsorted(srow, np.arange(n), side="right") - pstart
    c = pcount[r]
    rr = np.repeat(r, c)
    ss = np.repeat(sidx, c)
    kk = np.repeat(pstart[r], c) + (np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c))
    a0, a1, b0, b1 = p0[kk], p1[kk], q0[ss], q1[ss]
    dv, ev, w = a1 - a0, b1 - b0, b0 - a0
    den = dv[:, 0] * ev[:, 1] - dv[:, 1] * ev[:, 0]
    ok = den != 0  # (parallel segments: a line running along the outline never crosses it)
    den = np.where(ok, den, 1.0)
    u = (w[:, 0] * ev[:, 1] - w[:, 1] * ev[:, 0]) / den
    v = (w[:, 0] * dv[:, 1] - w[:, 1] * dv[:, 0]) / den
    hit = ok & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    if not hit.any():
        return first, last
    ds = pd_[seg[kk[hit]]]
    at = ds + u[hit] * (pd_[seg[kk[hit]] + 1] - ds)
    np.fmin.at(first, rr[hit], at)
    np.fmax.at(last, rr[hit], at)
    return first, last


def _join(values) -> str:
    return st.SEP.join(str(v) for v in values)


def _sections_frame(rows, cty, crs) -> gpd.GeoDataFrame:
    if not rows:
        empty = gpd.GeoDataFrame(columns=SECTION_COLUMNS + ["_rowid_sid"], geometry="geometry",
                                 crs=st.OUTPUT_CRS)
        return empty
    pts = project_gdf(gpd.GeoSeries([r["geometry"] for r in rows], crs=crs), st.OUTPUT_CRS)
    # plain lists and one coordinate array: per-row numpy indexing and Point
    # attribute access cost more than the rest of the row
    ids, names, city, prov = (cty[c].to_numpy().tolist()
                              for c in ("county_id", "county", "city", "province"))
    xy = shapely.get_coordinates(pts.values).tolist()

    def join(values: list, idx: list[int]) -> str:  # the values at idx, as _join joins them
        return _join([values[i] for i in idx])

    recs = []
    used: dict[str, int] = {}
    for r, p, (x, y) in zip(rows, pts, xy):
        up, down = r["_up"], r["_down"]
        share_up = "1" if len(up) == 1 else _join(["0.5"] * len(up))
        share_down = "1" if len(down) == 1 else _join(["0.5"] * len(down))
        up_ids, down_ids = join(ids, up), join(ids, down)
        key = f"{r['river']}|{r['kind']}|{up_ids}|{down_ids}|{x:.3f}|{y:.3f}"
        sid = "S" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
        if sid in used:  # same parties at the same place on two chains: keep both, stably
            used[sid] += 1
            sid = f"{sid}-{used[sid]}"
        else:
            used[sid] = 1
        recs.append(dict(
            section_id=sid, river=r["river"], kind=r["kind"], level=r["level"],
            upstream_ids=up_ids, downstream_ids=down_ids,
            upstream_names=join(names, up), downstream_names=join(names, down),
            upstream_shares=share_up, downstream_shares=share_down,
            upstream_city=join(city, up), downstream_city=join(city, down),
            upstream_province=join(prov, up), downstream_province=join(prov, down),
            reach_id=r["reach_id"], flags=r["flags"], geometry=p, _rowid_sid=sid,
        ))
    return gpd.GeoDataFrame(recs, columns=SECTION_COLUMNS + ["_rowid_sid"], geometry="geometry",
                            crs=st.OUTPUT_CRS)


def _boundary_frame(chains: list[Chain], cty, crs) -> gpd.GeoDataFrame:
    """Boundary stretches: pair runs merged across nodes when the banks stay the same."""
    pieces = []
    for c in chains:
        for k, r in enumerate(c.runs):
            if r.is_pair:
                pieces.append((c, k, r))
    parent = list(range(len(pieces)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    last_of = {(c.cid): i for i, (c, k, r) in enumerate(pieces) if k == len(c.runs) - 1}
    first_of = {(c.cid): i for i, (c, k, r) in enumerate(pieces) if k == 0}
    ending = [c for c in chains if c.cid in last_of]  # chains ending on a border
    need = {c.v for c in ending}
    by_u = defaultdict(list)
    for c in chains:
        if c.u in need:
            by_u[c.u].append(c)
    for c in ending:
        i = last_of[c.cid]
        for d in by_u[c.v]:
            j = first_of.get(d.cid)
            if j is not None and (pieces[i][2].left, pieces[i][2].right) == \
                    (pieces[j][2].left, pieces[j][2].right):
                parent[find(j)] = find(i)
    groups = defaultdict(list)
    for i in range(len(pieces)):
        groups[find(i)].append(i)
    ids, names = cty.county_id.to_numpy(), cty.county.to_numpy()
    pc_arrays = (cty.province.to_numpy(), cty.city.to_numpy())
    # every piece's line: a chain's pieces cut in arrays (one coordinate pass over
    # the chains), then all lines in one linestrings call (~60 µs a call otherwise)
    on_chain = defaultdict(list)
    for i, (c, _, _) in enumerate(pieces):
        on_chain[c.cid].append(i)
    idx_of = list(on_chain.values())
    lines = np.empty(len(pieces), dtype=object)
    if pieces:
        path = _Paths(np.array([pieces[idx[0]][0].geometry for idx in idx_of], dtype=object))
        which = np.concatenate([np.asarray(idx) for idx in idx_of])
        chain = np.repeat(np.arange(len(idx_of)), [len(idx) for idx in idx_of])
        xy, part, _ = path.pieces(chain, np.array([pieces[i][2].start for i in which.tolist()]),
                                  np.array([pieces[i][2].end for i in which.tolist()]))
        part = which[part]
        order = np.argsort(part, kind="stable")
        lines[:] = shapely.linestrings(xy[order], indices=part[order])
    recs, geoms = [], []
    for members in groups.values():
        c0, _, r0 = pieces[members[0]]
        parts = [lines[i] for i in members]
        geom = shapely.line_merge(shapely.multilinestrings(parts)) if len(parts) > 1 else parts[0]
        length = sum(p.length for p in parts)
        lv = _level([r0.left, r0.right], pc_arrays)
        recs.append(dict(
            river=c0.river, left_ids=ids[r0.left], right_ids=ids[r0.right],
            left_names=names[r0.left], right_names=names[r0.right], level=lv,
            length_km=round(length / 1000.0, 3), shares="0.5|0.5",
        ))
        geoms.append(geom)
    if not recs:
        return gpd.GeoDataFrame(
            columns=["stretch_id", "river", "left_ids", "right_ids", "left_names", "right_names",
                     "level", "length_km", "shares", "geometry"], geometry="geometry",
            crs=st.OUTPUT_CRS)
    gdf = gpd.GeoDataFrame(recs, geometry=gpd.GeoSeries(geoms, crs=crs).values, crs=crs)
    gdf = project_gdf(gdf, st.OUTPUT_CRS)
    rep = gdf.geometry.representative_point()
    gdf.insert(0, "stretch_id", [
        "B" + hashlib.sha1(f"{r}|{l}|{rt}|{p.x:.3f}|{p.y:.3f}".encode()).hexdigest()[:10]
        for r, l, rt, p in zip(gdf.river, gdf.left_ids, gdf.right_ids, rep)])
    return gdf.sort_values(["river", "stretch_id"]).reset_index(drop=True)


def _section_graph(chains: list[Chain], pos: dict[str, tuple]) -> nx.DiGraph:
    """Link each section to the next section(s) downstream along the flow graph."""
    on_chain: dict[int, list[tuple[float, str]]] = defaultdict(list)
    at_node: dict[tuple[int, int], list[str]] = defaultdict(list)  # (via chain, out chain)
    for sid, (cid, s, via) in pos.items():
        if via is None:
            on_chain[cid].append((s, sid))
        else:
            at_node[(via, cid)].append(sid)
    for v in on_chain.values():
        v.sort()
    by_u: dict[str, list[Chain]] = defaultdict(list)
    for c in chains:
        by_u[c.u].append(c)

    def after(cid: int, s: float, seen: set) -> list[str]:
        for s2, sid in on_chain.get(cid, []):
            if s2 > s:
                return [sid]
        out: list[str] = []
        for d in by_u[chains[cid].v]:
            node_secs = at_node.get((cid, d.cid))
            if node_secs:
                out.extend(node_secs)
            elif d.cid not in seen:
                seen.add(d.cid)
                out.extend(after(d.cid, -1.0, seen))
        return out

    SG = nx.DiGraph()
    SG.add_nodes_from(pos)
    for sid, (cid, s, via) in pos.items():
        for nxt in after(cid, s if via is None else -1.0, {cid}):
            if nxt != sid:
                SG.add_edge(sid, nxt)
    return SG


def _qa_frame(qa, reaches, sections, cty, usable, counties_in) -> pd.DataFrame:
    base = pd.DataFrame(columns=QA_COLUMNS) if qa is None else qa[QA_COLUMNS].copy()
    # orientation flags onto the input rows that produced flagged reaches
    flagged = reaches[reaches.orientation_flag != ""]
    uniq = flagged[["source_row", "orientation_flag"]].drop_duplicates() \
        .sort_values(["source_row", "orientation_flag"])
    # most rows carry one flag: join text only where a row has several (a pandas
    # string aggregation runs Python per group: seconds on 100k reaches)
    rows_ = uniq.source_row.to_numpy()
    flags_ = uniq.orientation_flag.to_numpy().astype(object)
    start = np.flatnonzero(np.r_[True, rows_[1:] != rows_[:-1]]) if len(rows_) else \
        np.zeros(0, dtype=int)
    end = np.r_[start[1:], len(rows_)]
    joined = [flags_[a] if b - a == 1 else "; ".join(flags_[a:b].tolist())
              for a, b in zip(start.tolist(), end.tolist())]
    by_row = pd.Series(joined, index=rows_[start], dtype=object)
    if len(base) and len(by_row):
        flag = base.source_row.map(by_row)
        hit = (base.layer == "rivers") & (base.status == "used") & flag.notna()
        h = np.flatnonzero(hit.to_numpy())
        # whole columns replaced: assigning into a text column row by row (.loc) costs
        # about a second per 300k rows
        status = base.status.to_numpy(dtype=object).copy()
        reason = base.reason.to_numpy(dtype=object).copy()
        status[h] = "flagged"
        had, add = reason[h], flag.to_numpy(dtype=object)[h]  # flags are never empty
        reason[h] = np.where(had == "", add, had + "; " + add)
        base["status"], base["reason"] = status, reason
    rows: list[dict] = []
    source = counties_in.attrs.get("source", "counties")
    party = defaultdict(int)
    for col in ("upstream_ids", "downstream_ids"):
        for v in sections[col]:
            for cid in str(v).split(st.SEP):
                party[cid] += 1
    for i, (cid, q, ok) in enumerate(zip(cty.county_id, cty.qa, usable)):
        if not ok:
            rows.append(dict(layer="counties", feature_id=cid, source=source, source_row=i,
                             status="excluded", reason=q or "no geometry"))
            continue
        n = party.get(str(cid), 0)
        reason = f"party to {n} section(s)" if n else "no cross-boundary river"
        if q:
            reason = f"{q}; {reason}"
        rows.append(dict(layer="counties", feature_id=cid, source=source, source_row=i,
                         status="flagged" if q else "used", reason=reason))
    return pd.concat([base, pd.DataFrame(rows, columns=QA_COLUMNS)], ignore_index=True)


# ---------------------------------------------------------------------------
# monitoring points
# ---------------------------------------------------------------------------
def snap_points_to_sections(
    points: gpd.GeoDataFrame,
    sections: gpd.GeoDataFrame,
    settings: st.Settings = st.DEFAULT,
    crs: str | None = None,
) -> gpd.GeoDataFrame:
    """Match official monitoring points to discovered sections.

    A point matches the nearest section within ``monitoring_snap_m``; when both
    the point and the section carry a river name they must agree (a name that
    contains the other counts, e.g. 黄河 and 黄河(下游)).

    Returns
    -------
    geopandas.GeoDataFrame
        The points with ``section_id``, ``distance_m`` and ``status``
        (``matched`` or why nothing matched).
    """
    crs = crs or analysis_crs_for(points, sections)
    p = project_gdf(points, crs)
    s = project_gdf(sections, crs)
    out = points.copy()
    out["section_id"] = ""
    out["distance_m"] = np.nan
    out["status"] = ""
    if len(s) == 0:
        out["status"] = "no sections discovered"
        return out
    tree = shapely.STRtree(s.geometry.values)
    pi, si = tree.query(p.geometry.values, predicate="dwithin", distance=settings.monitoring_snap_m)
    d = shapely.distance(p.geometry.values[pi], s.geometry.values[si])
    cand = pd.DataFrame({"p": pi, "s": si, "d": d}).sort_values(["p", "d", "s"])
    for i in range(len(p)):
        c = cand[cand.p == i]
        if c.empty:
            out.iloc[i, out.columns.get_loc("status")] = (
                f"no section within {settings.monitoring_snap_m:.0f} m")
            continue
        pr = str(p.river.iat[i]) if "river" in p else ""
        best = None
        for _, row in c.iterrows():
            sr = str(s.river.iat[int(row.s)])
            if not pr or not sr or pr in sr or sr in pr:
                best = row
                break
        if best is None:
            out.iloc[i, out.columns.get_loc("status")] = (
                f"sections nearby are on other rivers than {pr!r}")
            continue
        out.iloc[i, out.columns.get_loc("section_id")] = s.section_id.iat[int(best.s)]
        out.iloc[i, out.columns.get_loc("distance_m")] = round(float(best.d), 1)
        out.iloc[i, out.columns.get_loc("status")] = "matched"
    return out
