"""Bad input gives a clear error naming the file, field or row, or a QA flag."""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely

from basins.discover import discover
from basins.read import (BasinsInputError, counties_from_gdf, read_counties, read_layer,
                         read_rivers, rivers_from_gdf)
from basins.synthetic import make_basin


@pytest.fixture(scope="module")
def basin():
    return make_basin(seed=2, rows=5, cols=5, n_boundary=0, n_meanders=0)


def _write(gdf, path, **kw):
    gdf.to_file(path, **kw)
    return path


def test_missing_crs_names_the_file(basin, tmp_path):
    p = _write(basin.rivers.set_crs(None, allow_override=True), tmp_path / "rivers.gpkg")
    with pytest.raises(BasinsInputError, match=r"rivers\.gpkg.*no coordinate reference system"):
        read_rivers(p, "NAME")
    # and the --crs escape hatch works
    assert len(read_rivers(p, "NAME", crs="EPSG:32650")) == len(basin.rivers)


def test_projected_coordinates_labelled_as_degrees(basin, tmp_path):
    bad = basin.rivers.set_crs("EPSG:4326", allow_override=True)
    p = _write(bad, tmp_path / "r.gpkg")
    with pytest.raises(BasinsInputError, match="projected metres labelled as degrees"):
        read_rivers(p, "NAME")


def test_missing_county_field_lists_available_fields(basin, tmp_path):
    p = _write(basin.counties, tmp_path / "c.gpkg")
    with pytest.raises(BasinsInputError, match=r"--county-name 'NAME'.*Available fields: county_id"):
        read_counties(p, "county_id", "NAME", "city", "province")


def test_duplicate_county_ids(basin):
    c = basin.counties.copy()
    c.loc[3, "county_id"] = c.county_id.iloc[0]
    with pytest.raises(BasinsInputError, match=r"duplicate county ids.*rows 0, 3"):
        counties_from_gdf(c, "county_id", "county", "city", "province")


def test_points_instead_of_lines(basin, tmp_path):
    pts = basin.rivers.copy()
    pts["geometry"] = pts.geometry.centroid
    p = _write(pts, tmp_path / "points.gpkg")
    with pytest.raises(BasinsInputError, match=r"points\.gpkg: expected river lines but found Point"):
        read_rivers(p, "NAME")


def test_empty_layer_and_empty_file(basin, tmp_path):
    p = _write(basin.rivers.iloc[:0], tmp_path / "empty.gpkg")
    with pytest.raises(BasinsInputError, match="no features"):
        read_layer(p)
    z = tmp_path / "zero.geojson"
    z.write_bytes(b"")
    with pytest.raises(BasinsInputError, match="empty"):
        read_layer(z)
    t = tmp_path / "trunc.geojson"
    t.write_text('{"type": "FeatureCollection", "features": [{"type": "Fea')
    with pytest.raises(BasinsInputError, match="cannot be read"):
        read_layer(t)


def test_missing_file(tmp_path):
    with pytest.raises(BasinsInputError, match="file not found"):
        read_layer(tmp_path / "nope.gpkg")


def test_gbk_shapefile_without_cpg(basin, tmp_path):
    r = basin.rivers.copy()
    r["NAME"] = ["黄河"] * len(r)
    p = tmp_path / "gbk.shp"
    r.to_file(p, encoding="gbk")
    p.with_suffix(".cpg").unlink(missing_ok=True)
    got = read_rivers(p, "NAME")
    assert set(got.river) == {"黄河"}


def test_invalid_and_empty_geometries_are_flagged_not_dropped(basin):
    c = basin.counties.copy()
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    g = c.geometry.copy()
    x0, y0 = g.iloc[1].centroid.coords[0]
    g.iloc[1] = shapely.affinity.translate(shapely.affinity.scale(bowtie, 30000, 30000,
                                                                  origin=(0, 0)), x0, y0)
    g.iloc[2] = None
    c = c.set_geometry(g)
    cty = counties_from_gdf(c, "county_id", "county", "city", "province")
    assert cty.qa.iloc[1].startswith("invalid geometry repaired")
    assert cty.qa.iloc[2].startswith("empty geometry")
    r = basin.rivers.copy()
    extra = gpd.GeoDataFrame({"NAME": ["x", "y", "z"]}, geometry=[
        None, shapely.Point(0, 0), shapely.LineString([(1, 1), (1, 1)])], crs=r.crs)
    riv = rivers_from_gdf(gpd.GeoDataFrame(
        __import__("pandas").concat([r, extra], ignore_index=True), crs=r.crs), "NAME")
    res = discover(riv, cty)
    qa = res.qa
    rq = qa[qa.layer == "rivers"].set_index("source_row")
    n = len(r)
    assert len(rq) == n + 3
    assert rq.loc[n, "status"] == "excluded" and "empty" in rq.loc[n, "reason"]
    assert rq.loc[n + 1, "status"] == "excluded" and "not a line" in rq.loc[n + 1, "reason"]
    assert rq.loc[n + 2, "status"] == "excluded" and "zero-length" in rq.loc[n + 2, "reason"]
    cq = qa[qa.layer == "counties"].set_index("feature_id")
    assert cq.loc[c.county_id.iloc[2], "status"] == "excluded"
    assert "repaired" in cq.loc[c.county_id.iloc[1], "reason"]


def test_river_outside_every_county_is_not_a_section(basin):
    r = basin.rivers.copy()
    far = shapely.LineString([(0, 0), (0, 50_000)])
    r = gpd.GeoDataFrame(__import__("pandas").concat(
        [r, gpd.GeoDataFrame({"NAME": ["far"]}, geometry=[far], crs=r.crs)], ignore_index=True),
        crs=r.crs)
    res = discover(rivers_from_gdf(r, "NAME"),
                   counties_from_gdf(basin.counties, "county_id", "county", "city", "province"))
    assert "far" not in set(res.sections.river)
    rq = res.qa[res.qa.layer == "rivers"]
    assert len(rq) == len(r)


def test_unknown_orientation(basin):
    with pytest.raises(BasinsInputError, match="orientation 'uphill' unknown"):
        discover(rivers_from_gdf(basin.rivers, "NAME"),
                 counties_from_gdf(basin.counties, "county_id", "county", "city", "province"),
                 orientation="uphill")
