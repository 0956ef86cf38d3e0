"""DEM-based orientation on SYNTHETIC basins with a constructed DEM."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from basins.read import BasinsInputError, Dem
from conftest import discover_synthetic


def _dem_for(basin, low_at=None, z_fun=None):
    """A lon/lat grid over the basin; elevation from a function of (x, y) in metres."""
    b = basin.counties.to_crs(4326).total_bounds
    lon = np.linspace(b[0] - 0.5, b[2] + 0.5, 120)
    lat = np.linspace(b[1] - 0.5, b[3] + 0.5, 120)
    LON, LAT = np.meshgrid(lon, lat)
    pts = gpd.GeoSeries(shapely.points(LON.ravel(), LAT.ravel()), crs=4326).to_crs(
        basin.counties.crs)
    z = z_fun(pts.x.to_numpy(), pts.y.to_numpy()).reshape(LON.shape)
    return Dem(lon, lat, z, "synthetic")


def test_dem_sea_level_inland_end_becomes_the_outlet(synthetic_basic):
    """An inland network end at sea level (a mouth short of the coastline) wins over the
    edge end when the DEM says it is lower; with it the flow turns around."""
    basin, result = synthetic_basic
    G = result.graph
    src = [n for n, d in G.nodes(data=True) if d["end"] == "inland"][0]
    sx, sy = G.nodes[src]["x"], G.nodes[src]["y"]
    src_pt = gpd.GeoSeries([shapely.Point(sx, sy)], crs=G.graph["crs"]).to_crs(basin.counties.crs)
    px, py = src_pt.x.iloc[0], src_pt.y.iloc[0]
    dem = _dem_for(basin, z_fun=lambda x, y: 2.0 + np.hypot(x - px, y - py) / 1000.0)
    res = discover_synthetic(basin, dem=dem)
    assert res.graph.graph["orientation"] == "dem"
    assert res.graph.nodes[src]["outlet"]
    assert res.graph.out_degree(src) == 0
    edge_outlet = [n for n, d in G.nodes(data=True) if d["outlet"]][0]
    assert not res.graph.nodes[edge_outlet]["outlet"]


def test_dem_agreeing_with_the_outlet_changes_nothing(synthetic_basic):
    basin, result = synthetic_basic
    ox, oy = basin.outlet.x, basin.outlet.y
    dem = _dem_for(basin, z_fun=lambda x, y: 50.0 + np.hypot(x - ox, y - oy) / 2000.0)
    res = discover_synthetic(basin, dem=dem)
    assert res.sections.drop(columns="flags").equals(result.sections.drop(columns="flags"))
    assert (res.reaches.orientation_flag == "").all()


def test_dem_contradiction_is_flagged(synthetic_basic):
    """A DEM rising steeply towards the outlet contradicts the network's direction."""
    basin, _ = synthetic_basic
    ox, oy = basin.outlet.x, basin.outlet.y
    dem = _dem_for(basin, z_fun=lambda x, y: 5000.0 - np.hypot(x - ox, y - oy) / 50.0)
    res = discover_synthetic(basin, orientation="outlets")
    assert (res.reaches.orientation_flag == "").all()
    from basins.network import graph_from_reaches, reaches_from_rivers
    from basins.read import analysis_crs_for, counties_from_gdf, rivers_from_gdf
    riv = rivers_from_gdf(basin.rivers, "NAME")
    cty = counties_from_gdf(basin.counties, "county_id", "county", "city", "province")
    crs = analysis_crs_for(cty, riv)
    reaches, _ = reaches_from_rivers(riv, crs)
    out = gpd.GeoDataFrame(geometry=[basin.outlet], crs=basin.counties.crs)
    G = graph_from_reaches(reaches, cty.to_crs(crs), "dem", dem, outlets=out)
    flags = [d["orientation_flag"] for _, _, d in G.edges(data=True)]
    assert sum("contradicts DEM" in f for f in flags) >= len(flags) // 2


def test_dem_strategy_needs_a_dem(synthetic_basic):
    basin, _ = synthetic_basic
    with pytest.raises(BasinsInputError, match="needs a DEM"):
        discover_synthetic(basin, orientation="dem")


def test_without_dem_two_edge_ends_give_a_flagged_divide(shandong):
    """Without a DEM the Yellow River has two study-edge ends (Henan side, sea side): the
    divide between them is flagged, not guessed silently."""
    from basins.discover import discover
    reg, _ = shandong
    res = discover(reg.rivers, reg.counties, reg.water, dem=None)
    yr = res.reaches[res.reaches.river == "黄河"]
    assert yr.orientation_flag.str.contains("divide").any()
    assert (res.reaches.orientation == "outlets").all()


def test_a_network_end_by_an_invalid_lake_polygon_is_a_lake_end():
    """Orientation tests network ends against the water polygons as given: a
    self-crossing (bow-tie) lake, as a layer may bring, gives the ends its repaired
    form gives, without a GEOS error. SYNTHETIC: one county, one river."""
    from basins.network import orient_reaches, reaches_from_rivers
    from basins.read import counties_from_gdf, rivers_from_gdf
    from basins.synthetic import CRS

    counties = counties_from_gdf(gpd.GeoDataFrame(
        {"id": ["1"], "name": ["A"], "city": ["C"], "prov": ["P"]},
        geometry=[shapely.box(0, 0, 100_000, 100_000)], crs=CRS), "id", "name", "city", "prov")
    rivers = rivers_from_gdf(gpd.GeoDataFrame(
        {"NAME": ["R"]}, geometry=[shapely.LineString([(60_000, 50_000), (21_000, 50_000)])],
        crs=CRS), "NAME")
    # the river ends 1 km east of the bow-tie lake (two triangles meeting at a point)
    bowtie = shapely.Polygon([(10_000, 40_000), (20_000, 60_000), (20_000, 40_000),
                              (10_000, 60_000)])
    assert not bowtie.is_valid
    water = gpd.GeoDataFrame(geometry=[bowtie], crs=CRS)
    reaches, _ = reaches_from_rivers(rivers, CRS)
    raw = orient_reaches(reaches, counties, "auto", water=water)
    fixed = orient_reaches(reaches, counties, "auto",
                           water=water.set_geometry(shapely.make_valid(water.geometry.values)))
    ends = raw.nodes.set_index("node").end
    assert sorted(ends.tolist()) == ["inland", "lake"]
    assert ends.to_dict() == fixed.nodes.set_index("node").end.to_dict()
