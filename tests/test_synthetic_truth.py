"""Ground truth: on SYNTHETIC basins every true section is found with the right
parties (banks in left|right order), kind and level, and nothing else is found."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
import shapely.affinity
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as hst

from basins.read import rivers_from_gdf
from basins.synthetic import CRS, make_basin
from conftest import discover_synthetic

MATCH_M = 6000.0  # truth location vs found point: 2 × tolerance plus sampling


def match(truth, sections):
    """Pair truth rows with found sections; return (missing truth rows, spurious sections)."""
    s = sections.to_crs(CRS)
    found: set = set()
    missing = []
    for _, t in truth.iterrows():
        d = s.distance(shapely.Point(t.x, t.y))
        m = s[(d < MATCH_M) & (s.kind == t.kind) & (s.upstream_ids == t.upstream_ids)
              & (s.downstream_ids == t.downstream_ids) & (s.level == t.level)
              & (s.river == t.river)]
        m = m[~m.index.isin(found)]
        if len(m) == 0:
            missing.append(t.to_dict())
        else:
            found.add(m.index[0])
    return missing, s.drop(index=list(found))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=hst.integers(0, 10**6), n_boundary=hst.integers(0, 2),
       n_meanders=hst.integers(0, 3), reverse=hst.sampled_from([0.0, 0.5, 1.0]))
def test_every_true_section_found_and_nothing_else(seed, n_boundary, n_meanders, reverse):
    basin = make_basin(seed=seed, rows=7, cols=7, n_boundary=n_boundary, n_meanders=n_meanders,
                       reverse_prob=reverse)
    result = discover_synthetic(basin)
    missing, spurious = match(basin.truth, result.sections)
    assert not missing, f"missed {missing}"
    assert spurious.empty, f"spurious {spurious[['kind', 'upstream_ids', 'downstream_ids']]}"


def test_generator_places_every_kind():
    basin = make_basin(seed=3, n_boundary=2, n_meanders=2)
    kinds = set(basin.truth.kind)
    assert kinds == {"crossing", "joins_border", "leaves_border", "border_change"}
    assert set(basin.truth.level) >= {"county", "city"}


def test_meander_over_one_border_is_one_section():
    basin = make_basin(seed=11, n_boundary=0, n_meanders=4)
    straight = make_basin(seed=11, n_boundary=0, n_meanders=0)
    # the meandering rivers really cross their border several times
    cty = basin.counties.set_index("county_id")
    crossings = []
    for _, t in basin.truth.iterrows():
        border = cty.geometry[t.upstream_ids].boundary.intersection(
            cty.geometry[t.downstream_ids].boundary)
        n = 0
        for line in basin.rivers.geometry:
            hit = line.intersection(border)
            n = max(n, len(shapely.get_parts(hit)) if not hit.is_empty else 0)
        crossings.append(n)
    assert max(crossings) >= 5
    result = discover_synthetic(basin)
    assert len(result.sections) == len(basin.truth) == len(straight.truth)


def test_digitised_strategy_trusts_the_data():
    """All lines drawn against the flow: 'digitised' follows them and gets every party
    backwards, the default strategy reorients every reach."""
    basin = make_basin(seed=7, n_boundary=0, n_meanders=0, reverse_prob=1.0)
    auto = discover_synthetic(basin)
    assert auto.reaches.reversed.all()
    missing, spurious = match(basin.truth, auto.sections)
    assert not missing and spurious.empty
    dig = discover_synthetic(basin, orientation="digitised")
    assert (dig.reaches.orientation == "digitised").all()
    swapped = basin.truth.rename(columns={"upstream_ids": "downstream_ids",
                                          "downstream_ids": "upstream_ids"})
    missing, spurious = match(swapped, dig.sections)
    assert not missing and spurious.empty


def test_outlet_is_the_study_edge_end(synthetic_basic):
    basin, result = synthetic_basic
    G = result.graph
    outlets = [n for n, d in G.nodes(data=True) if d["outlet"]]
    assert len(outlets) == 1
    assert G.out_degree(outlets[0]) == 0
    # every node drains to the outlet
    import networkx as nx
    anc = nx.ancestors(G, outlets[0])
    assert len(anc) == G.number_of_nodes() - 1
    assert (result.reaches.orientation_flag == "").all()


def test_user_outlet_overrides(synthetic_basic):
    """Declaring a headwater as the outlet turns the flow around: parties swap."""
    import geopandas as gpd
    basin, result = synthetic_basic
    G = result.graph
    src = [n for n, d in G.nodes(data=True) if d["end"] == "inland"][0]
    pt = gpd.GeoDataFrame(geometry=[shapely.Point(G.nodes[src]["x"], G.nodes[src]["y"])],
                          crs=G.graph["crs"])
    flipped = discover_synthetic(basin, outlets=pt)
    assert flipped.graph.nodes[src]["outlet"]
    assert flipped.graph.out_degree(src) == 0
    assert set(zip(flipped.sections.upstream_ids, flipped.sections.downstream_ids)) != \
        set(zip(result.sections.upstream_ids, result.sections.downstream_ids))


def test_navigation_follows_the_tree(synthetic_basic):
    basin, result = synthetic_basic
    s = result.sections.set_index(["upstream_ids", "downstream_ids"])
    tree = basin.downstream_county
    checked = 0
    for a, b in tree.items():
        if b not in tree:
            continue
        here = s.loc[(a, b), "section_id"]
        nxt = s.loc[(b, tree[b]), "section_id"]
        assert result.downstream_sections(here) == [nxt]
        assert here in result.upstream_sections(nxt)
        # counties draining to the section a→b: a and everything upstream of a
        up = {a}
        changed = True
        while changed:
            new = {k for k, v in tree.items() if v in up} - up
            up |= new
            changed = bool(new)
        assert set(result.counties_draining_to(here)) == up
        checked += 1
    assert checked > 10


def test_levels_from_city_and_province(synthetic_basic):
    basin, result = synthetic_basic
    c = basin.counties.set_index("county_id")
    for _, s in result.sections.iterrows():
        ids = s.upstream_ids.split("|") + s.downstream_ids.split("|")
        if c.province[ids].nunique() > 1:
            assert s.level == "province"
        elif c.city[ids].nunique() > 1:
            assert s.level == "city"
        else:
            assert s.level == "county"
    assert set(result.sections.level) == {"province", "city", "county"}


def test_shares():
    basin = make_basin(seed=5, n_boundary=2, n_meanders=0)
    result = discover_synthetic(basin)
    for _, s in result.sections.iterrows():
        for ids, shares in ((s.upstream_ids, s.upstream_shares),
                            (s.downstream_ids, s.downstream_shares)):
            parts = [float(x) for x in shares.split("|")]
            assert len(parts) == len(ids.split("|"))
            assert np.isclose(sum(parts), 1.0)
            assert parts == ([1.0] if len(parts) == 1 else [0.5, 0.5])
    assert (result.sections.upstream_shares == "0.5|0.5").any()


def test_short_reaches_are_not_taken_for_duplicates():
    """A SYNTHETIC straight river cut into 300 m reaches (shorter than the 1.5 km
    duplicate tolerance) keeps every reach: they continue each other, they do not
    run alongside. Finds the one crossing."""
    import geopandas as gpd

    from basins.read import counties_from_gdf, rivers_from_gdf
    from basins.discover import discover

    rng = np.random.default_rng(5)
    a = shapely.box(0, 0, 40_000, 40_000)
    b = shapely.box(40_000, 0, 80_000, 40_000)
    counties = gpd.GeoDataFrame({"county_id": ["A", "B"], "county": ["甲", "乙"],
                                 "city": ["c1", "c2"], "province": ["p", "p"]},
                                geometry=[a, b], crs=CRS)
    xs = np.arange(5_000, 75_001, 300.0)
    lines = [shapely.LineString([(x0, 20_000 + 5 * x0 / 1000), (x1, 20_000 + 5 * x1 / 1000)])
             for x0, x1 in zip(xs[:-1], xs[1:])]
    lines = [shapely.reverse(g) if rng.random() < 0.5 else g for g in lines]
    rivers = gpd.GeoDataFrame({"NAME": ["Straight river"] * len(lines)}, geometry=lines, crs=CRS)
    result = discover(rivers_from_gdf(rivers, "NAME"),
                      counties_from_gdf(counties, "county_id", "county", "city", "province"),
                      orientation="outlets",
                      outlets=gpd.GeoDataFrame(geometry=[shapely.Point(75_000, 20_375)], crs=CRS))
    rq = result.qa[result.qa.layer == "rivers"]
    assert len(rq) == len(lines) and (rq.status == "merged").sum() == 0
    assert result.sections[["kind", "upstream_ids", "downstream_ids"]].values.tolist() == [
        ["crossing", "A", "B"]]


@settings(max_examples=200, deadline=None)
@given(n=hst.integers(2, 25), edges=hst.lists(hst.tuples(hst.integers(0, 24), hst.integers(0, 24)),
                                               min_size=1, max_size=40))
def test_loop_detection_matches_networkx_bridges(n, edges):
    """The linear-time cycle-edge finder agrees with networkx's bridges on multigraphs."""
    import networkx as nx

    from basins.network import _non_bridges

    ui = np.array([a % n for a, _ in edges])
    vi = np.array([b % n for _, b in edges])
    U = nx.MultiGraph()
    U.add_nodes_from(range(n))
    U.add_edges_from(zip(ui.tolist(), vi.tolist()))
    S = nx.Graph(U)
    S.remove_edges_from(list(nx.selfloop_edges(S)))
    bridges = {(min(a, b), max(a, b)) for a, b in nx.bridges(S) if U.number_of_edges(a, b) == 1}
    want = np.array([(min(a, b), max(a, b)) not in bridges for a, b in zip(ui, vi)])
    assert (_non_bridges(ui, vi, n) == want).all()


@settings(max_examples=12, deadline=None)
@given(angle=hst.floats(20, 90), side=hst.sampled_from([1, -1]),
       flip=hst.lists(hst.booleans(), min_size=40, max_size=40))
def test_short_tributaries_joining_at_an_angle_are_not_duplicates(angle, side, flip):
    """SYNTHETIC: a river and a tributary both cut into 300 m reaches (a fine
    network), the tributary joining at 20-90°, in any digitised direction. No reach
    is a duplicate: a tolerance as long as the reaches took every tributary joining
    at under ~60° for a copy of the river (seen in the dense benchmark basins,
    whose tributaries then lost their outlet)."""
    from basins.network import reaches_from_rivers

    xs = np.arange(0, 6001, 300.0)
    main = [shapely.LineString([(a, 0), (c, 0)]) for a, c in zip(xs[:-1], xs[1:])]
    t = np.radians(angle)
    ds = np.arange(0, 3001, 300.0)  # up the tributary from the junction at x = 3000
    pts = [(3000 - d * np.cos(t), side * d * np.sin(t)) for d in ds]
    trib = [shapely.LineString([p, q]) for p, q in zip(pts[1:], pts[:-1])]
    lines = [shapely.reverse(x) if f else x for x, f in zip(main + trib, flip)]
    rivers = gpd.GeoDataFrame({"NAME": ["main"] * len(main) + ["trib"] * len(trib)},
                              geometry=lines, crs=CRS)
    _, qa = reaches_from_rivers(rivers_from_gdf(rivers, "NAME"), CRS)
    assert (qa.status == "used").all(), qa[qa.status != "used"].reason.tolist()


def _rotated(lines, rot):
    return [shapely.affinity.rotate(x, rot, origin=(0, 0)) for x in lines]


@settings(max_examples=12, deadline=None)
@given(angle=hst.floats(1, 14), rot=hst.floats(0, 360),
       flip=hst.lists(hst.booleans(), min_size=5, max_size=5))
def test_tributaries_converging_at_a_narrow_angle_keep_their_network(angle, rot, flip):
    """SYNTHETIC: two tributaries meet at 1-14°, so the shorter lies within the
    duplicate tolerance of the longer over its whole length and passes for a copy;
    but two more lines end on its upper end. It must stay: merging it cut those
    lines off from the outlet (hundreds of reaches in the 300k and 1M dense
    benchmark basins were flagged "no outlet" that way)."""
    from basins.network import reaches_from_rivers

    t = np.radians(angle)
    up = (6000 * np.sin(t), 6000 * np.cos(t))  # 105-1450 m from the longer tributary
    lines = [shapely.LineString([(0, 0), (0, -10_000)]),  # below the junction
             shapely.LineString([(0, 0), (0, 10_000)]),  # the longer tributary
             shapely.LineString([(0, 0), up]),  # the shorter one
             shapely.LineString([up, (up[0] + 3000, up[1] + 4000)]),  # ending on it
             shapely.LineString([up, (up[0] + 4000, up[1] + 1000)])]
    lines = [shapely.reverse(x) if f else x for x, f in zip(_rotated(lines, rot), flip)]
    rivers = gpd.GeoDataFrame({"NAME": list("DABTU")}, geometry=lines, crs=CRS)
    reaches, qa = reaches_from_rivers(rivers_from_gdf(rivers, "NAME"), CRS)
    assert (qa.status == "used").all(), qa[qa.status != "used"].reason.tolist()
    assert sorted(set(reaches.river)) == list("ABDTU")


@settings(max_examples=8, deadline=None)
@given(rot=hst.floats(0, 360), copy_first=hst.booleans(),
       flip=hst.lists(hst.booleans(), min_size=5, max_size=5))
def test_a_longer_copy_gives_way_to_the_line_the_network_hangs_on(rot, copy_first, flip):
    """SYNTHETIC: a river reach digitised twice, the copy 150 m aside and a little
    longer (so it ranks first), the network ending on the original. The copy is
    the duplicate, whichever comes first in the file; keeping both would double
    every section on the reach."""
    from basins.network import reaches_from_rivers

    orig = shapely.LineString([(0, 0), (10_000, 0)])
    copy = shapely.LineString([(0, 150), (5000, 170), (10_000, 150)])
    net = [shapely.LineString([(10_000, 0), (10_000, -10_000)]),
           shapely.LineString([(0, 0), (-4000, 3000)]),
           shapely.LineString([(0, 0), (-4000, -3000)])]
    lines = [copy, orig] + net if copy_first else [orig, copy] + net
    lines = [shapely.reverse(x) if f else x for x, f in zip(_rotated(lines, rot), flip)]
    rivers = gpd.GeoDataFrame({"NAME": ["main"] * 5}, geometry=lines, crs=CRS)
    reaches, qa = reaches_from_rivers(rivers_from_gdf(rivers, "NAME"), CRS)
    copy_id, orig_id = ("R0", "R1") if copy_first else ("R1", "R0")
    row = qa.set_index("feature_id").loc[copy_id]
    assert row.status == "merged" and f"duplicate of {orig_id}" in row.reason, row.reason
    assert (qa.set_index("feature_id").drop(index=copy_id).status == "used").all()
    assert abs(reaches.length.sum() - 30_000) < 1


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_basin_every_reach_used_and_sections_true(seed):
    """SYNTHETIC dense basin (the scaling benchmark's generator, small): ~200 m
    reaches, every one used (none merged or cut off), and the sections are the
    coarse basin's truth. Spokes fanning out 10° apart ended 35 m from each other,
    inside the 50 m snap tolerance, and were merged as copies."""
    from basins.synthetic import make_dense_basin

    b = make_dense_basin(seed=seed, rows=10, cols=10, reaches=15_000, spoke_length=4000.0)
    res = discover_synthetic(b)
    rivers_qa = res.qa[res.qa.layer == "rivers"]
    assert len(rivers_qa) == len(b.rivers)
    assert (rivers_qa.status == "used").all(), rivers_qa[rivers_qa.status != "used"].head()
    got = sorted(zip(res.sections.upstream_ids, res.sections.downstream_ids))
    assert got == sorted(zip(b.truth.upstream_ids, b.truth.downstream_ids))


def test_analysis_crs_is_the_data_own_when_true_to_scale():
    """SYNTHETIC basin in UTM 50N: analysed in its own CRS (nothing reprojected);
    the same data in Web Mercator (15% scale error at 30°N), mixed CRSs, degrees,
    or moved 1,500 km east of the zone's meridian fall back to Albers."""
    from basins.read import analysis_crs_for

    b = make_basin(seed=3, rows=5, cols=5, n_boundary=0, n_meanders=0)
    assert analysis_crs_for(b.counties, b.rivers) == b.counties.crs.to_wkt()
    far = b.counties.set_geometry(b.counties.geometry.translate(1_500_000, 0))
    for layers in [(b.counties.to_crs(3857), b.rivers.to_crs(3857)),
                   (b.counties, b.rivers.to_crs(4326)), (b.counties.to_crs(4326),), (far,)]:
        assert analysis_crs_for(*layers).startswith("+proj=aea")


def test_sections_do_not_depend_on_the_input_crs():
    """SYNTHETIC: the same basin given in UTM (analysed as is) and in degrees
    (analysed in Albers) gives the same sections, at most a few hundred metres
    apart (where a boundary stretch ends moves with the sampling)."""
    b = make_basin(seed=5, rows=6, cols=6, n_boundary=1, n_meanders=1)
    utm = discover_synthetic(b).sections
    deg = discover_synthetic(type(b)(**{**b.__dict__, "counties": b.counties.to_crs(4326),
                                        "rivers": b.rivers.to_crs(4326)})).sections

    def key(s):
        return sorted(zip(s.kind, s.upstream_ids, s.downstream_ids, s.level))
    assert key(utm) == key(deg)
    a = utm.sort_values(["kind", "upstream_ids", "downstream_ids"]).to_crs(CRS).geometry.values
    d = deg.sort_values(["kind", "upstream_ids", "downstream_ids"]).to_crs(CRS).geometry.values
    assert np.max(shapely.distance(a, d)) < 500


@settings(max_examples=10, deadline=None)
@given(reps=hst.lists(hst.integers(0, 3), min_size=4, max_size=4))
def test_repeated_vertices_are_removed_and_other_lines_kept_as_they_are(reps):
    """SYNTHETIC: a chain of four lines, each vertex repeated 0-3 times. Reaches
    have no repeated vertex (they would give zero-length segments to every
    distance and direction computed later), the same lengths, and lines without
    repeats keep their vertices exactly."""
    from basins.network import reaches_from_rivers

    lines, want = [], []
    for k, r in enumerate(reps):
        c = [(k * 1000.0, 0.0), (k * 1000.0 + 400, 37.5), ((k + 1) * 1000.0, 0.0)]
        want.append(c)
        lines.append(shapely.LineString([p for p in c for _ in range(1 + r * (p == c[1]))]))
    rivers = gpd.GeoDataFrame({"NAME": ["main"] * 4}, geometry=lines, crs=CRS)
    reaches, qa = reaches_from_rivers(rivers_from_gdf(rivers, "NAME"), CRS)
    assert (qa.status == "used").all()
    got = sorted(shapely.get_coordinates(g).tolist() for g in reaches.geometry)
    assert got == sorted([list(map(list, c)) for c in want])


@pytest.mark.parametrize("enabled", [True, False])
def test_discovery_pauses_the_cycle_collector_and_restores_it(enabled):
    """SYNTHETIC: the collector is off while discovery runs (its full passes cost
    ~0.3 s at 100k reaches and free nothing) and left as the caller had it."""
    import gc

    seen = []
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        discover_synthetic(make_basin(seed=3, rows=4, cols=4, n_boundary=0, n_meanders=0),
                           progress=lambda _msg: seen.append(gc.isenabled()))
        assert seen and not any(seen)
        assert gc.isenabled() == enabled
    finally:
        gc.enable() if was else gc.disable()


def test_sections_stage_gives_the_same_layers_on_one_thread_and_two(monkeypatch):
    """Small networks project the reaches and build the boundary stretches on a
    second thread; large ones on one (memory). Both give the same layers."""
    import basins.sections as sections

    basin = make_basin(seed=11, n_boundary=2, n_meanders=1)
    two = discover_synthetic(basin)
    monkeypatch.setattr(sections, "_SECOND_THREAD_MAX_REACHES", 0)
    one = discover_synthetic(basin)
    assert len(two.boundary_rivers) > 0
    for layer in ("sections", "boundary_rivers", "reaches", "qa"):
        assert getattr(one, layer).equals(getattr(two, layer)), layer


def test_outline_segments_found_ahead_give_the_same_layers(monkeypatch):
    """Small networks find the outline segments near their reaches while the flow
    graph is oriented; large ones when the samples are labelled. Both give the
    same layers (SYNTHETIC basin with boundary rivers and meanders)."""
    import sys

    from basins.sections import NearOutlines

    discover_module = sys.modules["basins.discover"]
    served = []
    real = NearOutlines.serves
    monkeypatch.setattr(NearOutlines, "serves",
                        lambda self, *a: served.append(real(self, *a)) or served[-1])
    basin = make_basin(seed=5, n_boundary=3, n_meanders=2)
    ahead = discover_synthetic(basin)
    assert served == [True]  # (the segments found ahead were used)
    monkeypatch.setattr(discover_module, "_AHEAD_MAX_REACHES", -1)
    later = discover_synthetic(basin)
    assert served == [True]
    assert len(ahead.boundary_rivers) > 0
    for layer in ("sections", "boundary_rivers", "reaches", "qa"):
        assert getattr(later, layer).equals(getattr(ahead, layer)), layer


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=hst.integers(0, 10**6), n_meanders=hst.integers(0, 3))
def test_crossings_lie_on_the_border_they_cross(seed, n_meanders):
    # every crossing section sits where its river passes from the upstream county
    # into the downstream one: on their shared border (the SYNTHETIC counties are
    # Voronoi cells, so the border is exact); a straight crossing's is the truth's
    # own point (the river meets the border at the midpoint of the two seeds)
    basin = make_basin(seed=seed, rows=7, cols=7, n_boundary=1, n_meanders=n_meanders)
    result = discover_synthetic(basin)
    sec = result.sections.to_crs(CRS)
    cty = basin.counties.set_index("county_id").geometry
    cross = sec[sec.kind == "crossing"]
    assert len(cross) > 5
    for s in cross.itertuples():
        up, down = cty[s.upstream_ids], cty[s.downstream_ids]
        assert up.boundary.distance(s.geometry) < 1e-6, s.section_id
        assert down.boundary.distance(s.geometry) < 1e-6, s.section_id
    straight = basin.truth[(basin.truth.kind == "crossing")]
    on_truth = 0
    for t in straight.itertuples():
        m = cross[(cross.upstream_ids == t.upstream_ids) & (cross.downstream_ids == t.downstream_ids)]
        d = m.distance(shapely.Point(t.x, t.y)).min()
        on_truth += d < 1e-6
    # the meandering ones' truth point is a vertex of the zigzag, off the border
    assert on_truth >= len(straight) - n_meanders


@settings(max_examples=10, deadline=None)
@given(dx=hst.one_of(hst.floats(-5_500, -600), hst.floats(600, 5_500)), rot=hst.floats(0, 360),
       flip=hst.lists(hst.booleans(), min_size=7, max_size=7))
@example(dx=-5_500.0, rot=112.5, flip=[False] * 7)  # a test point on the border itself
def test_a_crossing_at_a_confluence_lies_on_the_border(dx, rot, flip):
    """SYNTHETIC: a river passes from county A into B (their border at x = 40 km)
    and a tributary joins it dx from the border, on the county side it stays in.
    The short stretch between border and confluence is too short to keep its own
    label, so the crossing is found at the confluence; its point goes on the
    border, on the incoming river (confluence in B) or the outgoing one (in A),
    and navigation still has it at the confluence. Before, it sat at the
    confluence, |dx| off."""
    from basins.discover import discover
    from basins.read import counties_from_gdf

    def turned(g):
        return shapely.affinity.rotate(g, rot, origin=(40_000, 20_000))

    a, b = shapely.box(0, 0, 40_000, 40_000), shapely.box(40_000, 0, 80_000, 40_000)
    counties = gpd.GeoDataFrame({"county_id": ["A", "B"], "county": ["甲", "乙"],
                                 "city": ["c1", "c2"], "province": ["p", "p"]},
                                geometry=[turned(a), turned(b)], crs=CRS)
    node = (40_000 + dx, 20_000)
    up_xs = [5_000, 15_000, 25_000, node[0]]  # (the confluence: 34.5-45.5 km)
    down_xs = [node[0], 50_000, 62_000, 75_000]
    main = [shapely.LineString([(x0, 20_000), (x1, 20_000)])
            for xs in (up_xs, down_xs) for x0, x1 in zip(xs[:-1], xs[1:])]
    side = 1 if dx > 0 else -1  # the tributary stays in the confluence's county
    trib = shapely.LineString([(node[0] + side * 9_000, 34_000), node])
    lines = [turned(g) for g in main + [trib]]
    lines = [shapely.reverse(g) if f else g for g, f in zip(lines, flip)]
    rivers = gpd.GeoDataFrame({"NAME": ["main"] * len(main) + ["trib"]}, geometry=lines, crs=CRS)
    outlet = gpd.GeoDataFrame(geometry=[turned(shapely.Point(75_000, 20_000))], crs=CRS)
    result = discover(rivers_from_gdf(rivers, "NAME"),
                      counties_from_gdf(counties, "county_id", "county", "city", "province"),
                      orientation="outlets", outlets=outlet)
    sec = result.sections.to_crs(CRS)
    assert sec[["kind", "upstream_ids", "downstream_ids", "river"]].values.tolist() == [
        ["crossing", "A", "B", "main"]]
    border = turned(shapely.LineString([(40_000, 0), (40_000, 40_000)]))
    assert border.distance(sec.geometry.iloc[0]) < 1e-6
    assert turned(shapely.Point(40_000, 20_000)).distance(sec.geometry.iloc[0]) < 1e-6
    # its reach is the one it lies on; for navigation it is the confluence's section
    reach = result.reaches.set_index("reach_id").to_crs(CRS).geometry[sec.reach_id.iloc[0]]
    assert reach.distance(sec.geometry.iloc[0]) < 1e-6
    sid = sec.section_id.iloc[0]
    assert result._section_pos[sid][2] is not None  # reached via the incoming chain
    assert result.counties_draining_to(sid) == ["A"]


def _three_counties(width: float, middle: bool, river: list, rot: float, flip: list):
    """SYNTHETIC: counties A | (C, or a gap with no county) of ``width`` | B, the
    river through ``river``'s vertices (cut at each), rotated by ``rot``."""
    from basins.discover import discover
    from basins.read import counties_from_gdf

    def turned(g):
        return shapely.affinity.rotate(g, rot, origin=(40_000, 20_000))

    boxes = [shapely.box(0, 0, 40_000, 40_000),
             shapely.box(40_000 + width, 0, 80_000 + width, 40_000)]
    ids, names = ["A", "B"], ["甲", "乙"]
    if middle:
        boxes.append(shapely.box(40_000, 0, 40_000 + width, 40_000))
        ids.append("C")
        names.append("丙")
    counties = gpd.GeoDataFrame({"county_id": ids, "county": names, "city": ["c"] * len(ids),
                                 "province": ["p"] * len(ids)},
                                geometry=[turned(g) for g in boxes], crs=CRS)
    lines = [turned(shapely.LineString([p, q])) for p, q in zip(river[:-1], river[1:])]
    lines = [shapely.reverse(g) if f else g for g, f in zip(lines, flip)]
    rivers = gpd.GeoDataFrame({"NAME": ["r"] * len(lines)}, geometry=lines, crs=CRS)
    outlet = gpd.GeoDataFrame(geometry=[turned(shapely.Point(river[-1]))], crs=CRS)
    result = discover(rivers_from_gdf(rivers, "NAME"),
                      counties_from_gdf(counties, "county_id", "county", "city", "province"),
                      orientation="outlets", outlets=outlet)
    return result, turned


@settings(max_examples=10, deadline=None)
@given(width=hst.floats(700, 5_500), middle=hst.booleans(), slope=hst.floats(-0.3, 0.3),
       rot=hst.floats(0, 360), flip=hst.lists(hst.booleans(), min_size=5, max_size=5))
def test_a_crossing_through_a_third_county_is_half_way_and_says_so(width, middle, slope, rot,
                                                                   flip):
    """SYNTHETIC: between A and B lies a strip ``width`` wide, a county C or land in
    no county. Too narrow for C to keep its own label (the smoothing absorbs it),
    so the river's one section is the crossing A -> B. Its point is half-way
    along the passage through the strip, and its flags say how long that passage
    is and what holds the point, so that a planner sees the county the scale hid."""
    def y(x):
        return 20_000 + slope * (x - 40_000)

    xs = [5_000, 20_000, 40_000 - 3_000, 40_000 + width + 3_000, 60_000 + width, 75_000 + width]
    result, turned = _three_counties(width, middle, [(x, y(x)) for x in xs], rot, flip)
    sec = result.sections.to_crs(CRS)
    assert sec[["kind", "upstream_ids", "downstream_ids"]].values.tolist() == [
        ["crossing", "A", "B"]]
    span = width * np.hypot(1, slope)
    half = turned(shapely.Point(40_000 + width / 2, y(40_000 + width / 2)))
    assert half.distance(sec.geometry.iloc[0]) < 1e-6
    flags = sec["flags"].iloc[0]
    assert f"runs {span:.0f} m in neither county" in flags, flags
    assert flags.endswith("丙 (C)" if middle else "land in no county of the layer"), flags


def test_a_gap_shorter_than_a_sample_step_is_not_flagged():
    # SYNTHETIC: AMap-like slivers between neighbours are not worth a flag
    result, turned = _three_counties(
        300.0, False, [(x, 20_000.0) for x in (5_000, 25_000, 55_000, 75_300)], 30.0, [False] * 3)
    sec = result.sections.to_crs(CRS)
    assert sec.kind.tolist() == ["crossing"] and sec["flags"].iloc[0] == ""
    assert turned(shapely.Point(40_150, 20_000)).distance(sec.geometry.iloc[0]) < 1e-6


def test_a_crossing_not_seen_near_its_label_change_says_its_place_is_approximate():
    """SYNTHETIC: the river snakes 28 km through a 4 km strip of county C between A
    and B (legs 1.6 km apart, 6, 12 and 6 km long). Each half lies near one of C's
    borders and is too short over the ground to keep its label, so the one section
    is a crossing A -> B about half-way, ~14 km along the river from either county:
    beyond reach (12.5 km) of any passage from A into B. It keeps its place and
    says so."""
    pts = [(5_000.0, 20_000.0), (30_000.0, 20_000.0), (40_300.0, 20_000.0), (40_300.0, 26_000.0),
           (41_900.0, 26_000.0), (41_900.0, 14_000.0), (43_500.0, 14_000.0), (43_500.0, 20_000.0),
           (55_000.0, 20_000.0), (79_000.0, 20_000.0)]
    result, _ = _three_counties(4_000.0, True, pts, 0.0, [False] * (len(pts) - 1))
    sec = result.sections
    assert sec[["kind", "upstream_ids", "downstream_ids"]].values.tolist() == [
        ["crossing", "A", "B"]]
    assert "location approximate: the river is not seen passing" in sec["flags"].iloc[0]
    assert (result.qa[result.qa.layer == "rivers"].status == "used").all()


def test_a_crossing_beyond_half_a_border_run_is_looked_for_further():
    """SYNTHETIC: a 16 km detour (a U 6 km deep) through the strip of C. The
    smoothing leaves the label change ~10.6 km after the river leaves A, beyond
    half a border run (6.5 km) but within a whole one (12.5 km, as at a
    confluence): found on the second look, half-way, and C is named."""
    pts = [(5_000.0, 20_000.0), (30_000.0, 20_000.0), (41_000.0, 20_000.0), (41_000.0, 26_000.0),
           (43_000.0, 26_000.0), (43_000.0, 20_000.0), (55_000.0, 20_000.0), (79_000.0, 20_000.0)]
    result, _ = _three_counties(4_000.0, True, pts, 0.0, [False] * (len(pts) - 1))
    sec = result.sections.to_crs(CRS)
    assert sec[["kind", "upstream_ids", "downstream_ids"]].values.tolist() == [
        ["crossing", "A", "B"]]
    flags = sec["flags"].iloc[0]
    assert "runs 16000 m in neither county" in flags and flags.endswith("丙 (C)"), flags
    assert shapely.Point(42_000, 26_000).distance(sec.geometry.iloc[0]) < 1e-6
