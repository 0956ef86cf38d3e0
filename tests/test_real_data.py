"""Geographic facts on the embedded REAL data (AMap counties, NGCC 1:4M rivers)."""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import numpy as np
import shapely

from basins import settings as st


def _sections(result, river):
    return result.sections[result.sections.river.str.contains(river, regex=False)]


def test_shandong_has_its_16_cities_and_136_counties(shandong):
    reg, _ = shandong
    sd = reg.counties[reg.counties.province == "山东省"]
    assert len(sd) == 136
    assert sd.city.nunique() == 16
    assert set(reg.counties.province) == {"山东省", "河南省", "河北省", "江苏省", "安徽省"}


def test_yellow_river_flows_from_henan_into_shandong(shandong):
    _, res = shandong
    yr = _sections(res, "黄河")
    assert len(yr) >= 10
    # where it enters: from a Henan county (兰考县) onto the Henan|Shandong border
    entry = yr[(yr.upstream_province == "河南省") & yr.downstream_province.str.contains("山东省")]
    assert len(entry) >= 1
    assert "兰考县" in set(entry.upstream_names)
    # never the other way round at the provincial border
    back = yr[yr.upstream_province.str.contains("山东省") & (yr.downstream_province == "河南省")]
    assert back.empty


def test_yellow_river_reaches_flow_northeast_to_the_sea(shandong):
    _, res = shandong
    r = res.reaches[(res.reaches.river == "黄河")]
    assert len(r) > 0
    start = shapely.get_coordinates(shapely.get_point(r.geometry.values, 0))
    end = shapely.get_coordinates(shapely.get_point(r.geometry.values, -1))
    length = r.to_crs(res.graph.graph["crs"]).length.to_numpy()
    # length-weighted, the river goes east and north (Henan -> Bohai Sea)
    assert np.average(np.sign(end[:, 0] - start[:, 0]), weights=length) > 0.8
    G = res.graph
    mouths = [d for n, d in G.nodes(data=True) if d["outlet"]]
    pts = gpd.GeoSeries(shapely.points([(d["x"], d["y"]) for d in mouths]),
                        crs=G.graph["crs"]).to_crs(st.OUTPUT_CRS)
    # the Yellow River's outlet is in the delta near Dongying
    assert any(118.3 < p.x < 119.5 and 37.5 < p.y < 38.3 for p in pts)


def test_yellow_river_banks_henan_left_shandong_right(shandong):
    """Flowing north-east along the provincial border, Henan (台前, 范县, 濮阳) lies on
    the left (north-west) bank and Shandong on the right."""
    _, res = shandong
    b = res.boundary_rivers
    b = b[(b.river == "黄河")]
    ids = dict(zip(res.counties.county_id, res.counties.province))
    prov_pairs = [(ids[left], ids[right]) for left, right in zip(b.left_ids, b.right_ids)]
    mixed = [p for p in prov_pairs if p[0] != p[1]]
    assert len(mixed) >= 4
    assert all(p == ("河南省", "山东省") for p in mixed)


def test_wei_canal_is_the_hebei_shandong_boundary(shandong):
    _, res = shandong
    b = res.boundary_rivers
    provinces = dict(zip(res.counties.county_id, res.counties.province))
    wei = b[b.river.str.contains("卫")]
    pairs = {frozenset((provinces[a], provinces[c])) for a, c in zip(wei.left_ids, wei.right_ids)}
    assert frozenset(("河北省", "山东省")) in pairs
    assert wei[wei.level == "province"].length_km.sum() > 100


def test_every_input_feature_is_accounted_for(shandong):
    reg, res = shandong
    qa = res.qa
    rivers = qa[qa.layer == "rivers"]
    assert sorted(rivers.source_row) == list(range(len(reg.rivers)))
    assert set(rivers.status) <= {"used", "merged", "excluded", "flagged"}
    assert (rivers[rivers.status != "used"].reason != "").all()
    counties = qa[qa.layer == "counties"]
    assert sorted(counties.feature_id) == sorted(reg.counties.county_id)
    water = qa[qa.layer == "water"]
    assert len(water) == len(reg.water)
    # the two NGCC layers repeat lines: duplicates are merged, not used twice
    assert (rivers.status == "merged").sum() >= 10
    # lake shores / double-line banks are excluded with their reason
    assert rivers.reason.str.contains("shore").sum() >= 10


def test_section_contract_columns(shandong):
    _, res = shandong
    s = res.sections
    for col in ["section_id", "river", "kind", "level", "upstream_ids", "downstream_ids",
                "upstream_names", "downstream_names", "upstream_shares", "downstream_shares"]:
        assert col in s.columns
    assert s.crs.to_epsg() == 4326
    assert (s.geometry.geom_type == "Point").all()
    assert s.section_id.is_unique
    assert set(s.level) <= set(st.LEVELS)


def test_jiangxi_rivers_flow_the_right_way(jiangxi):
    reg, res = jiangxi
    s = res.sections
    pairs = set(zip(s.river, s.upstream_names, s.downstream_names))
    # 贡水 flows west from 会昌 through 于都 towards 赣州
    assert ("贡水", "会昌县", "于都县") in pairs
    # 常山江 (马金溪) rises in Anhui (休宁) and enters Zhejiang (开化): cross-province
    hit = s[(s.upstream_names == "休宁县") & (s.downstream_names == "开化县")]
    assert len(hit) == 1 and hit.level.iloc[0] == "province"
    # 东江 (寻邬水) leaves Jiangxi (寻乌) for Guangdong
    assert len(s[(s.upstream_names == "寻乌县") & s.downstream_province.str.contains("广东省")]) == 1
    jx = reg.counties[reg.counties.province == "江西省"]
    assert len(jx) == 100 and jx.city.nunique() == 11


def test_dongjiang_flows_south_through_the_fengshuba_reservoir(jiangxi):
    """The 1:4M lines stop at the shores of 枫树坝水库 (龙川, Guangdong), drawn only as
    an area. The network is joined through it (virtual links, flagged), so 东江
    (寻邬水) is one river flowing south from 寻乌 past the reservoir towards 龙川."""
    _, res = jiangxi
    r = res.reaches[res.reaches.river.str.contains("东江", regex=False)]
    links = r[r.virtual]
    assert len(links) == 2
    hub = (set(links.u) & set(links.v)).pop()  # the links meet inside the water body
    x, y = links[links.v == hub].geometry.iloc[0].coords[-1]
    assert 115.2 < x < 115.5 and 24.4 < y < 24.7  # 枫树坝水库, 龙川
    # one river: downstream from its northern end (寻乌) through the hub to its southern end
    G = res.graph
    ys = {n: G.nodes[n]["y"] for n in set(r.u) | set(r.v)}
    north, south = max(ys, key=ys.get), min(ys, key=ys.get)
    path = nx.shortest_path(G, north, south)
    assert hub in path


def _crossings_off_the_border(res) -> list[tuple[str, float, bool, str]]:
    """Crossing sections (not those across a water body drawn only as an area): their
    distance from the farther of their two counties' outlines, whether some county
    holds the point, and their flags."""
    from basins.read import project_gdf
    cty = res.counties.set_index("county_id").geometry
    every = np.asarray(res.counties.geometry.array, dtype=object)
    sec = project_gdf(res.sections, res.counties.crs)
    out = []
    for s in sec[sec.kind == "crossing"].itertuples():
        if "approximate" in s.flags:
            continue
        d = max(cty[s.upstream_ids].boundary.distance(s.geometry),
                cty[s.downstream_ids].boundary.distance(s.geometry))
        held = bool(shapely.contains_xy(every, s.geometry.x, s.geometry.y).any())
        out.append((s.section_id, d, held, s.flags))
    return out


def test_crossings_sit_on_the_county_border(shandong, jiangxi):
    # where the river passes from one county into the next, to within a metre (AMap
    # neighbours share their border vertices); before, up to half a border zone
    # away (Shandong: 1.6 and 0.8 km). Where it passes through land that is in no
    # county of the layer between the two (the 卫河 from 清丰 to 南乐 through Henan
    # counties the Shandong extract leaves out), the section is in the middle of
    # that passage, in no county, and its flags say so (a planner should know that
    # land, or a third county, lies between the two parties).
    for (_, res), on_border in ((shandong, 1), (jiangxi, 5)):
        found = _crossings_off_the_border(res)
        assert sum(d < 1.0 for _, d, _, _ in found) >= on_border, found
        assert all(d < 1.0 or not held for _, d, held, _ in found), found
        for _, d, _, flags in found:
            assert (d < 1.0) == ("in neither county" not in flags), found
            assert d < 1.0 or flags.endswith("land in no county of the layer"), found
    assert any(d >= 1.0 for _, d, _, _ in _crossings_off_the_border(shandong[1]))  # the 卫河
