"""Rivers cut by water bodies drawn only as areas (a reservoir with no line through
it): the network is joined through the water body, the section inside it is found
with the right parties and flagged as approximately placed. SYNTHETIC basins."""

from __future__ import annotations

import dataclasses

import geopandas as gpd
import pytest
import shapely
from hypothesis import HealthCheck, Phase, assume, given, settings, strategies as hst

from basins.synthetic import CRS, make_basin
from conftest import discover_synthetic
from test_synthetic_truth import match

RADIUS = 4000.0  # the reservoir: a disc on the border crossing


def cut_by_reservoir(basin, truth_row, name: str | None = None):
    """The basin's rivers with the stretch inside a disc round a true crossing removed,
    and the disc as the water layer (optionally the river renamed)."""
    disc = shapely.Point(truth_row.x, truth_row.y).buffer(RADIUS)
    rows = []
    for _, r in basin.rivers.iterrows():
        g = r.geometry
        if r.NAME == truth_row.river and g.intersects(disc):
            for part in shapely.get_parts(g.difference(disc)):
                rows.append({**r.to_dict(), "geometry": part,
                             "NAME": name or r.NAME})
        else:
            rows.append({**r.to_dict(), "NAME": (name or r.NAME) if r.NAME == truth_row.river
                         else r.NAME})
    rivers = gpd.GeoDataFrame(rows, geometry="geometry", crs=basin.rivers.crs)
    water = gpd.GeoDataFrame({"name": ["reservoir"]}, geometry=[disc], crs=CRS)
    return rivers, water


def crossings_far_from_others(basin):
    """True crossings with no other true section within 3 radii (so the cut changes
    nothing else)."""
    t = basin.truth
    out = []
    for i, r in t[t.kind == "crossing"].iterrows():
        d = ((t.x - r.x) ** 2 + (t.y - r.y) ** 2) ** 0.5
        if (d[t.index != i] > 3 * RADIUS).all():
            out.append(r)
    return out


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # shrinking is slow here
@given(seed=hst.integers(0, 10**6), pick=hst.integers(0, 100),
       reverse=hst.sampled_from([0.0, 0.5, 1.0]))
def test_a_crossing_inside_a_reservoir_is_found_and_flagged(seed, pick, reverse):
    basin = make_basin(seed=seed, rows=6, cols=6, n_boundary=0, n_meanders=0,
                       reverse_prob=reverse)
    cands = crossings_far_from_others(basin)
    assume(cands)  # a basin with no isolated crossing tells nothing here
    t = cands[pick % len(cands)]
    rivers, water = cut_by_reservoir(basin, t)
    cut = type(basin)(basin.counties, rivers, basin.truth, basin.outlet,
                      basin.downstream_county)
    result = discover_synthetic(cut, water=water)
    missing, spurious = match(basin.truth, result.sections)
    assert not missing, f"missed {missing}"
    assert spurious.empty, f"spurious {spurious[['kind', 'upstream_ids', 'downstream_ids']]}"
    s = result.sections.to_crs(CRS)
    inside = s[s.distance(shapely.Point(t.x, t.y)) < RADIUS]
    assert len(inside) == 1 and "location approximate" in inside.iloc[0]["flags"]
    assert (inside.iloc[0].upstream_ids, inside.iloc[0].downstream_ids) == \
        (t.upstream_ids, t.downstream_ids)
    # the other sections carry no such flag
    assert not s.drop(index=inside.index)["flags"].str.contains("approximate").any()
    assert result.reaches.virtual.sum() >= 2


@pytest.fixture(scope="module")
def cut_basin():
    basin = make_basin(seed=5, rows=6, cols=6, n_boundary=0, n_meanders=0, reverse_prob=0.5)
    t = crossings_far_from_others(basin)[0]
    return basin, t


def test_canals_are_not_joined_through_water(cut_basin):
    """A canal name (运河) is never linked: canals join basins and flow as their locks
    are set. Without the link the crossing inside the water body is not a section."""
    basin, t = cut_basin
    rivers, water = cut_by_reservoir(basin, t, name="试验运河")
    cut = type(basin)(basin.counties, rivers, basin.truth, basin.outlet,
                      basin.downstream_county)
    result = discover_synthetic(cut, water=water)
    assert not result.reaches.virtual.any()
    s = result.sections.to_crs(CRS)
    assert not (s.distance(shapely.Point(t.x, t.y)) < RADIUS).any()


def test_links_too_long_for_a_straight_line_are_not_made(cut_basin):
    """A water body wider than water_link_max_m would need its centre line: no link."""
    from basins.settings import DEFAULT

    basin, t = cut_basin
    rivers, water = cut_by_reservoir(basin, t)
    cut = type(basin)(basin.counties, rivers, basin.truth, basin.outlet,
                      basin.downstream_county)
    tight = dataclasses.replace(DEFAULT, water_link_max_m=RADIUS / 2)
    result = discover_synthetic(cut, water=water, settings=tight)
    assert not result.reaches.virtual.any()


def test_virtual_links_are_listed_in_the_reaches_layer(cut_basin):
    basin, t = cut_basin
    rivers, water = cut_by_reservoir(basin, t)
    cut = type(basin)(basin.counties, rivers, basin.truth, basin.outlet,
                      basin.downstream_county)
    result = discover_synthetic(cut, water=water)
    links = result.reaches[result.reaches.virtual]
    assert len(links) == 2 and set(links.river) == {t.river}
    # both links meet at one hub inside the water body, one flowing in, one out
    hub = set(links.u) & set(links.v)
    assert len(hub) == 1
    assert all(water.geometry.iloc[0].buffer(10).contains(g) for g in links.to_crs(CRS).geometry)


def test_the_network_map_shows_virtual_links_as_such(jiangxi):
    """REAL data: the two links through 枫树坝 are drawn dotted with their own tooltip."""
    from basins.maps import network_map

    _, res = jiangxi
    html = network_map(res, "Jiangxi").get_root().render()
    assert html.count("virtual link through a water body drawn only as an area") == \
        int(res.reaches.virtual.sum()) == 2


def test_water_polygons_given_twice_change_nothing_but_the_qa(cut_basin):
    """The two NGCC polygon layers repeat polygons exactly: copies (reversed too)
    are accounted for in QA and do not change the links."""
    basin, t = cut_basin
    rivers, water = cut_by_reservoir(basin, t)
    cut = type(basin)(basin.counties, rivers, basin.truth, basin.outlet,
                      basin.downstream_county)
    once = discover_synthetic(cut, water=water)
    twice_water = gpd.GeoDataFrame(
        {"name": ["reservoir", "copy"]},
        geometry=[water.geometry.iloc[0], shapely.reverse(water.geometry.iloc[0])], crs=CRS)
    twice = discover_synthetic(cut, water=twice_water)
    a, b = once.reaches, twice.reaches
    assert a[a.virtual].reach_id.tolist() == b[b.virtual].reach_id.tolist()
    assert shapely.equals_exact(a.geometry.to_numpy(), b.geometry.to_numpy(), 0).all()
    assert once.sections.section_id.tolist() == twice.sections.section_id.tolist()
    wq = twice.qa[twice.qa.layer == "water"].set_index("feature_id")
    assert wq.status.to_dict() == {"W0": "used", "W1": "merged"}
    assert wq.reason["W1"] == "duplicate of W0"


def test_every_water_polygon_is_accounted_for_without_shore_lines(cut_basin):
    """No river line runs along the reservoir: each polygon still gets a QA row, an
    empty one is excluded as such."""
    basin, t = cut_basin
    rivers, water = cut_by_reservoir(basin, t)
    cut = type(basin)(basin.counties, rivers, basin.truth, basin.outlet,
                      basin.downstream_county)
    water = gpd.GeoDataFrame({"name": ["reservoir", "empty"]},
                             geometry=[water.geometry.iloc[0], shapely.Polygon()], crs=CRS)
    wq = discover_synthetic(cut, water=water).qa.query("layer == 'water'")
    assert wq.status.tolist() == ["used", "excluded"]
    assert "no shore lines" in wq.reason.iat[0] and "empty" in wq.reason.iat[1]


@pytest.mark.parametrize("lake_first", [False, True])
def test_a_water_polygon_touching_two_merged_areas_is_reported_with_its_own(lake_first):
    """A double-line river (a 400 m strip with its two bank lines) touches a wide lake
    at one corner: they form one group, whose union is two polygons. Each water
    polygon's QA row names the one that holds its area, whatever the order."""
    import numpy as np

    from basins import settings as st
    from basins.network import _centrelines, first_copies

    strip = shapely.box(0, 0, 20_000, 400)
    lake = shapely.box(20_000, 400, 40_000, 20_400)  # touches the strip's corner only
    geoms = np.array([lake, strip] if lake_first else [strip, lake], dtype=object)
    water = gpd.GeoDataFrame(geometry=list(geoms), crs=CRS)
    shores = gpd.GeoDataFrame(
        {"river": ["Strip", "Strip"]},
        geometry=[shapely.LineString([(0, 0), (20_000, 0)]),
                  shapely.LineString([(0, 400), (20_000, 400)])], crs=CRS)
    centre, qa = _centrelines(geoms, first_copies(geoms), water, shores,
                              np.array([], dtype=object), CRS, st.DEFAULT)
    assert len(centre) == 1 and centre.river.iat[0] == "Strip"
    assert centre.geometry.iat[0].length > 15_000
    reason = {r["source_row"]: r["reason"] for r in qa}
    i_strip, i_lake = (1, 0) if lake_first else (0, 1)
    assert reason[i_strip].startswith("double-line river: centre line")
    assert reason[i_lake].startswith("lake or existing centre line")


def test_water_links_skip_non_polygons_among_the_touching_groups():
    """The touching groups are worked out once for the centre lines and the links; a
    repaired water geometry that is not polygonal (make_valid can give a collection)
    takes no part in the links, and the links are those of the polygons alone."""
    import numpy as np

    from basins import settings as st
    from basins.network import _touching, _water_links

    lake = shapely.box(0, 0, 4000, 4000)
    other = shapely.box(4000, 0, 6000, 2000)  # touches the lake: one group
    odd = shapely.GeometryCollection([shapely.box(-30_000, 0, -27_000, 1000),  # apart
                                      shapely.LineString([(-30_000, 2000), (-27_000, 2000)])])
    kept = gpd.GeoDataFrame(
        {"reach_id": ["a", "b"], "river": ["R", "R"], "u": ["n1", "n3"], "v": ["n2", "n4"],
         "source": ["x", "x"], "source_row": [0, 1]},
        geometry=[shapely.LineString([(2000, 9000), (2000, 4500)]),
                  shapely.LineString([(2000, -500), (2000, -9000)])], crs=CRS)
    alone = _water_links(kept, np.array([lake, other], dtype=object), st.DEFAULT)
    geoms = np.array([odd, lake, other], dtype=object)
    shared = _water_links(kept, geoms, st.DEFAULT, _touching(geoms, np.arange(3)))
    assert len(alone) == 2 and alone.virtual.all()
    cols = ["reach_id", "river", "u", "v"]
    assert shared[cols].equals(alone[cols])
    assert shapely.equals_exact(shared.geometry.values, alone.geometry.values, 0).all()
