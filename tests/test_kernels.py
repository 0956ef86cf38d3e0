"""The fast geometry kernels agree with plain shapely / scipy on random inputs.

Discovery replaces per-pair GEOS calls with k-d trees and numpy; each kernel is
checked here against the slow, obvious computation it replaces.
"""

from __future__ import annotations

from unittest.mock import patch

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import assume, example, given, settings as hsettings, strategies as hs
from scipy.interpolate import RegularGridInterpolator

from basins.network import (SegmentIndex, _medial_path, first_of_groups, predecessor_chain,
                            simplified_line, symmetric_csr, union_of_polygons)
from basins.read import Dem
from basins.sections import (CountyOutlines, _contested, _distances_to_counties, _label_samples,
                             _side_votes)
from basins.synthetic import make_basin


def _random_lines(rng, n, span=10_000.0):
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 12))
        xy = rng.uniform(0, span, 2) + np.cumsum(rng.normal(0, 800, (k, 2)), axis=0)
        out.append(shapely.linestrings(xy))
    return np.array(out, dtype=object)


@hsettings(max_examples=40, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), tol=hs.floats(50, 3000), ball=hs.booleans())
def test_segment_index_pairs_match_shapely(seed, tol, ball):
    # both searches: ball queries point by point (few points) and dual-tree
    import basins.network as network
    rng = np.random.default_rng(seed)
    lines = _random_lines(rng, int(rng.integers(1, 8)))
    xy = rng.uniform(-2000, 12_000, (60, 2))
    idx = SegmentIndex(lines, tol)
    with patch.object(network, "_BALL_QUERY_POINTS", 1000 if ball else 0):
        pi, sj, d, pos = idx.pairs(xy, tol)
    near = {(int(p), int(idx.owner[s])) for p, s in zip(pi, sj)}
    pts = shapely.points(xy)
    truth = {(p, j) for p in range(len(xy)) for j in range(len(lines))
             if shapely.distance(pts[p], lines[j]) <= tol}
    # a pair right at the tolerance may fall either way by rounding
    dist = {(p, j): shapely.distance(pts[p], lines[j]) for p, j in near ^ truth}
    assert all(abs(v - tol) < 1e-6 for v in dist.values())
    # the nearest segment of each line gives line_locate_point's position
    best: dict = {}
    for p, s, dd, at in zip(pi, sj, d, pos):
        key = (int(p), int(idx.owner[s]))
        if key not in best or dd < best[key][0]:
            best[key] = (dd, at)
    for (p, j), (dd, at) in best.items():
        assert abs(dd - shapely.distance(pts[p], lines[j])) < 1e-6
        ref = shapely.line_locate_point(lines[j], pts[p])
        # equal up to ties (two points of the line at the same distance)
        if abs(at - ref) > 1e-3:
            q = shapely.line_interpolate_point(lines[j], at)
            assert abs(shapely.distance(q, pts[p]) - dd) < 1e-6


@hsettings(max_examples=40, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), tol=hs.floats(50, 3000), k=hs.integers(1, 6))
def test_segment_index_any_within_matches_pairs(seed, tol, k):
    # the k-nearest shortcut decides exactly what the full pair search decides,
    # for any k (small k sends more points to the fallback)
    rng = np.random.default_rng(seed)
    lines = _random_lines(rng, int(rng.integers(1, 8)))
    xy = rng.uniform(-2000, 12_000, (200, 2))
    idx = SegmentIndex(lines, tol)
    want = np.zeros(len(xy), bool)
    want[idx.pairs(xy, tol)[0]] = True
    got = idx.any_within(xy, tol, k=k)
    assert np.array_equal(got, want)


def test_segment_index_pairs_on_two_threads_equal_one(monkeypatch):
    import basins.network as network
    rng = np.random.default_rng(5)
    lines = _random_lines(rng, 30)
    xy = rng.uniform(-2000, 12_000, (5000, 2))
    idx = SegmentIndex(lines, 400.0)
    one = idx.pairs(xy, 400.0)
    monkeypatch.setattr(network, "_THREAD_MIN_POINTS", 100)
    two = idx.pairs(xy, 400.0)
    assert len(one[0]) > 1000
    key = lambda r: sorted(zip(*(a.tolist() for a in r)))  # noqa: E731
    assert key(one) == key(two)


@hsettings(max_examples=30, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), max_len=hs.floats(20, 3000))
def test_segment_index_pieces_end_on_the_vertices(seed, max_len):
    # a long segment is cut into equal pieces: the first starts on its first vertex
    # and the last ends on its second, exactly (no rounding), and a repeated vertex
    # gives no segment
    rng = np.random.default_rng(seed)
    lines = list(_random_lines(rng, int(rng.integers(1, 6))))
    xy = shapely.get_coordinates(lines[0])
    lines[0] = shapely.linestrings(np.insert(xy, 1, xy[1], axis=0))  # a repeated vertex
    idx = SegmentIndex(np.array(lines, dtype=object), max_len)
    ends_a = {tuple(p) for p in idx.a.tolist()}
    ends_b = {tuple(p) for p in idx.b.tolist()}
    for line in lines:
        c = shapely.get_coordinates(shapely.remove_repeated_points(line))
        assert {tuple(p) for p in c[:-1].tolist()} <= ends_a
        assert {tuple(p) for p in c[1:].tolist()} <= ends_b
    assert (idx.length > 0).all()
    assert idx.length.max() <= max_len * (1 + 1e-9)


@hsettings(max_examples=30, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), tol=hs.floats(50, 3000), cut=hs.floats(0.2, 4))
def test_cover_share_is_the_same_whatever_the_index_segments(seed, tol, cut):
    # one index may serve searches of other tolerances (discovery shares the
    # near-duplicate index with the centre-line test): distances are exact
    import basins.network as network
    rng = np.random.default_rng(seed)
    targets = _random_lines(rng, int(rng.integers(1, 8)))
    lines = _random_lines(rng, int(rng.integers(1, 8)))
    want = network._cover_share(lines, SegmentIndex(targets, tol), tol, 200.0)
    got = network._cover_share(lines, SegmentIndex(targets, tol * cut), tol, 200.0)
    assert np.array_equal(want, got)


def test_segment_index_does_not_join_parts():
    # two parts far apart: no segment may run between them
    mls = shapely.multilinestrings([[(0, 0), (10, 0)], [(1000, 0), (1010, 0)]])
    idx = SegmentIndex(np.array([mls], dtype=object), 5.0)
    pi, _, _, _ = idx.pairs(np.array([[500.0, 0.0]]), 100.0)
    assert len(pi) == 0


def _outlines_and_lines(rng):
    """Random polygon outlines (one with a hole) and lines of three kinds: runs of
    consecutive outline vertices (either direction), such runs with one vertex
    moved by a hair, and chords joining outline vertices that are not neighbours.
    The truth: every segment of the line is an outline segment."""
    rings = []
    for _ in range(int(rng.integers(1, 5))):
        k = int(rng.integers(4, 15))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(200, 2000, k)
        c = rng.uniform(0, 10_000, 2)
        rings.append(np.column_stack([c[0] + r * np.cos(ang), c[1] + r * np.sin(ang)]))
        if len(rings) == 1:  # star-shaped round c: the ring shrunk towards c is a hole
            rings.append(c + (rings[0] - c) * 0.3)
    polys = [shapely.polygons(rings[0], holes=[rings[1]])]
    polys += [shapely.polygons(r) for r in rings[2:]]
    outlines = shapely.boundary(np.array(polys, dtype=object))
    segs = {tuple(sorted(map(tuple, pq))) for r in rings for pq in zip(r, np.roll(r, -1, 0))}
    lines, truth = [], []
    for _ in range(int(rng.integers(1, 20))):
        ring = rings[int(rng.integers(len(rings)))]
        k = len(ring)
        i, n = int(rng.integers(k)), int(rng.integers(2, k + 2))
        xy = ring[(i + np.arange(n)) % k]
        if rng.random() < 0.5:
            xy = xy[::-1]
        kind = rng.integers(3)
        if kind == 1:  # one vertex off the outline by a hair
            xy = xy.copy()
            xy[int(rng.integers(n)), 0] += 1e-7
        elif kind == 2:  # a chord: skips a vertex
            xy = ring[[i, (i + 2) % k]]
        lines.append(shapely.linestrings(xy))
        truth.append(all(tuple(sorted((tuple(p), tuple(q)))) in segs
                         for p, q in zip(xy[:-1], xy[1:])))
    return outlines, np.array(lines, dtype=object), np.array(truth)


@hsettings(max_examples=60, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), collide=hs.booleans())
def test_lines_on_segments_and_cover_share_shortcut(seed, collide):
    # exact membership of every segment, either direction; with every hash made
    # equal (collide) matches can only be lost, never made, and the shares of
    # _cover_share stay those of the sampled test
    import basins.network as network
    rng = np.random.default_rng(seed)
    outlines, lines, truth = _outlines_and_lines(rng)
    mult = np.zeros(4, np.uint64) if collide else network._HASH_MULT
    with patch.object(network, "_HASH_MULT", mult):
        idx = SegmentIndex(outlines, 150.0, keep_segments=True)
        on = idx.lines_on_segments(lines)
        if collide:
            assert not (on & ~truth).any()
        else:
            assert np.array_equal(on, truth)
        plain = SegmentIndex(outlines, 150.0)
        tol, step = float(rng.uniform(1, 300)), float(rng.uniform(20, 400))
        want = network._cover_share(lines, plain, tol, step)
        got = network._cover_share(lines, idx, tol, step)
    assert np.array_equal(got, want)
    assert (want[truth] == 1.0).all()


def test_lines_on_segments_needs_kept_segments():
    idx = SegmentIndex(np.array([shapely.linestrings([(0, 0), (1, 0)])], dtype=object), 1.0)
    with pytest.raises(ValueError, match="keep_segments"):
        idx.lines_on_segments(np.array([shapely.linestrings([(0, 0), (1, 0)])], dtype=object))


@hsettings(max_examples=60, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), n=hs.integers(1, 12), fallback=hs.booleans())
@example(seed=15382208, n=10, fallback=True)  # the two algorithms' crossing points differ
def test_union_of_polygons_is_the_union_in_a_fixed_order(seed, n, fallback):
    # overlapping, touching and disjoint boxes, discs and multipolygons, with a line
    # and a point among them (dropped); the buffer-by-0 path and the union_all
    # fallback give the same polygons, in the same order, whatever the input order
    import basins.network as network
    rng = np.random.default_rng(seed)
    geoms = []
    for _ in range(n):
        x, y = rng.uniform(0, 5000, 2).round(-2)  # on a grid: exact touches happen
        w, h = rng.uniform(100, 2000, 2).round(-2)
        kind = rng.integers(4)
        if kind == 0:
            geoms.append(shapely.box(x, y, x + w, y + h))
        elif kind == 1:
            geoms.append(shapely.Point(x, y).buffer(w / 2, quad_segs=4))
        elif kind == 2:
            geoms.append(shapely.multipolygons([shapely.box(x, y, x + w, y + h),
                                                shapely.box(x + w, y, x + 2 * w, y + h / 2)]))
        else:
            geoms.append(shapely.box(x, y, x + w, y + 100.0))
    geoms.append(shapely.linestrings([(0, 0), (9000, 9000)]))
    geoms.append(shapely.points(1, 1))
    geoms = shapely.make_valid(np.array(geoms, dtype=object))
    parts = shapely.get_parts(geoms)
    want = shapely.union_all(parts[shapely.get_type_id(parts) == 3])
    if fallback:  # a buffer that loses area: union_all takes over
        with patch.object(network.shapely, "buffer", lambda g, d: shapely.box(0, 0, 1, 1)):
            got = union_of_polygons(geoms)
    else:
        got = union_of_polygons(geoms)
    assert (shapely.get_type_id(got) == 3).all()
    assert shapely.symmetric_difference(shapely.multipolygons(got), want).area < 1e-6
    assert len(got) == len(shapely.get_parts(want))
    # the buffer path on shuffled input: the same polygons in the same places. Not
    # equal to the bit: where two outlines cross, GEOS's buffer and union_all may
    # compute the crossing point a few ulps apart (seed 15382208, n=10: 1.5e-11 m2)
    again = union_of_polygons(geoms[rng.permutation(len(geoms))])
    assert len(again) == len(got)
    assert (shapely.area(shapely.symmetric_difference(again, got)) < 1e-6).all()
    assert (np.diff(shapely.bounds(got)[:, 0]) >= 0).all()


@hsettings(max_examples=40, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), n=hs.integers(0, 25))
def test_touching_pairs_are_the_intersecting_pairs_once(seed, n):
    # boxes on a grid (edges and corners shared exactly), discs, thin strips, an
    # empty geometry and a line among them: every intersecting pair once (a < b),
    # as a pairwise GEOS test gives it, and the polygons left unprepared
    from basins.network import _touching
    rng = np.random.default_rng(seed)
    geoms = []
    for _ in range(n):
        x, y = rng.uniform(0, 4000, 2).round(-2)
        w, h = rng.uniform(100, 1500, 2).round(-2)
        kind = rng.integers(4)
        geoms.append(shapely.box(x, y, x + w, y + h) if kind == 0 else
                     shapely.Point(x, y).buffer(w / 2, quad_segs=3) if kind == 1 else
                     shapely.box(x, y, x + w, y + 100.0) if kind == 2 else
                     shapely.linestrings([(x, y), (x + w, y + h)]))
    geoms.append(shapely.Polygon())
    geoms = np.array(geoms, dtype=object)
    idx = np.flatnonzero(~shapely.is_empty(geoms))
    got_idx, tree, a, b = _touching(geoms, idx)
    assert got_idx is idx and len(tree) == len(idx)
    assert (a < b).all()
    g = geoms[idx]
    want = sorted((i, j) for i in range(len(g)) for j in range(i + 1, len(g))
                  if shapely.intersects(g[i], g[j]))
    assert sorted(zip(a.tolist(), b.tolist())) == want
    assert not shapely.is_prepared(g).any()


@hsettings(max_examples=30, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), n=hs.integers(0, 300), block=hs.integers(1, 64),
       with_t=hs.booleans())
def test_pair_distances_are_point_segment_distance_to_the_bit(seed, n, block, with_t):
    # block by block (any block size, a last block short) as in one call over every
    # pair, zero-length segments included
    import basins.network as network
    from basins.network import pair_distances, point_segment_distance
    rng = np.random.default_rng(seed)
    p, a = rng.uniform(-5e5, 5e5, (40, 2)), rng.uniform(-5e5, 5e5, (30, 2))
    b = a + rng.normal(0, 900, (30, 2)) * (rng.random((30, 1)) < 0.8)
    pi, sj = rng.integers(0, 40, n), rng.integers(0, 30, n)
    want = point_segment_distance(p[pi], a[sj], b[sj], with_t)
    with patch.object(network, "_PAIR_BLOCK", block):
        got = pair_distances(p, pi, a, b, sj, with_t)
    for g, w in zip(got, want) if with_t else [(got, want)]:
        assert g.tobytes() == w.tobytes()


def _counties_and_points(seed: int, n: int, margin: float):
    """A SYNTHETIC basin's county polygons, and ``n`` random points over it (``margin`` beyond)."""
    b = make_basin(seed=seed % 1000)
    counties = np.asarray(b.counties.geometry.array, dtype=object)
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = b.counties.total_bounds
    xy = np.column_stack([rng.uniform(x0 - margin, x1 + margin, n),
                          rng.uniform(y0 - margin, y1 + margin, n)])
    return counties, rng, xy


@hsettings(max_examples=10, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), tol=hs.floats(300, 4000))
def test_label_samples_match_brute_force(seed, tol):
    import basins.network as network
    counties, _, xy = _counties_and_points(seed, 300, tol)
    pts = shapely.points(xy)
    a, bb = _label_samples(xy, counties, tol)
    with patch.object(network, "_THREAD_MIN_POINTS", 40):  # halves on two threads
        assert [x.tolist() for x in _label_samples(xy, counties, tol)] == [a.tolist(),
                                                                            bb.tolist()]
    for i, p in enumerate(pts):
        d = shapely.distance(p, counties)
        order = [int(j) for j in np.lexsort((np.arange(len(d)), d)) if d[j] <= tol]
        if len(order) > 2 and abs(d[order[1]] - d[order[2]]) < 1e-6:
            continue  # the second nearest is a tie: either answer is right
        want = sorted(order[:2])
        got = [] if a[i] < 0 else [int(a[i])] if bb[i] < 0 else [int(a[i]), int(bb[i])]
        assert got == want, (i, got, want)


def test_dem_sample_matches_scipy():
    rng = np.random.default_rng(7)
    lon = np.cumsum(rng.uniform(0.1, 0.3, 20)) + 100
    lat = np.cumsum(rng.uniform(0.1, 0.3, 15)) + 30
    z = rng.normal(size=(15, 20))
    z[3, 4] = np.nan
    x = rng.uniform(lon[0] - 0.5, lon[-1] + 0.5, 4000)
    y = rng.uniform(lat[0] - 0.5, lat[-1] + 0.5, 4000)
    x[:3], y[:3] = lon[-1], lat[[0, -1, 5]]  # on the grid's last column
    ref = RegularGridInterpolator((lat, lon), z, bounds_error=False, fill_value=np.nan)(
        np.column_stack([y, x]))
    got = Dem(lon, lat, z).sample(x, y)
    assert np.array_equal(np.isnan(ref), np.isnan(got))
    assert np.nanmax(np.abs(ref - got)) < 1e-9


def test_medial_path_of_a_strip_is_its_centre_line():
    strip = shapely.Polygon([(0, 0), (20_000, 0), (20_000, 800), (0, 800)])
    shapely.prepare(strip)
    path = _medial_path(strip, 100.0)
    xy = shapely.get_coordinates(path)
    mid = (xy[:, 0] > 1000) & (xy[:, 0] < 19_000)
    assert np.allclose(xy[mid, 1], 400.0, atol=1.0)
    assert path.length > 18_500


@hsettings(max_examples=80, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), n=hs.integers(0, 400), levels=hs.integers(1, 6))
def test_first_of_groups_is_what_lexsort_puts_first(seed, n, levels):
    # few distinct values: ties in d, and in d and at together, are common
    rng = np.random.default_rng(seed)
    key = rng.integers(0, max(n // 3, 1), n).astype(np.int64) * 7919
    d = rng.integers(0, levels, n).astype(float) * 0.5
    at = rng.integers(0, levels, n).astype(float) * 0.25
    o = np.lexsort((at, d, key))
    want = o[np.r_[True, key[o][1:] != key[o][:-1]]] if n else o
    assert first_of_groups(key, d, at).tolist() == want.tolist()


def _random_edges(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to 3n random edges among n nodes, as (from, to) arrays (repeats and loops
    included)."""
    m = int(rng.integers(0, 3 * n + 1))
    return rng.integers(0, n, m), rng.integers(0, n, m)


@hsettings(max_examples=80, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), n=hs.integers(1, 300))
def test_predecessor_chain_is_the_walk_back_to_the_root(seed, n):
    # a random weighted graph's shortest-path tree, as the medial axis builds it:
    # the doubling walk gives the node-by-node walk, for every node reached
    from scipy import sparse
    from scipy.sparse import csgraph
    rng = np.random.default_rng(seed)
    i, j = _random_edges(rng, n)
    adj = sparse.coo_matrix((rng.uniform(0.1, 5.0, len(i)), (i, j)), shape=(n, n)).tocsr()
    a = int(rng.integers(0, n))
    d, pred = csgraph.dijkstra(adj, directed=False, indices=a, return_predecessors=True)
    for z in np.flatnonzero(np.isfinite(d)).tolist():
        walk = [z]
        while walk[-1] != a:
            walk.append(int(pred[walk[-1]]))
        assert predecessor_chain(pred, z, a).tolist() == walk


@hsettings(max_examples=80, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), n=hs.integers(1, 300))
def test_symmetric_csr_searches_as_the_undirected_graph(seed, n):
    # distinct random edges with random weights: the graph searches the medial axis
    # makes on both directions stored give what scipy's undirected mode gives
    from scipy import sparse
    from scipy.sparse import csgraph
    rng = np.random.default_rng(seed)
    i, j = _random_edges(rng, n)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    pairs = np.unique(np.column_stack([lo, hi])[lo != hi], axis=0)
    rng.shuffle(pairs)
    flip = rng.random(len(pairs)) < 0.5  # either direction given
    i, j = np.where(flip, pairs[:, 1], pairs[:, 0]), np.where(flip, pairs[:, 0], pairs[:, 1])
    w = rng.uniform(0.1, 5.0, len(pairs))
    one_way = sparse.coo_matrix((w, (i, j)), shape=(n, n)).tocsr()
    both = symmetric_csr(i, j, w, n)
    assert both.has_sorted_indices and (both != both.T).nnz == 0
    assert np.array_equal(both.toarray(), (one_way + one_way.T).toarray())
    _, lab_u = csgraph.connected_components(one_way, directed=False)
    _, lab_s = csgraph.connected_components(both, directed=True, connection="weak")
    assert lab_u.tolist() == lab_s.tolist()
    a = int(rng.integers(0, n))
    d_u = csgraph.dijkstra(one_way, directed=False, indices=a)
    d_s, pred = csgraph.dijkstra(both, directed=True, indices=a, return_predecessors=True)
    assert np.allclose(d_u, d_s, rtol=1e-12, atol=0) and \
        np.array_equal(np.isfinite(d_u), np.isfinite(d_s))
    for z in np.flatnonzero(np.isfinite(d_s) & (np.arange(n) != a)).tolist():
        p = int(pred[z])  # each step of the tree is an edge, and distances add up
        assert both[z, p] > 0 and np.isclose(d_s[z], d_s[p] + both[z, p], rtol=1e-12)


@hsettings(max_examples=60, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), tol=hs.floats(0.2, 2.0))
def test_simplified_line_is_simple_and_within_tolerance(seed, tol):
    # random walks, kept when simple: Douglas-Peucker alone crosses itself on some
    rng = np.random.default_rng(seed)
    xy = np.cumsum(rng.normal(size=(int(rng.integers(3, 12)), 2)), axis=0)
    line = shapely.linestrings(xy)
    if not shapely.is_simple(line):
        return
    out = simplified_line(line, tol)
    assert shapely.is_simple(out)
    assert shapely.hausdorff_distance(out, line) <= tol + 1e-9
    plain = shapely.simplify(line, tol, preserve_topology=False)
    if shapely.is_simple(plain):
        assert shapely.equals_exact(out, plain, 0.0)


def test_simplified_line_falls_back_where_douglas_peucker_crosses():
    xy = [[0.43, 0.96], [-0.41, 1.5], [0.27, 2.66], [1.67, 2.16], [0.23, 1.52], [1.56, 0.52],
          [0.18, -0.79], [-1.12, -0.07]]
    line = shapely.linestrings(xy)
    assert shapely.is_simple(line)
    assert not shapely.is_simple(shapely.simplify(line, 0.8, preserve_topology=False))
    out = simplified_line(line, 0.8)
    assert shapely.is_simple(out)
    assert shapely.equals_exact(out, shapely.simplify(line, 0.8), 0.0)


def _smooth_reference(runs, settings, line=None):
    """The plain version of sections._smooth: rescan every run after every step."""
    from basins.sections import VIRTUAL, _extent, _merge_equal, _min_extent
    runs = _merge_equal(runs)
    while len(runs) > 1:
        short = [i for i, r in enumerate(runs)
                 if r.a != VIRTUAL and _extent(r, line) < _min_extent(r, settings)]
        if not short:
            break
        i = min(short, key=lambda k: (_extent(runs[k], line), k))
        r = runs[i]
        if i == 0:
            runs[1].start = r.start
            del runs[0]
        elif i == len(runs) - 1:
            runs[-2].end = r.end
            del runs[-1]
        else:
            prev, nxt = runs[i - 1], runs[i + 1]
            if prev.label == nxt.label:
                prev.end = r.end
            else:
                mid = (r.start + r.end) / 2
                prev.end = mid
                nxt.start = mid
            del runs[i]
        runs = _merge_equal(runs)
    return runs


@hsettings(max_examples=200, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), n=hs.integers(1, 60), meander=hs.booleans())
def test_smooth_matches_the_plain_rescan(seed, n, meander):
    from basins.sections import VIRTUAL, Run, _Along, _smooth
    from basins.settings import DEFAULT
    rng = np.random.default_rng(seed)
    labels = [(0, -1), (1, -1), (0, 1), (2, -1), (1, 2), (VIRTUAL, -1)]
    cuts = np.r_[0.0, np.sort(rng.uniform(0, 200_000, n - 1)), 200_000.0]
    if rng.random() < 0.3:  # equal lengths: ties broken by position
        cuts = np.linspace(0, 4000.0 * n, n + 1)
    picks = rng.integers(0, len(labels), n)

    def make():
        out = []
        for k in range(n):
            a, b = labels[picks[k]]
            r = Run(a, b, float(cuts[k]), float(cuts[k + 1]))
            if b >= 0:
                r.left, r.right = (a, b) if rng_l[k] else (b, a)
            out.append(r)
        return out
    rng_l = rng.random(n) < 0.5
    line = None
    if meander:  # a zig-zag river: extents (chords) far shorter than lengths
        x = np.linspace(0, 20_000, 400)
        line = _Along(shapely.linestrings(np.column_stack([x, 9000 * np.sin(x / 700)])))
        scale = line.cum[-1] / cuts[-1]
        cuts = cuts * scale
    got = _smooth(make(), DEFAULT, line)
    want = _smooth_reference(make(), DEFAULT, line)
    assert [(r.a, r.b, r.start, r.end, r.left, r.right) for r in got] == \
        [(r.a, r.b, r.start, r.end, r.left, r.right) for r in want]


@hsettings(max_examples=30, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1))
def test_node_keys_are_the_hex_of_the_coordinate_hash(seed):
    from basins.network import node_keys
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-2e7, 2e7, (500, 2))
    xy[:50] = np.round(xy[:50])  # whole metres, negative zero, the origin
    xy[50] = [0.0, -0.0]
    q = np.round(xy * 100).astype(np.int64).view(np.uint64)
    want = []
    for x, y in q.tolist():  # the splitmix64 mix, one node at a time in Python integers
        m = (1 << 64) - 1
        z = (x * 0x9E3779B97F4A7C15 + y) & m
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        want.append(f"{z ^ (z >> 31):016x}")
    assert node_keys(xy).tolist() == want


@hsettings(max_examples=60, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), n=hs.integers(1, 80), loops=hs.integers(0, 3))
def test_chains_partition_the_reaches_and_break_only_where_they_must(seed, n, loops):
    # random oriented trees plus closed rings of through-nodes: chains cover every
    # reach once, join end to start, pass only through 1-in/1-out nodes of one
    # river name, stop everywhere else, and come in order of their first reach
    from collections import Counter

    import geopandas as gpd

    from basins.sections import chains_from_reaches
    rng = np.random.default_rng(seed)
    rows = [(k + 1, int(rng.integers(0, k + 1)) if k else 0) for k in range(n)]
    top = n + 1
    for _ in range(loops):  # a ring of 2-4 reaches
        m = int(rng.integers(2, 5))
        rows += [(top + i, top + (i + 1) % m) for i in range(m)]
        top += m
    xy = {node: (float(node % 97) * 1000, float(node // 97) * 1000 + node * 0.5)
          for node in range(top)}
    names = rng.choice(["a", "b", "", "missing"], len(rows)).tolist()
    names = [None if x == "missing" else x for x in names]  # missing: no name (as "")
    geoms = [shapely.linestrings([xy[u], (xy[u][0] + 300, xy[u][1] + 300), xy[v]])
             for u, v in rows]
    ids = [f"R{i:03d}" for i in range(len(rows))]
    edges = gpd.GeoDataFrame({"reach_id": ids, "u": [str(u) for u, _ in rows],
                              "v": [str(v) for _, v in rows], "river": names},
                             geometry=geoms, crs="EPSG:3857")
    chains = chains_from_reaches(edges)
    seen = Counter(r for c in chains for r in c.reach_ids)
    assert sorted(seen) == ids and set(seen.values()) == {1}
    indeg = Counter(str(v) for _, v in rows)
    outdeg = Counter(str(u) for u, _ in rows)
    by_id = dict(zip(ids, zip(edges.u, edges.v, names)))

    def through(node, name_in, name_out):
        return indeg[node] == 1 and outdeg[node] == 1 and (name_in or "") == (name_out or "")
    firsts = []
    for c in chains:
        seq = [by_id[r] for r in c.reach_ids]
        for (_, v0, n0), (u1, _, n1) in zip(seq, seq[1:]):
            assert v0 == u1 and through(v0, n0, n1)
        assert c.u == seq[0][0] and c.v == seq[-1][1]
        closed = c.u == c.v and through(c.u, seq[-1][2], seq[0][2])
        into = [r for r in ids if by_id[r][1] == c.u]
        if not closed:  # an open chain starts where it must
            assert not (len(into) == 1 and through(c.u, by_id[into[0]][2], seq[0][2]))
        out = [r for r in ids if by_id[r][0] == c.v]
        if not closed:  # ... and stops where it must
            assert not (len(out) == 1 and through(c.v, seq[-1][2], by_id[out[0]][2]))
        assert abs(c.geometry.length - sum(shapely.length(geoms[ids.index(r)])
                                           for r in c.reach_ids)) < 1e-6
        named = [n for _, _, n in seq if n]  # the chain's name: its most common name
        assert c.river == (max(set(named), key=lambda x: (named.count(x), x)) if named else "")
        if not closed:
            firsts.append(ids.index(c.reach_ids[0]))
    assert firsts == sorted(firsts)


@hsettings(max_examples=8, deadline=None)
@given(seed=hs.integers(0, 999), chunk=hs.integers(20, 5000))
def test_near_duplicates_do_not_depend_on_chunking(seed, chunk):
    # chunks of whole lines bound memory; each decides its own lines, so any chunk
    # size gives the same duplicates (copies shifted 150 m, within the tolerance)
    import basins.network as network
    from basins.settings import DEFAULT
    b = make_basin(seed=seed)
    g = np.asarray(b.rivers.geometry.array, dtype=object)
    copies = shapely.transform(g[:5], lambda xy: xy + [150.0, 0.0])
    lines = np.concatenate([g, copies])
    ids = np.array([f"L{i}" for i in range(len(lines))], dtype=object)
    whole = network._near_duplicates(lines, ids, DEFAULT)
    with patch.object(network, "_DUP_CHUNK_PAIRS", chunk):
        parts = network._near_duplicates(lines, ids, DEFAULT)
    assert parts == whole
    for k in range(5):  # one of each original and its copy goes
        assert (k in whole) != (len(g) + k in whole)


@hsettings(max_examples=30, deadline=None)
@given(seed=hs.integers(0, 999))
def test_points_in_polygons_match_strtree(seed):
    # counties of a synthetic basin plus a holed polygon, a multipolygon, an empty
    # and a missing geometry; points inside, outside, on vertices and on edges
    from basins.network import points_in_polygons
    b = make_basin(seed=seed)
    polys = list(b.counties.geometry)
    x0, y0, x1, y1 = b.counties.total_bounds
    polys.append(shapely.box(x0, y0, x0 + 50_000, y0 + 50_000).difference(
        shapely.box(x0 + 10_000, y0 + 10_000, x0 + 20_000, y0 + 20_000)))
    polys.append(shapely.MultiPolygon([shapely.box(x1, y1, x1 + 5000, y1 + 5000),
                                       shapely.box(x1 + 9000, y1, x1 + 9500, y1 + 800)]))
    polys += [shapely.Polygon(), None]
    polys = np.array(polys, dtype=object)
    rng = np.random.default_rng(seed)
    xy = np.column_stack([rng.uniform(x0 - 5000, x1 + 12_000, 3000),
                          rng.uniform(y0 - 5000, y1 + 6000, 3000)])
    verts = shapely.get_coordinates(polys[0])
    xy = np.vstack([xy, verts[:5], (verts[0] + verts[1]) / 2,  # on vertices and an edge
                    [[np.nan, np.nan], [x0 + 100, np.nan]]])  # and NaN: in nothing
    import basins.network as network
    # (the reference tree is built without the NaN points: NaN boxes upset an STRtree)
    qi, qp = shapely.STRtree(shapely.points(xy[:-2])).query(polys, predicate="intersects")
    want = sorted(zip(qp.tolist(), qi.tolist()))
    assert len(want) > 2000
    for threshold in (network._THREAD_MIN_POINTS, 100):  # one thread, then two
        with patch.object(network, "_THREAD_MIN_POINTS", threshold):
            pi, ci = points_in_polygons(xy, polys)
        assert sorted(zip(pi.tolist(), ci.tolist())) == want


def test_points_in_polygons_on_two_threads_survive_fresh_prepared_polygons():
    # a prepared polygon builds its point index on first use; two threads doing
    # that to one polygon at once corrupted the heap (seen as a glibc abort in the
    # national benchmark). Each thread now gets its own polygons. Many rounds of
    # freshly prepared polygons: a crash here kills the test process.
    import basins.network as network
    rng = np.random.default_rng(0)
    with patch.object(network, "_THREAD_MIN_POINTS", 10):
        for _ in range(60):
            polys = np.array([shapely.Point(rng.uniform(0, 100), rng.uniform(0, 100))
                              .buffer(10, 64) for _ in range(50)], dtype=object)
            xy = rng.uniform(0, 100, (50_000, 2))
            pi, ci = network.points_in_polygons(xy, polys)
            assert len(pi) > 0


@hsettings(max_examples=40, deadline=None)
@given(seed=hs.integers(0, 999), n=hs.integers(1, 30))
def test_first_copies_match_pairwise_equality(seed, n):
    # copies reversed, started elsewhere, or missing; near-copies are not copies
    from basins.network import first_copies
    rng = np.random.default_rng(seed)
    base = [shapely.Polygon(rng.uniform(0, 10, (3, 2))) for _ in range(n)]
    base += [shapely.LineString(rng.uniform(0, 10, (3, 2))) for _ in range(n)]
    geoms = []
    for _ in range(3 * n):
        g = base[rng.integers(len(base))]
        r = rng.integers(5)
        if r == 1:
            g = shapely.reverse(g)
        elif r == 2 and g.geom_type == "Polygon":  # same ring, another start
            c = np.asarray(g.exterior.coords)[:-1]
            g = shapely.Polygon(np.roll(c, 1, axis=0))
        elif r == 3:
            g = shapely.affinity.translate(g, 1e-9)
        elif r == 4 and rng.random() < 0.3:
            g = None
        geoms.append(g)
    geoms = np.array(geoms, dtype=object)
    want = []
    for i, g in enumerate(geoms):
        want.append(next(j for j in range(i + 1)
                         if (g is None and geoms[j] is None)
                         or (g is not None and geoms[j] is not None
                             and shapely.equals_exact(shapely.normalize(g),
                                                      shapely.normalize(geoms[j]), 0))))
    assert first_copies(geoms).tolist() == want


@hsettings(max_examples=15, deadline=None)
@given(seed=hs.integers(0, 999), pieces=hs.integers(1, 6), shift=hs.floats(0, 400),
       cover=hs.sampled_from([0.5, 0.9, 1.0]))
def test_near_duplicate_pretest_changes_nothing(seed, pieces, shift, cover):
    # the pre-test (ends, and allowed + 1 samples spread along each line: the middle
    # one where every sample must be covered) only skips lines the full search would
    # reject: same duplicates with it off (a rule rejecting lines with any uncovered
    # tested sample fails here).
    # Rivers cut into pieces (few samples each), copies of some shifted, and
    # copies of only part of a river
    import dataclasses

    import basins.network as network
    from basins.settings import DEFAULT
    b = make_basin(seed=seed)
    g = np.asarray(b.rivers.geometry.array, dtype=object)
    fr = np.linspace(0, 1, pieces + 1)
    cut = [shapely.ops.substring(x, a, c, normalized=True)
           for x in g for a, c in zip(fr[:-1], fr[1:])]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(cut), size=min(8, len(cut)), replace=False)
    copies = [shapely.transform(cut[i], lambda xy: xy + [shift, 0.0]) for i in pick]
    partial = [shapely.ops.substring(cut[i], 0.0, 0.6, normalized=True) for i in pick[:3]]
    spiked = []  # shorter copies with a spike in the middle: the middle sample is
    for i in pick[3:6]:  # uncovered, the rest covered
        h0 = shapely.get_coordinates(shapely.ops.substring(cut[i], 0.0, 0.4, normalized=True))
        h1 = shapely.get_coordinates(shapely.ops.substring(cut[i], 0.4, 0.8, normalized=True))
        spiked.append(shapely.LineString(np.vstack([h0, h0[-1:] + [0.0, 2000.0], h1])))
    lines = np.array(cut + copies + partial + spiked, dtype=object)
    ids = np.array([f"L{i}" for i in range(len(lines))], dtype=object)
    s = dataclasses.replace(DEFAULT, duplicate_min_cover=cover)
    with_test = network._near_duplicates(lines, ids, s)
    with patch.object(network, "_DUP_PRETEST", False):
        without = network._near_duplicates(lines, ids, s)
    assert with_test == without


@hsettings(max_examples=15, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), tol=hs.floats(300, 4000), laid_out=hs.booleans())
def test_distances_to_counties_match_shapely(seed, tol, laid_out):
    # the outline-segment distances equal GEOS's distance to the whole polygon,
    # both for points within the search reach and (by the fallback) beyond it;
    # with the outlines' grid laid out for this reach, or for a smaller one first
    counties, rng, xy = _counties_and_points(seed, 300, tol)
    which = rng.integers(0, len(counties), len(xy))
    want = shapely.distance(shapely.points(xy), counties[which])
    out = want > 0
    outlines = CountyOutlines.for_tolerance(counties, tol) if laid_out else \
        CountyOutlines(counties, tol)
    got = _distances_to_counties(xy[out], which[out], counties, outlines, 2 * tol)
    assert np.allclose(got, want[out], rtol=0, atol=1e-6)


@hsettings(max_examples=12, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), tol=hs.floats(300, 4000), first=hs.floats(0.05, 2.0))
def test_county_outlines_near_keeps_every_segment_within_reach(seed, tol, first):
    # whatever search laid the grid out (``first`` times this one's reach; a
    # smaller one makes the search look more than one cell away), every outline
    # segment within ``tol`` of a point is among those ``near`` gives
    counties, _, xy = _counties_and_points(seed, 60, tol)
    outlines = CountyOutlines(counties, 700.0)
    outlines.near(xy[:1], first * tol)
    sa, sb, own = outlines.near(xy, tol)
    kept = set(zip(map(tuple, sa.tolist()), map(tuple, sb.tolist()), own.tolist()))
    c, f = outlines.coords, outlines.first
    from basins.network import point_segment_distance  # (checked through SegmentIndex)
    pi = np.repeat(np.arange(len(xy)), len(f))
    d = point_segment_distance(xy[pi], np.tile(c[f], (len(xy), 1)),
                               np.tile(c[f + 1], (len(xy), 1)))
    for j in np.unique(np.flatnonzero(d <= tol) % len(f)):
        assert (tuple(c[f[j]]), tuple(c[f[j] + 1]), int(outlines.owner[j])) in kept


def _awkward_counties(seed: int) -> np.ndarray:
    """SYNTHETIC counties with the shapes real layers have: holes (an enclave), a
    MultiPolygon (an island far off), an empty polygon and a missing geometry."""
    counties, rng, _ = _counties_and_points(seed, 1, 0.0)
    counties = counties.copy()
    k = rng.choice(len(counties), 3, replace=False)
    c = shapely.centroid(counties[k[0]])
    counties[k[0]] = shapely.difference(counties[k[0]], shapely.buffer(c, 800.0))
    x0, y0, x1, y1 = shapely.total_bounds(counties)
    islet = shapely.box(x1 + 5e3, y1 + 5e3, x1 + 9e3, y1 + 7e3)
    counties[k[1]] = shapely.multipolygons([counties[k[1]], islet])
    counties[k[2]] = shapely.Polygon()
    return np.concatenate([counties, np.array([None], dtype=object)])


@hsettings(max_examples=15, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), max_len=hs.floats(100, 6000), chunk=hs.integers(1, 70),
       short=hs.booleans())
def test_county_outlines_are_the_rings_segmentized(seed, max_len, chunk, short):
    # built a few counties at a time (``chunk``), into room that may be too short
    # and must grow, the outlines are exactly GEOS's segmentized rings of the whole
    # layer at once: the same vertices, segments and counties
    import basins.sections as sections
    counties = _awkward_counties(seed)
    parts, part_of = shapely.get_parts(counties, return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    coords, ridx = shapely.get_coordinates(shapely.segmentize(rings, max_len), return_index=True)
    first = np.flatnonzero(ridx[1:] == ridx[:-1])
    with patch.object(sections, "_OUTLINE_CHUNK", chunk), \
            patch.object(sections, "_outline_room", (lambda g, m: 1) if short else
                         sections._outline_room):
        outlines = CountyOutlines(counties, max_len)
    assert np.array_equal(outlines.coords, coords)
    assert np.array_equal(outlines.first, first)
    assert np.array_equal(outlines.owner, part_of[ring_of[ridx[first]]])
    assert outlines.n_segments == len(first)
    if not short:  # the room is a bound: growing is never needed
        assert sections._outline_room(counties, max_len) >= len(coords)


def _segment_set(sa, sb, own) -> set:
    return set(zip(map(tuple, sa.tolist()), map(tuple, sb.tolist()), own.tolist()))


@hsettings(max_examples=15, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), tol=hs.floats(300, 4000), first=hs.floats(0.3, 2.0))
def test_near_lines_serve_every_point_on_the_lines(seed, tol, first):
    # outline segments found from lines before any point on them (discover finds
    # them while the flow graph is oriented) include those ``near`` gives for any
    # points along the lines, and label them as a search from the points does.
    # Lines run over the basin and beyond it; the grid may be laid out for another
    # reach first (``first`` times this one)
    counties, rng, _ = _counties_and_points(seed, 1, 0.0)
    x0, y0, x1, y1 = shapely.total_bounds(counties)
    lines = []
    for _ in range(12):
        start = rng.uniform([x0 - 3e4, y0 - 3e4], [x1 + 3e4, y1 + 3e4])
        walk = start + np.cumsum(rng.normal(0, 9000, (int(rng.integers(2, 8)), 2)), axis=0)
        lines.append(shapely.linestrings(walk))
    # and one from a county into a neighbour, with the points where it crosses the
    # border among the points (so that some lie on a border whatever the draw)
    nb = next(j for j in range(1, len(counties)) if shapely.touches(counties[0], counties[j]))
    cross = shapely.LineString([counties[0].representative_point(),
                                counties[nb].representative_point()])
    lines = np.array(lines + [cross], dtype=object)
    outlines = CountyOutlines(counties, tol / 2)
    outlines.near(np.zeros((1, 2)), first * tol)
    near = outlines.near_lines(lines, tol)
    li = rng.integers(0, len(lines), 400)
    xy = np.vstack([shapely.get_coordinates(shapely.line_interpolate_point(
        lines[li], rng.uniform(0, 1, len(li)), normalized=True)),
        shapely.get_coordinates(shapely.intersection(cross, counties[0].boundary))])
    assert near.serves(outlines, xy, tol)
    want = _segment_set(*outlines.near(xy, tol))
    assert want <= _segment_set(near.start, near.end, near.owner)
    plain = _label_samples(xy, counties, tol, outlines)
    assert (plain[1] >= 0).any()  # (some points on a border: the test means something)
    got = _label_samples(xy, counties, tol, outlines, near=near)
    assert [g.tolist() for g in got] == [p.tolist() for p in plain]


def test_near_lines_do_not_serve_points_off_the_lines():
    # a point far from the lines is not served: labelling searches the outlines
    # itself, and the labels are still right
    counties, _, xy = _counties_and_points(3, 200, 0.0)
    tol = 1500.0
    outlines = CountyOutlines.for_tolerance(counties, tol)
    x0, y0, x1, y1 = shapely.total_bounds(counties)
    line = np.array([shapely.linestrings([[x0, y0], [x0 + 3000.0, y0]])], dtype=object)
    near = outlines.near_lines(line, tol)
    assert near.serves(outlines, np.array([[x0 + 1000.0, y0]]), tol)
    assert not near.serves(outlines, xy, tol)
    assert not near.serves(CountyOutlines.for_tolerance(counties, tol), xy[:1] * 0 + [x0, y0],
                           tol)  # (other outlines: their grid numbers other cells)
    got = _label_samples(xy, counties, tol, outlines, near=near)
    assert [g.tolist() for g in got] == [w.tolist() for w in _label_samples(xy, counties, tol)]


@hsettings(max_examples=10, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1))
def test_polygons_contain_xy_on_two_threads_match_shapely(seed):
    import basins.network as network
    counties, rng, xy = _counties_and_points(seed, 2000, 2000.0)
    which = rng.integers(0, len(counties), len(xy))
    want = shapely.contains_xy(counties[which], xy[:, 0], xy[:, 1])
    assert want.any()
    for threshold in (network._THREAD_MIN_POINTS, 50):  # one thread, then two
        with patch.object(network, "_THREAD_MIN_POINTS", threshold):
            got = network.polygons_contain_xy(counties, which, xy)
        assert np.array_equal(got, want)


@hsettings(max_examples=15, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), tol=hs.floats(300, 4000), step_share=hs.floats(0.1, 4.0))
def test_label_samples_along_lines_match_every_point_tested(seed, tol, step_share):
    # samples far from every outline take the polygons of the sample before them on
    # their line: the labels are those of testing every sample (lines start and end
    # anywhere, also outside every county; steps beyond 2 tol test every sample)
    from basins.network import sample_lines
    counties, rng, _ = _counties_and_points(seed, 1, 0.0)
    x0, y0, x1, y1 = shapely.total_bounds(counties)
    lines = []  # ~80 km random walks over the basin (40 km counties) and beyond it
    for k in range(20):
        start = rng.uniform([x0 - 2e4, y0 - 2e4], [x1 + 2e4, y1 + 2e4]) if k else \
            np.array([x0 - 3e4, y0 - 3e4])  # (one starts outside every county)
        walk = start + np.cumsum(rng.normal(0, 8000, (int(rng.integers(2, 12)), 2)), axis=0)
        lines.append(shapely.linestrings(walk))
    step = step_share * tol
    xy, li, _ = sample_lines(np.array(lines, dtype=object), step, as_xy=True)
    want = _label_samples(xy, counties, tol)
    assert (want[0] >= 0).any() and (want[1] >= 0).any() and (want[0] < 0).any()
    got = _label_samples(xy, counties, tol, line=li, step=step)
    assert [g.tolist() for g in got] == [w.tolist() for w in want]


@hsettings(max_examples=15, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), tol=hs.floats(600, 3000))
def test_side_votes_keep_every_run_sign(seed, tol):
    # skipping the distance votes of runs the probes already decide leaves the
    # sign of every run's sum (which bank is left) as the full computation gives
    counties, rng, xy = _counties_and_points(seed, 1000, 0.0)
    a, bb = _label_samples(xy, counties, tol)
    pair = np.flatnonzero(bb >= 0)
    assert len(pair) > 0  # (dozens at these sizes: points near borders, with a pair label)
    ang = rng.uniform(0, 2 * np.pi, len(pair))
    tangents = np.column_stack([np.cos(ang), np.sin(ang)])
    run = np.sort(rng.integers(0, max(len(pair) // 3, 1), len(pair)))  # runs of a few samples
    full = _side_votes(xy[pair], tangents, a[pair], bb[pair], counties, tol)
    assert (full != np.round(full)).any()  # some probes decided nothing: distances voted
    pruned = _side_votes(xy[pair], tangents, a[pair], bb[pair], counties, tol, run=run)
    runs = np.unique(run)
    s_full = np.array([full[run == r].sum() for r in runs])
    s_pruned = np.array([pruned[run == r].sum() for r in runs])
    assert np.array_equal(s_full >= 0, s_pruned >= 0)
    # the pruning does skip work: a sample's vote is either kept or zeroed
    assert np.all((pruned == full) | (pruned == 0))


@hsettings(max_examples=200, deadline=None)
@given(data=hs.data())
def test_contested_votes_are_the_only_ones_that_can_flip_a_run(data):
    # probe votes are whole numbers; a distance vote comes later in [-0.5, 0.5]:
    # whatever those turn out to be, zeroing the uncontested ones keeps each run's sign
    n = data.draw(hs.integers(1, 30))
    # (open samples drawn often: runs with several are the interesting ones)
    votes = np.array(data.draw(hs.lists(hs.sampled_from([0, 0, 0, -1, 1, -2, 2, -4, 4]),
                                        min_size=n, max_size=n)), float)
    run = np.sort(np.array(data.draw(hs.lists(hs.integers(0, 5), min_size=n, max_size=n))))
    later = np.array(data.draw(hs.lists(hs.sampled_from([-0.5, -0.25, 0.0, 0.25, 0.5]),
                                        min_size=n, max_size=n)))
    open_ = votes == 0
    full = np.where(open_, later, votes)
    pruned = np.where(_contested(votes, run), later, votes)
    for r in np.unique(run):
        assert (full[run == r].sum() >= 0) == (pruned[run == r].sum() >= 0)


def test_contested_tie_is_worked_out():
    # one vote against two open samples: if both later vote +0.5 the run sums to
    # exactly 0, which counts as a for the left bank, so the open samples must count
    votes, run = np.array([-1.0, 0.0, 0.0]), np.zeros(3, dtype=int)
    assert _contested(votes, run).tolist() == [False, True, True]


@hsettings(max_examples=40, deadline=None)
@given(seed=hs.integers(0, 999), n=hs.integers(1, 30))
def test_first_copies_of_lines_match_pairwise_equality(seed, n):
    # river layers are all LineStrings: first_copies then tests exactly only the
    # lines sharing vertex count and end points with another, and closed lines.
    # Copies reversed or (closed lines) started elsewhere; near-copies with the
    # same ends and vertex count (another middle vertex, or a 1e-9 shift) are not
    from basins.network import _first_copies_exact, first_copies
    rng = np.random.default_rng(seed)
    base = []
    for _ in range(n):
        c = rng.integers(0, 4, (int(rng.integers(2, 5)), 2)).astype(float)  # a coarse grid:
        if rng.random() < 0.3:                                      # shared ends are common
            c = np.vstack([c, c[:1]]) if len(c) > 2 else c
        base.append(c)
    geoms = []
    for _ in range(3 * n):
        c = base[rng.integers(len(base))].copy()
        r = rng.integers(5)
        if r == 1:
            c = c[::-1]
        elif r == 2 and len(c) > 3 and (c[0] == c[-1]).all():  # closed: another start
            c = np.vstack([np.roll(c[:-1], 1, axis=0), np.roll(c[:-1], 1, axis=0)[:1]])
        elif r == 3 and len(c) > 2:
            c[1] += 1e-9
        elif r == 4:
            c[1:-1] = c[1:-1][::-1]  # same ends, middle vertices in another order
        geoms.append(shapely.LineString(c))
    geoms = np.array(geoms, dtype=object)
    want = []
    for i, g in enumerate(geoms):
        want.append(next(j for j in range(i + 1)
                         if shapely.equals_exact(shapely.normalize(g),
                                                 shapely.normalize(geoms[j]), 0)))
    got = first_copies(geoms).tolist()
    assert got == want
    assert got == _first_copies_exact(geoms).tolist()


@hsettings(max_examples=40, deadline=None)
@given(seed=hs.integers(0, 999), n=hs.integers(1, 25), step=hs.floats(0.5, 40))
def test_samples_of_some_lines_are_exactly_those_of_all_lines(seed, n, step):
    # the near-duplicate search computes only the samples it tests (sample_plan +
    # points_along on a subset of lines); they must be the very samples of
    # sample_lines, to the bit, or results would move with the pretest. The
    # samples themselves lie on their lines, at their distance from the start.
    from basins.network import points_along, sample_lines, sample_plan
    rng = np.random.default_rng(seed)
    geoms = np.array([shapely.LineString(np.cumsum(rng.normal(0, 10, (int(rng.integers(2, 8)), 2)),
                                                   axis=0)) for _ in range(n)], dtype=object)
    xy, li, dist = sample_lines(geoms, step, as_xy=True)
    sub = np.flatnonzero(rng.random(n) < 0.5)
    li2, d2 = sample_plan(shapely.length(geoms), step, sub)
    want = np.isin(li, sub)
    assert li2.tolist() == li[want].tolist() and d2.tolist() == dist[want].tolist()
    assert points_along(geoms, li2, d2).tolist() == xy[want].tolist()
    exact = shapely.get_coordinates(shapely.line_interpolate_point(geoms[li], dist))
    assert np.allclose(xy, exact, atol=1e-6)


@hsettings(max_examples=30, deadline=None)
@given(seed=hs.integers(0, 999), k=hs.integers(2, 6))
def test_node_snaps_near_ends_together_and_leaves_shared_ends_alone(seed, k):
    # k lines radiate from one junction; some start exactly on it, others a little
    # off (within a third of the snap tolerance, so all are within it of each
    # other). Afterwards every line starts on one point, the first line's start
    # (the lowest endpoint of the cluster), and the far ends are untouched.
    import geopandas as gpd

    from basins import settings as st
    from basins.network import _node
    rng = np.random.default_rng(seed)
    tol = st.DEFAULT.snap_tolerance_m
    ang = 2 * np.pi * (np.arange(k) + rng.uniform(-0.3, 0.3, k)) / k  # far ends apart
    off = np.where(rng.random(k) < 0.5, 0.0, 1.0)[:, None] * rng.uniform(-tol / 5, tol / 5, (k, 2))
    far = 5000 * np.column_stack([np.cos(ang), np.sin(ang)])
    lines = [shapely.LineString([off[i], (far[i] + off[i]) / 2, far[i]]) for i in range(k)]
    df = gpd.GeoDataFrame({"reach_id": [f"R{i}" for i in range(k)], "river": "x",
                           "source_row": range(k)}, geometry=lines, crs="EPSG:32650")
    out = _node(df, st.DEFAULT)
    assert len(out) == k and out.u.nunique() == 1 and out.v.nunique() == k
    got = np.array([shapely.get_coordinates(x) for x in out.geometry])
    assert (got[:, 0] == off[0]).all()
    assert (got[:, 1:] == np.array([shapely.get_coordinates(x)[1:] for x in lines])).all()


def test_line_ends_with_and_without_empty_lines():
    from basins.network import line_ends
    a = shapely.LineString([(0, 0), (1, 2), (3, 4)])
    b = shapely.LineString([(5, 6), (7, 8)])
    s, e = line_ends(np.array([a, b], dtype=object))
    assert s.tolist() == [[0, 0], [5, 6]] and e.tolist() == [[3, 4], [7, 8]]
    s, e = line_ends(np.array([a, shapely.LineString(), None, b], dtype=object))
    assert s[[0, 3]].tolist() == [[0, 0], [5, 6]] and e[[0, 3]].tolist() == [[3, 4], [7, 8]]
    assert np.isnan(s[1:3]).all() and np.isnan(e[1:3]).all()
    assert line_ends(np.array([], dtype=object))[0].shape == (0, 2)


@hsettings(max_examples=30, deadline=None)
@given(seed=hs.integers(0, 999), k=hs.integers(1, 5), both=hs.booleans())
def test_node_splits_a_river_where_tributaries_end_on_it(seed, k, both):
    # k tributaries end on the interior of an unsplit 10 km river (within the snap
    # tolerance of it); with ``both``, a second one from the other bank ends at the
    # same point (ends shared by several lines are searched once). The river is cut
    # exactly there, and every tributary's end lands on a cut.
    import geopandas as gpd

    from basins import settings as st
    from basins.network import _node
    rng = np.random.default_rng(seed)
    tol = st.DEFAULT.snap_tolerance_m
    xs = np.sort(rng.choice(np.arange(1, 20) * 500.0, k, replace=False))
    lines = [shapely.LineString([(0, 0), (10_000, 0)])]
    for x in xs:
        gap = rng.uniform(0, tol / 2)
        lines.append(shapely.LineString([(x + 300, 3000), (x, gap)]))
        if both:
            lines.append(shapely.LineString([(x - 300, -3000), (x, gap)]))
    df = gpd.GeoDataFrame({"reach_id": [f"R{i}" for i in range(len(lines))], "river": "x",
                           "source_row": range(len(lines))}, geometry=lines, crs="EPSG:32650")
    out = _node(df, st.DEFAULT)
    main = out[out.source_row == 0]
    assert len(main) == k + 1
    cuts = sorted(round(shapely.get_coordinates(x)[0][0], 6) for x in main.geometry)[1:]
    assert cuts == list(xs)
    assert abs(main.length.sum() - 10_000) < 1e-6
    nodes = set(main.u) | set(main.v)
    assert set(out[out.source_row > 0].v) <= nodes



def test_along_for_many_lines_equals_one_per_line():
    # _Along.for_lines gives each line the very arrays _Along(line) builds (the
    # run smoothing compares their distances with thresholds), empty lines too
    from basins.sections import _Along
    rng = np.random.default_rng(3)
    lines = [shapely.LineString(np.cumsum(rng.normal(0, 100, (int(rng.integers(2, 9)), 2)),
                                          axis=0)) for _ in range(20)]
    lines.insert(0, shapely.LineString())
    lines.insert(7, shapely.LineString())
    lines = np.array(lines, dtype=object)
    along = _Along.for_lines(lines)
    for k, line in enumerate(lines):
        one, many = _Along(line), along(k)
        for attr in ("x", "y", "cum"):
            assert getattr(one, attr).tolist() == getattr(many, attr).tolist(), (k, attr)
        if len(one.cum) > 1:
            s = sorted(rng.uniform(0, one.cum[-1], 2).tolist())
            assert one.distance(*s) == many.distance(*s)


@hsettings(max_examples=40, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), at_vertex=hs.booleans(), n_lines=hs.integers(1, 4))
def test_paths_pieces_and_points_match_interp_and_shapely(seed, at_vertex, n_lines):
    # several lines in one call: the points are np.interp's on each line's own
    # distances to the bit (before the start and past the end too); the parts
    # between pairs of distances are the vertices strictly between and the two
    # interpolated ends (repeated vertices and ends on a vertex included)
    from basins.sections import _Along, _Paths
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n_lines):
        xy = np.cumsum(rng.normal(0, 100, (int(rng.integers(2, 12)), 2)), axis=0)
        lines.append(shapely.LineString(np.repeat(xy, rng.integers(1, 3, len(xy)), axis=0)))
    paths = _Paths(np.array(lines, dtype=object))
    which, t0, t1 = [], [], []
    for k, line in enumerate(lines):
        cum = _Along(line).cum
        assert paths.cum[paths.start[k]:paths.end[k]].tolist() == cum.tolist()
        pick = (lambda: rng.choice(cum, 2)) if at_vertex else \
            (lambda: rng.uniform(0, line.length, 2))
        for _ in range(int(rng.integers(1, 4))):
            a, b = sorted(pick().tolist())
            which.append(k), t0.append(a), t1.append(b)
        t = np.r_[rng.uniform(-50, line.length + 50, 20), cum]
        xy = shapely.get_coordinates(line)
        got = paths.at(np.full(len(t), k), t)
        assert np.array_equal(got[:, 0], np.interp(t, cum, xy[:, 0]))
        assert np.array_equal(got[:, 1], np.interp(t, cum, xy[:, 1]))
    which, t0, t1 = np.array(which), np.array(t0), np.array(t1)
    xy_parts, part, dist = paths.pieces(which, t0, t1)
    assert (np.diff(part) >= 0).all()
    for m in range(len(which)):
        line, s0, s1 = lines[which[m]], t0[m], t1[m]
        cum, xy = _Along(line).cum, shapely.get_coordinates(line)
        got = shapely.linestrings(xy_parts[part == m])
        inner = np.flatnonzero((cum > s0) & (cum < s1))  # the plain rule
        assert len(shapely.get_coordinates(got)) == len(inner) + 2
        assert np.array_equal(shapely.get_coordinates(got)[1:-1], xy[inner])
        assert dist[part == m].tolist() == [s0, *cum[inner].tolist(), s1]
        want = shapely.ops.substring(line, s0, s1)
        assert abs(got.length - want.length) < 1e-6
        assert shapely.hausdorff_distance(got, want) < 1e-6


@hsettings(max_examples=30, deadline=None)
@given(order=hs.permutations(range(5)), pair=hs.booleans())
def test_network_smoothing_takes_neighbours_labels_as_found(order, pair):
    # A (long, county 0) -> B (short, county 1 or border pair 1|2) -> C (short, county
    # 3) -> D (long, county 4) -> E (long, county 4). C is too short for its label
    # and takes D's; B takes C's label as C found it (not D's, passed on through C:
    # that carried one label up any run of short chains, seen on the 北运河 in
    # Tianjin, and made the result depend on the order chains are visited in).
    from basins import settings as st
    from basins.sections import Chain, Run, _smooth_network

    def chain(cid, u, v, x0, x1, a, b=-1):
        g = shapely.LineString([(x0, 0), (x1, 0)])
        return Chain(cid, u, v, [f"R{cid}"], np.zeros(1), g, "r",
                     runs=[Run(a, b, 0.0, g.length, a if b >= 0 else -1, b)])

    chains = [chain(0, "n0", "n1", 0, 50_000, 0),
              chain(1, "n1", "n2", 50_000, 53_000, 1, 2 if pair else -1),
              chain(2, "n2", "n3", 53_000, 55_000, 3),
              chain(3, "n3", "n4", 55_000, 95_000, 4),
              chain(4, "n4", "n5", 95_000, 140_000, 4)]
    _smooth_network([chains[k] for k in order], st.DEFAULT)
    assert [c.runs[0].label for c in chains] == [(0, -1), (3, -1), (4, -1), (4, -1), (4, -1)]
    assert [(c.runs[0].start, c.runs[0].end) for c in chains[1:3]] == [(0.0, 3000.0),
                                                                        (0.0, 2000.0)]


@hsettings(max_examples=25, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), step=hs.sampled_from([20.0, 50.0, 100.0]))
def test_medial_path_skips_only_edges_that_are_inside(seed, step):
    # river-like polygons (a buffered random walk, bends and narrow bays between
    # its loops, sometimes with an island): the path is the same whether short
    # Voronoi edges skip the containment test or every edge takes it
    import basins.network as network
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 600, (int(rng.integers(3, 12)), 2)), axis=0)
    poly = shapely.LineString(walk).buffer(float(rng.uniform(80, 400)), quad_segs=4)
    if rng.random() < 0.5:  # a U: two arms across a slot narrower than the step
        w = float(rng.uniform(5, 60))
        y0 = float(rng.uniform(300, 700))
        poly = shapely.box(0, 0, 3000, 1000).difference(shapely.box(150, y0, 3001, y0 + w))
        poly = shapely.affinity.rotate(poly, float(rng.uniform(0, 180)))
    elif rng.random() < 0.3 and poly.area > 4e5:
        hole = poly.representative_point().buffer(30.0)
        if poly.contains(hole):
            poly = poly.difference(hole)
    poly = max(shapely.get_parts(poly), key=lambda p: p.area)
    shapely.prepare(poly)
    fast = _medial_path(poly, step)
    with patch.object(network, "_MEDIAL_SKIP", False):
        full = _medial_path(poly, step)
    assert (fast is None) == (full is None)
    if fast is not None:
        assert shapely.equals_exact(fast, full, 0)


@hsettings(max_examples=60, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), n_cuts=hs.integers(0, 6), on_vertex=hs.booleans())
def test_split_line_gives_the_substrings_vertex_for_vertex(seed, n_cuts, on_vertex):
    # cuts anywhere, and cuts exactly at vertex distances (as substring sums them)
    import shapely.ops

    from basins.network import split_line
    rng = np.random.default_rng(seed)
    line = _random_lines(rng, 1)[0]
    if rng.random() < 0.4:  # axis-parallel integer steps: vertex distances tie exactly
        steps = rng.integers(-900, 900, (int(rng.integers(2, 12)), 1)).astype(float)
        axis = rng.integers(0, 2, len(steps))
        walk = np.where(np.column_stack([axis == 0, axis == 1]), steps, 0.0)
        line = shapely.linestrings(np.cumsum(np.r_[[[0.0, 0.0]], walk], axis=0))
    xy = shapely.get_coordinates(line)
    at_vertex, run = [], 0.0
    for p, q in zip(xy[:-1].tolist(), xy[1:].tolist()):
        at_vertex.append(run)
        run += ((q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2) ** 0.5
    cuts = rng.uniform(0, line.length, n_cuts).tolist()
    if on_vertex:
        cuts += [c for c in at_vertex if 0 < c < line.length]
    bounds = [0.0] + sorted(set(round(c, 3) for c in cuts if 0 < round(c, 3) < line.length)) \
        + [line.length]
    got = split_line(line, bounds)
    want = [shapely.ops.substring(line, a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w.geom_type == "LineString":
            assert np.array_equal(shapely.get_coordinates(g), shapely.get_coordinates(w))


@hsettings(max_examples=25, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), to=hs.sampled_from(["EPSG:32650", "EPSG:3857",
       "+proj=aea +lat_0=30 +lon_0=110 +lat_1=20 +lat_2=40 +datum=WGS84 +units=m +no_defs"]))
def test_project_gdf_is_to_crs_to_the_bit(seed, to):
    # every geometry kind, missing and empty ones, a renamed geometry column, a series
    from geopandas.testing import assert_geodataframe_equal, assert_geoseries_equal

    from basins.read import project_gdf
    rng = np.random.default_rng(seed)
    c = rng.uniform([100, 20], [120, 40], (12, 2))
    box = shapely.box(*c[0], *(c[0] + 0.3))
    geoms = [None, shapely.Polygon(), shapely.Point(c[1]), shapely.LineString(c[2:5]),
             shapely.MultiPolygon([box, shapely.box(*(c[0] + 0.5), *(c[0] + 0.7)).difference(
                 shapely.box(*(c[0] + 0.55), *(c[0] + 0.6)))]),  # (parts apart: valid)
             shapely.GeometryCollection([shapely.Point(c[6]), shapely.LineString(c[7:9])]),
             shapely.LinearRing(np.vstack([c[9], c[9] + [0.1, 0], c[9] + [0, 0.1]])),
             shapely.MultiPoint(c[10:12])]
    gdf = gpd.GeoDataFrame({"k": np.arange(len(geoms))}, geometry=geoms, crs="EPSG:4326",
                           index=rng.permutation(len(geoms)) * 3).rename_geometry("geom")
    import basins.read as read
    want = gdf.to_crs(to)
    with patch.object(read, "_PROJECT_CHUNK", int(rng.integers(1, 6))):  # many chunks
        got = project_gdf(gdf, to)
    assert_geodataframe_equal(want, got)
    wkb = lambda a: shapely.to_wkb(np.asarray(a.array, dtype=object), hex=True)  # noqa: E731
    assert (wkb(want.geometry) == wkb(got.geometry)).all()  # (None == None too)
    s = gdf.geometry.rename("g")
    assert_geoseries_equal(s.to_crs(to), project_gdf(s, to))
    assert project_gdf(s, to).name == "g"
    with pytest.raises(ValueError, match="naive"):  # no CRS: geopandas' own error
        project_gdf(gdf.set_crs(None, allow_override=True), to)


@hsettings(max_examples=25, deadline=None)
@given(sizes=hs.lists(hs.integers(0, 7), min_size=1, max_size=12), n=hs.integers(1, 80))
def test_coordinate_sample_is_the_layers_coordinates_spread(sizes, n):
    # project_gdf checks the numpy Albers on these, without reading every coordinate
    from basins.read import coordinate_sample
    geoms = np.array([None if k == 0 else shapely.MultiPoint(np.c_[np.arange(k), [j] * k])
                      for j, k in enumerate(sizes)], dtype=object)
    xy = shapely.get_coordinates(geoms)
    want = xy[np.linspace(0, len(xy) - 1, min(len(xy), n)).astype(np.int64)] if len(xy) \
        else np.zeros((0, 2))
    assert np.array_equal(coordinate_sample(geoms, n), want)


def _albers_expected(fast) -> None:
    """On x86-64 with numpy using the C library's sin/cos/log (PROJ's wheels are built
    for the x86-64 baseline, without fused multiply-adds), the numpy Albers must be
    handed out; elsewhere it may be refused (then PROJ does everything)."""
    import platform

    from basins.read import numpy_is_libm
    if platform.machine() in ("x86_64", "AMD64") and numpy_is_libm():
        assert fast is not None
    elif fast is None:
        pytest.skip("the numpy Albers is not PROJ's to the bit here: PROJ does it all")


def _aea(lat_0, lon_0, lat_1, lat_2, ellps="WGS84"):
    return (f"+proj=aea +lat_0={lat_0} +lon_0={lon_0} +lat_1={lat_1} +lat_2={lat_2} "
            f"+x_0=0 +y_0=0 +ellps={ellps} +units=m +no_defs")


@hsettings(max_examples=40, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1),
       lat_0=hs.integers(-600, 600), lon_0=hs.integers(-1800, 1800),
       lat_1=hs.integers(-800, 800), span=hs.integers(0, 400),
       ellps=hs.sampled_from(["WGS84", "GRS80"]))
def test_albers_forward_gives_projs_bits(seed, lat_0, lon_0, lat_1, span, ellps):
    # the numpy Albers that project_gdf uses is PROJ's forward to the last bit, over
    # the whole globe; points PROJ would clamp, wrap or refuse are left to PROJ
    from pyproj import CRS, Transformer

    from basins.read import AlbersForward
    lat_2 = min(lat_1 + span, 899)
    assume(lat_1 + lat_2 != 0)  # PROJ refuses a cone on opposite standard parallels
    crs = _aea(lat_0 / 10, lon_0 / 10, lat_1 / 10, lat_2 / 10, ellps)
    t = Transformer.from_crs(CRS("EPSG:4326"), CRS(crs), always_xy=True)
    fast = AlbersForward.for_transformer(t)
    _albers_expected(fast)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-180, 180, 2000)
    y = rng.uniform(-90, 90, 2000)
    x[:4], y[:4] = [-180, 180, lon_0 / 10, 0], [90, -90, lat_0 / 10, 0]
    px, py = x.copy(), y.copy()
    t.transform(px, py, inplace=True)
    fx, fy = x.copy(), y.copy()
    lam_c = np.deg2rad(x) - np.deg2rad(lon_0 / 10)
    if fast(fx, fy):
        assert np.array_equal(fx, px) and np.array_equal(fy, py)
    else:  # only where PROJ wraps the longitude, or the cone does not reach
        assert (np.abs(lam_c) > np.pi - 1e-9).any() or not np.isfinite(px).all()
        assert np.array_equal(fx, x) and np.array_equal(fy, y)
    # the points it must do: no wrapping, and inside the cone (PROJ gives numbers)
    keep = (np.abs(lam_c) < np.pi - 1e-9) & np.isfinite(px) & np.isfinite(py)
    assert keep.sum() > 100
    fx, fy = x[keep].copy(), y[keep].copy()
    assert fast(fx, fy)
    assert np.array_equal(fx, px[keep]) and np.array_equal(fy, py[keep])


def test_albers_forward_only_for_what_it_computes():
    from pyproj import CRS, Transformer

    from basins.read import AlbersForward
    wgs = CRS("EPSG:4326")
    aea = CRS(_aea(30, 110, 20, 40))
    for t in (Transformer.from_crs(wgs, aea, always_xy=False),  # axis swap first
              Transformer.from_crs(wgs, CRS("EPSG:32650"), always_xy=True),
              Transformer.from_crs(wgs, CRS(_aea(30, 110, 20, 40, "krass")), always_xy=True),
              Transformer.from_crs(aea, wgs, always_xy=True)):  # the inverse
        assert AlbersForward.for_transformer(t) is None
    # points PROJ would refuse, clamp or wrap: left unchanged, for PROJ
    fast = AlbersForward(30, 110, 20, 40, 6378137.0, 298.257223563)
    for bad in ([np.nan, 30.0], [110.0, 91.0], [300.0, 30.0], [-75.0, 30.0], [110, np.inf]):
        x, y = np.array([110.0, bad[0]]), np.array([30.0, bad[1]])
        x0, y0 = x.copy(), y.copy()
        assert not fast(x, y)
        assert np.array_equal(x, x0, equal_nan=True) and np.array_equal(y, y0, equal_nan=True)
    fast.c = -1.0  # a cone no point lies under (PROJ refuses such points): same
    x, y = np.array([110.0, 120.0]), np.array([30.0, 35.0])
    assert not fast(x, y) and x.tolist() == [110.0, 120.0] and y.tolist() == [30.0, 35.0]
    right = Transformer.from_crs(wgs, aea, always_xy=True)
    real = AlbersForward.__call__

    def off(self, x, y):  # one bit off PROJ: the grid check refuses it
        done = real(self, x, y)
        y += np.spacing(y)
        return done

    with patch.object(AlbersForward, "__call__", off):
        assert AlbersForward.for_transformer(right) is None
    _albers_expected(AlbersForward.for_transformer(right))


def test_project_gdf_falls_back_to_proj_when_the_sample_differs():
    # a numpy projection one bit off PROJ's, handed out past the grid check (as a
    # PROJ or numpy differing only on some points could be): the sample of the call
    # sends the whole call to PROJ
    import basins.read as read
    from basins.read import AlbersForward, project_gdf
    rng = np.random.default_rng(5)
    gdf = gpd.GeoDataFrame(geometry=shapely.linestrings(rng.uniform([100, 20], [120, 40],
                                                                    (50, 8, 2))),
                           crs="EPSG:4326")
    to = _aea(30, 110, 20, 40)
    want = gdf.to_crs(to)

    class Off(AlbersForward):
        def __call__(self, x, y):
            done = super().__call__(x, y)
            x += np.spacing(x)
            return done

    off = Off(30, 110, 20, 40, 6378137.0, 298.257223563)
    with patch.object(read, "_albers_for", lambda src, dst: off):
        got = project_gdf(gdf, to)
    assert np.array_equal(shapely.get_coordinates(got.geometry.values),
                          shapely.get_coordinates(want.geometry.values))


def _zigzag_halves(rng, width: float = 20_000.0, height: float = 20_000.0):
    """Two polygons sharing a zigzag border at x ~ width / 2 (A west, B east), and the border."""
    ys = np.linspace(0, height, int(rng.integers(2, 8)))
    xs = width / 2 + rng.uniform(-1500, 1500, len(ys))
    border = np.column_stack([xs, ys])
    a = shapely.Polygon([(0, 0), *border.tolist(), (0, height)])
    b = shapely.Polygon([(width, 0), (width, height), *border[::-1].tolist()])
    return a, b, shapely.LineString(border)


@hsettings(max_examples=40, deadline=None)
@given(seed=hs.integers(0, 2**32 - 1), wiggles=hs.integers(0, 4), near=hs.floats(0, 1),
       multi=hs.booleans())
def test_crossing_spans_find_the_passage_nearest_the_guess(seed, wiggles, near, multi):
    # a line from A into B over a shared zigzag border, meandering back over it
    # `wiggles` times: the position is on the border, where the line passes from A
    # into B, and of those passages the one nearest the guess (counties with
    # islands, as MultiPolygons, when `multi`); where they share the border the
    # line leaves A and enters B at one point
    from basins.sections import crossing_spans
    rng = np.random.default_rng(seed)
    a, b, border = _zigzag_halves(rng)
    if multi:
        a = shapely.MultiPolygon([shapely.box(-5000, 0, -4000, 1000), a])
        b = shapely.MultiPolygon([b, shapely.box(30_000, 0, 31_000, 1000)])
    x = np.sort(rng.uniform(1000, 19_000, 2 * wiggles + 2))
    x[0], x[-1] = 500.0, 19_500.0
    pts = [(xx, 10_000 + rng.uniform(-3000, 3000)) for xx in x]
    mid = len(pts) // 2
    for w in range(wiggles):  # back west over the border and east again
        pts.insert(mid, (float(rng.uniform(8000, 9000)), 10_000 + rng.uniform(-3000, 3000)))
        pts.insert(mid, (float(rng.uniform(11_000, 12_000)), 10_000 + rng.uniform(-3000, 3000)))
    line = shapely.LineString(pts)
    assume(line.is_simple)
    hits = shapely.get_parts(shapely.intersection(line, border))
    assume((shapely.get_type_id(hits) == 0).all())  # crossings, not stretches along it
    at = np.sort(shapely.line_locate_point(line, hits))
    # passages from A into B: just after them the line is in B
    into_b = [p for p in at if b.contains(line.interpolate(p + 1.0))]
    assert into_b
    guess = near * line.length
    gaps = sorted(abs(p - guess) for p in into_b)
    assume(len(gaps) == 1 or gaps[1] - gaps[0] > 50.0)  # no near-tie (a 10 m grid)
    want = min(into_b, key=lambda p: abs(p - guess))
    leave, enter = crossing_spans(np.array([line], dtype=object), [0], [guess], [0.0],
                                  [line.length], np.array([a, b], dtype=object), [0], [1], 10.0)
    assert abs(leave[0] - want) < 1e-6 and abs(enter[0] - want) < 1e-6
    assert border.distance(line.interpolate(leave[0])) < 1e-6


@pytest.mark.parametrize("gap", [-400.0, 0.0, 250.0])
def test_crossing_spans_leave_and_enter_across_a_gap_or_an_overlap(gap):
    # A ends at 10 km - gap/2 and B starts at 10 km + gap/2 (an overlap when gap < 0):
    # a straight line across leaves A there and enters B there (the passage's middle
    # is 10 km); a line that never reaches B, or looks only where it is still in A,
    # has no passage (NaN); the other way round (from B into A) likewise
    from basins.sections import crossing_spans
    a = shapely.box(0, 0, 10_000 + (-gap / 2), 20_000)
    b = shapely.box(10_000 + gap / 2, 0, 20_000, 20_000)
    lines = np.array([shapely.LineString([(1000, 5000), (19_000, 5000)]),
                      shapely.LineString([(1000, 5000), (9000, 7000)]),
                      shapely.LineString([(19_000, 5000), (1000, 5000)])], dtype=object)
    leave, enter = crossing_spans(
        lines, [0, 1, 0, 2], [7000.0, 3000.0, 2000.0, 7000.0], np.zeros(4),
        [18_000.0, lines[1].length, 4000.0, 18_000.0], np.array([a, b], dtype=object),
        [0, 0, 0, 1], [1, 1, 1, 0], 300.0)
    for k in (0, 3):  # 9 km along, the middle; the ends gap / 2 either side
        assert abs(leave[k] - (9000.0 - gap / 2)) < 1e-9, (k, leave[k])
        assert abs(enter[k] - (9000.0 + gap / 2)) < 1e-9, (k, enter[k])
        assert abs((leave[k] + enter[k]) / 2 - 9000.0) < 1e-9
    assert np.isnan(leave[[1, 2]]).all() and np.isnan(enter[[1, 2]]).all()
