"""Read and validate input layers: rivers, counties, points and DEMs.

Every reader returns a GeoDataFrame in a fixed schema so that later stages never
guess column names:

* rivers: ``reach_id``, ``river``, ``source``, ``source_row``, geometry (lines)
* counties: ``county_id``, ``county``, ``city``, ``province``, geometry (polygons)
* points: ``point_id``, ``name``, ``river``, geometry (points)

Bad input raises :class:`BasinsInputError` with the file, the row or field, and
what to do about it.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS, Proj, Transformer
from pyproj.exceptions import CRSError, ProjError

from . import settings as st


class BasinsInputError(ValueError):
    """Input data that `basins` cannot use; the message says where and what to do."""


LINE_TYPES = {"LineString", "MultiLineString"}
POLYGON_TYPES = {"Polygon", "MultiPolygon"}


# ---------------------------------------------------------------------------
# generic layer reading
# ---------------------------------------------------------------------------
def _fix_text_encoding(gdf: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, str | None]:
    """Repair text read as Latin-1 when it was really UTF-8 or GBK.

    A shapefile without a ``.cpg`` file is read by GDAL as Latin-1. Chinese text
    then arrives as mojibake; re-encode to bytes and decode as UTF-8, then GBK.
    """
    obj_cols = [c for c in gdf.columns if c != gdf.geometry.name
                and (gdf[c].dtype == object or pd.api.types.is_string_dtype(gdf[c]))]
    if not obj_cols:
        return gdf, None
    values = [v for c in obj_cols for v in gdf[c].dropna() if isinstance(v, str)]
    if not values or not any(any(0x80 <= ord(ch) <= 0xFF for ch in v) for v in values):
        return gdf, None
    if any(ord(ch) > 0xFF for v in values for ch in v):
        return gdf, None  # real Unicode already: nothing to repair
    for enc in ("utf-8", "gbk", "gb18030"):
        try:
            for v in values:
                v.encode("latin-1").decode(enc)
        except (UnicodeDecodeError, UnicodeEncodeError):
            continue
        out = gdf.copy()
        for c in obj_cols:
            out[c] = out[c].map(
                lambda v, e=enc: v.encode("latin-1").decode(e) if isinstance(v, str) else v
            )
        return out, enc
    return gdf, None


def read_layer(
    path: str | os.PathLike,
    layer: str | None = None,
    encoding: str | None = None,
    crs: str | None = None,
) -> gpd.GeoDataFrame:
    """Read any OGR vector layer, checking that it is usable.

    Parameters
    ----------
    path
        File to read (GeoPackage, shapefile, GeoJSON, ...).
    layer
        Layer name for multi-layer files.
    encoding
        Text encoding of attribute fields; by default taken from the file, and for
        a shapefile without ``.cpg`` detected among UTF-8 and GBK.
    crs
        CRS to assume when the file has none (e.g. ``"EPSG:4326"``).

    Returns
    -------
    geopandas.GeoDataFrame
        With ``attrs["source"]`` set to the path (and layer) and
        ``attrs["encoding"]`` to a detected encoding, if any.

    Raises
    ------
    BasinsInputError
        Missing or unreadable file, empty layer, no CRS, coordinates that cannot be
        in the stated CRS.
    """
    p = Path(path)
    source = f"{p}" + (f" (layer {layer})" if layer else "")
    if not p.exists():
        raise BasinsInputError(f"{source}: file not found. Check the path.")
    if p.is_file() and p.stat().st_size == 0:
        raise BasinsInputError(f"{source}: the file is empty (0 bytes). Export the layer again.")
    kwargs: dict = {}
    if layer is not None:
        kwargs["layer"] = layer
    if encoding is not None:
        kwargs["encoding"] = encoding
    try:
        gdf = pyogrio.read_dataframe(p, **kwargs)
    except Exception as exc:  # pyogrio raises several DataSourceError subclasses
        raise BasinsInputError(
            f"{source}: cannot be read as a vector layer ({exc}). "
            "The file may be truncated or not a GIS format; export it again."
        ) from exc
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.name not in gdf:
        raise BasinsInputError(f"{source}: has no geometry column; it is not a spatial layer.")
    if len(gdf) == 0:
        raise BasinsInputError(f"{source}: the layer has no features.")
    detected = None
    if encoding is None and p.suffix.lower() == ".shp" and not p.with_suffix(".cpg").exists():
        gdf, detected = _fix_text_encoding(gdf)
    if gdf.crs is None:
        if crs is None:
            raise BasinsInputError(
                f"{source}: has no coordinate reference system (no .prj or CRS). "
                "Pass the CRS it is in, e.g. --crs EPSG:4326, or fix the file."
            )
        gdf = gdf.set_crs(crs)
    check_coordinates(gdf, source)
    gdf.attrs["source"] = source
    gdf.attrs["encoding"] = detected
    return gdf


def check_coordinates(gdf: gpd.GeoDataFrame, source: str) -> None:
    """Raise if the coordinates cannot be in the layer's CRS.

    Projected metres labelled as degrees are the usual culprit.
    """
    geoms = gdf.geometry.values
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if not ok.any():
        return
    coords = shapely.get_coordinates(geoms[ok])
    if not np.isfinite(coords).all():
        bad = int(np.flatnonzero(~np.isfinite(coords).all(axis=1))[0])
        raise BasinsInputError(
            f"{source}: coordinates contain NaN or infinite values (vertex {bad}). "
            "Repair or drop those features."
        )
    if gdf.crs is not None and gdf.crs.is_geographic:
        xmin, ymin = coords.min(axis=0)
        xmax, ymax = coords.max(axis=0)
        if (xmin >= -90 and xmax <= 90 and ymin >= -180 and ymax <= 180
                and (ymin < -90 or ymax > 90)):
            raise BasinsInputError(
                f"{source}: CRS {gdf.crs.to_string()} is in degrees but y reaches "
                f"{ymin:.1f}..{ymax:.1f} while x stays within ±90: latitude and longitude look "
                "swapped (x must be longitude). Swap the columns or the axis order on export."
            )
        if xmin < -180 or xmax > 180 or ymin < -90 or ymax > 90:
            raise BasinsInputError(
                f"{source}: CRS {gdf.crs.to_string()} is in degrees but coordinates reach "
                f"x {xmin:.0f}..{xmax:.0f}, y {ymin:.0f}..{ymax:.0f}. These look like projected "
                "metres labelled as degrees: give the real CRS with --crs."
            )


def _require_fields(gdf: gpd.GeoDataFrame, fields: dict[str, str | None]) -> None:
    missing = {opt: f for opt, f in fields.items() if f is not None and f not in gdf.columns}
    if missing:
        have = ", ".join(c for c in gdf.columns if c != gdf.geometry.name)
        parts = "; ".join(f"{opt} {f!r}" for opt, f in missing.items())
        raise BasinsInputError(
            f"{gdf.attrs.get('source', 'layer')}: field(s) not found: {parts}. "
            f"Available fields: {have}."
        )


def _geom_types(gdf: gpd.GeoDataFrame) -> pd.Series:
    g = gdf.geometry
    return g.geom_type.where(~(g.isna() | g.is_empty), None)


# ---------------------------------------------------------------------------
# rivers
# ---------------------------------------------------------------------------
def rivers_from_gdf(
    gdf: gpd.GeoDataFrame, river_name: str | None = None, source: str | None = None
) -> gpd.GeoDataFrame:
    """Put a river line layer into the `basins` river schema.

    Rows are kept one to one with the input (``source_row`` is the input row
    number), so that every input feature can be accounted for in the QA table.
    Non-line rows are kept; :func:`basins.network.reaches_from_rivers` flags them.

    Raises
    ------
    BasinsInputError
        If the field is missing or the layer holds no lines at all.
    """
    source = source or gdf.attrs.get("source", "rivers")
    gdf = gdf.copy()
    gdf.attrs["source"] = source
    _require_fields(gdf, {"--river-name": river_name})
    types = _geom_types(gdf)
    if not types.isin(LINE_TYPES).any():
        found = ", ".join(sorted(str(t) for t in types.dropna().unique())) or "no geometry"
        raise BasinsInputError(
            f"{source}: expected river lines but found {found}. Give the river line layer "
            "(LineString), not points or polygons."
        )
    if river_name is not None:
        names = gdf[river_name].astype("string").fillna("").str.strip()
    else:
        names = pd.Series([""] * len(gdf), index=gdf.index, dtype="string")
    out = gpd.GeoDataFrame(
        {
            "reach_id": [f"R{i}" for i in range(len(gdf))],
            "river": names.to_numpy(dtype=object),
            "source": source,
            "source_row": np.arange(len(gdf)),
        },
        geometry=gdf.geometry.values,
        crs=gdf.crs,
    )
    extra = [c for c in ("GBCODE", "gbcode", "layer") if c in gdf.columns]
    for c in extra:
        out[c.lower()] = gdf[c].to_numpy()
    out.attrs["source"] = source
    return out


def read_rivers(
    path: str | os.PathLike,
    river_name: str | None = None,
    layer: str | None = None,
    crs: str | None = None,
    encoding: str | None = None,
) -> gpd.GeoDataFrame:
    """Read a river line layer into the river schema (see :func:`rivers_from_gdf`)."""
    return rivers_from_gdf(read_layer(path, layer, encoding, crs), river_name)


# ---------------------------------------------------------------------------
# counties
# ---------------------------------------------------------------------------
def counties_from_gdf(
    gdf: gpd.GeoDataFrame,
    county_id: str,
    county_name: str,
    city: str,
    province: str,
    source: str | None = None,
) -> gpd.GeoDataFrame:
    """Put a county polygon layer into the `basins` county schema.

    Invalid polygons are repaired (``make_valid``) and flagged in the column
    ``qa``; empty ones are kept with a flag so that they are accounted for.

    Raises
    ------
    BasinsInputError
        Missing field, duplicate or empty county ids, no polygons at all.
    """
    source = source or gdf.attrs.get("source", "counties")
    gdf = gdf.copy()
    gdf.attrs["source"] = source
    _require_fields(
        gdf, {"--county-id": county_id, "--county-name": county_name, "--city": city,
              "--province": province}
    )
    types = _geom_types(gdf)
    if not types.isin(POLYGON_TYPES).any():
        found = ", ".join(sorted(str(t) for t in types.dropna().unique())) or "no geometry"
        raise BasinsInputError(
            f"{source}: expected county polygons but found {found}. Give the county polygon layer."
        )
    ids = gdf[county_id].astype("string").str.strip()
    blank = ids.isna() | (ids == "")
    if blank.any():
        rows = ", ".join(str(i) for i in np.flatnonzero(blank.to_numpy())[:10])
        raise BasinsInputError(
            f"{source}: field {county_id!r} is empty in row(s) {rows}. Every county needs an id."
        )
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        listing = "; ".join(
            f"{v!r} in rows {', '.join(str(r) for r in np.flatnonzero((ids == v).to_numpy()))}"
            for v in sorted(dup.unique())[:10]
        )
        raise BasinsInputError(
            f"{source}: duplicate county ids in field {county_id!r}: {listing}. "
            "Ids must be unique (dissolve the parts of one county first)."
        )
    geoms = gdf.geometry.values.copy()
    qa = np.array([""] * len(gdf), dtype=object)
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    qa[missing] = "empty geometry: not used"
    wrong = ~missing & ~types.isin(POLYGON_TYPES).to_numpy()
    qa[wrong] = "not a polygon: not used"
    invalid = ~missing & ~wrong & ~shapely.is_valid(geoms)
    if invalid.any():
        fixed = shapely.make_valid(geoms[invalid])
        # make_valid may return collections; keep the polygonal part
        fixed = np.array(
            [g if g.geom_type in POLYGON_TYPES else shapely.union_all(
                [p for p in getattr(g, "geoms", [g]) if p.geom_type in POLYGON_TYPES])
             for g in fixed], dtype=object)
        geoms[invalid] = fixed
        qa[invalid] = "invalid geometry repaired (make_valid)"
    geoms[missing | wrong] = None
    out = gpd.GeoDataFrame(
        {
            "county_id": ids.to_numpy(dtype=object),
            "county": gdf[county_name].astype("string").fillna("").to_numpy(dtype=object),
            "city": gdf[city].astype("string").fillna("").to_numpy(dtype=object),
            "province": gdf[province].astype("string").fillna("").to_numpy(dtype=object),
            "qa": qa,
        },
        geometry=gpd.GeoSeries(geoms, crs=gdf.crs).values,
        crs=gdf.crs,
    )
    out.attrs["source"] = source
    return out


def read_counties(
    path: str | os.PathLike,
    county_id: str,
    county_name: str,
    city: str,
    province: str,
    layer: str | None = None,
    crs: str | None = None,
    encoding: str | None = None,
) -> gpd.GeoDataFrame:
    """Read a county polygon layer into the county schema (see :func:`counties_from_gdf`)."""
    return counties_from_gdf(
        read_layer(path, layer, encoding, crs), county_id, county_name, city, province
    )


# ---------------------------------------------------------------------------
# points (monitoring stations, outlets)
# ---------------------------------------------------------------------------
def points_from_gdf(
    gdf: gpd.GeoDataFrame, name: str | None = None, river_name: str | None = None
) -> gpd.GeoDataFrame:
    """Put a point layer (monitoring stations or outlets) into the point schema."""
    source = gdf.attrs.get("source", "points")
    _require_fields(gdf, {"--point-name": name, "--river-name": river_name})
    types = _geom_types(gdf)
    bad = ~types.isin({"Point"})
    if bad.any():
        rows = ", ".join(str(i) for i in np.flatnonzero(bad.to_numpy())[:10])
        raise BasinsInputError(
            f"{source}: row(s) {rows} are not single points (found "
            f"{', '.join(sorted(str(t) for t in types[bad].unique()))}). Give one point per station."
        )
    out = gpd.GeoDataFrame(
        {
            "point_id": [f"P{i}" for i in range(len(gdf))],
            "name": gdf[name].astype("string").fillna("").to_numpy(dtype=object)
            if name else np.array([f"P{i}" for i in range(len(gdf))], dtype=object),
            "river": gdf[river_name].astype("string").fillna("").to_numpy(dtype=object)
            if river_name else np.array([""] * len(gdf), dtype=object),
        },
        geometry=gdf.geometry.values,
        crs=gdf.crs,
    )
    out.attrs["source"] = source
    return out


def read_points(
    path: str | os.PathLike,
    name: str | None = None,
    river_name: str | None = None,
    layer: str | None = None,
    crs: str | None = None,
) -> gpd.GeoDataFrame:
    """Read a point layer into the point schema (see :func:`points_from_gdf`)."""
    return points_from_gdf(read_layer(path, layer, None, crs), name, river_name)


# ---------------------------------------------------------------------------
# DEM
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Dem:
    """A regular longitude/latitude elevation grid (metres), sampled bilinearly.

    Attributes
    ----------
    lon, lat
        Cell-centre coordinates, each strictly increasing.
    z
        Elevations, shape ``(len(lat), len(lon))``; NaN where unknown.
    source
        Where the grid came from (for reports).
    """

    lon: np.ndarray
    lat: np.ndarray
    z: np.ndarray
    source: str = "dem"

    def sample(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Elevation at the given WGS84 positions; NaN outside the grid.

        Bilinear between the four surrounding cell centres (NaN if any is NaN).
        """
        lon = np.asarray(lon, float)
        lat = np.asarray(lat, float)
        if len(self.lon) < 2 or len(self.lat) < 2:
            raise BasinsInputError(f"{self.source}: a DEM needs at least 2 x 2 cells.")

        def locate(grid: np.ndarray, v: np.ndarray):
            i = np.clip(np.searchsorted(grid, v, side="right") - 1, 0, len(grid) - 2)
            t = (v - grid[i]) / (grid[i + 1] - grid[i])
            return i, t, (v < grid[0]) | (v > grid[-1]) | np.isnan(v)

        i, tx, out_x = locate(self.lon, lon)
        j, ty, out_y = locate(self.lat, lat)
        z = self.z
        with np.errstate(invalid="ignore"):
            top = z[j, i] * (1 - tx) + z[j, i + 1] * tx
            bottom = z[j + 1, i] * (1 - tx) + z[j + 1, i + 1] * tx
            v = top * (1 - ty) + bottom * ty
        return np.where(out_x | out_y, np.nan, v)

    def subset(self, bounds: tuple[float, float, float, float], margin: float = 0.5) -> "Dem":
        """The part of the grid covering ``bounds`` (lon/lat) plus a margin in degrees."""
        xmin, ymin, xmax, ymax = bounds
        i = (self.lon >= xmin - margin) & (self.lon <= xmax + margin)
        j = (self.lat >= ymin - margin) & (self.lat <= ymax + margin)
        return Dem(self.lon[i], self.lat[j], self.z[np.ix_(j, i)], self.source)


def _dem_from_arrays(lon, lat, z, source: str) -> Dem:
    lon = np.asarray(lon, float)
    lat = np.asarray(lat, float)
    z = np.asarray(z, float)
    if z.shape != (len(lat), len(lon)):
        raise BasinsInputError(
            f"{source}: elevation grid has shape {z.shape}, expected (lat, lon) = "
            f"({len(lat)}, {len(lon)})."
        )
    if lon[0] > lon[-1]:
        lon, z = lon[::-1], z[:, ::-1]
    if lat[0] > lat[-1]:
        lat, z = lat[::-1], z[::-1, :]
    return Dem(lon, lat, z, source)


def read_dem(path: str | os.PathLike) -> Dem:
    """Read a DEM in WGS84 longitude/latitude.

    Formats: ``.npz`` with arrays ``lon``, ``lat``, ``z`` (what `basins` embeds),
    NetCDF ``.nc`` with variables ``lon``, ``lat`` and one 2-D elevation variable
    (needs ``h5netcdf``), and GeoTIFF (needs ``rasterio``).
    """
    p = Path(path)
    src = str(p)
    if not p.exists():
        raise BasinsInputError(f"{src}: DEM file not found.")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        with np.load(p) as d:
            missing = {"lon", "lat", "z"} - set(d.files)
            if missing:
                raise BasinsInputError(f"{src}: DEM .npz lacks arrays {sorted(missing)}.")
            z = d["z"].astype(float)
            if d["z"].dtype == np.int16:
                z[d["z"] == np.iinfo(np.int16).min] = np.nan  # nodata of embedded DEMs
            return _dem_from_arrays(d["lon"], d["lat"], z, src)
    if suffix in (".nc", ".nc4", ".netcdf"):
        try:
            import h5netcdf
        except ImportError as exc:
            raise BasinsInputError(
                f"{src}: reading NetCDF needs h5netcdf and h5py (pip install h5netcdf h5py)."
            ) from exc
        with h5netcdf.File(p, "r") as f:
            names = list(f.variables)
            lon_name = next((n for n in names if n.lower() in ("lon", "longitude", "x")), None)
            lat_name = next((n for n in names if n.lower() in ("lat", "latitude", "y")), None)
            zs = [n for n in names if len(f.variables[n].shape) == 2]
            if not (lon_name and lat_name and zs):
                raise BasinsInputError(
                    f"{src}: NetCDF needs lon, lat and a 2-D elevation variable; found {names}."
                )
            return _dem_from_arrays(f.variables[lon_name][:], f.variables[lat_name][:],
                                    f.variables[zs[0]][:], src)
    if suffix in (".tif", ".tiff"):
        try:
            import rasterio
        except ImportError as exc:
            raise BasinsInputError(f"{src}: reading GeoTIFF needs rasterio (pip install rasterio).") from exc
        with rasterio.open(p) as r:
            if r.crs is None or not r.crs.is_geographic:
                raise BasinsInputError(f"{src}: GeoTIFF DEM must be in longitude/latitude degrees.")
            z = r.read(1, masked=True).filled(np.nan).astype(float)
            t = r.transform
            lon = t.c + t.a * (np.arange(r.width) + 0.5)
            lat = t.f + t.e * (np.arange(r.height) + 0.5)
            return _dem_from_arrays(lon, lat, z, src)
    raise BasinsInputError(f"{src}: unknown DEM format {suffix!r}; use .npz, .nc or .tif.")


# ---------------------------------------------------------------------------
# CRS helpers
# ---------------------------------------------------------------------------
@lru_cache(maxsize=32)
def _transformer(src: CRS, dst: CRS) -> Transformer:
    """One transformation per CRS pair (building one costs ~15 ms; pyproj makes a
    transformer safe to share between threads)."""
    return Transformer.from_crs(src, dst, always_xy=True)


#: coordinates per group of geometries that project_gdf projects at a time
_PROJECT_CHUNK = 1 << 18

#: ellipsoids of the Albers shortcut: semi-major axis and inverse flattening
_ELLIPSOIDS = {"WGS84": (6378137.0, 298.257223563), "GRS80": (6378137.0, 298.257222101)}
#: PROJ's DEG_TO_RAD, the factor of its degree-to-radian unit conversion
_DEG_TO_RAD = 0.017453292519943296
_AEA_PIPELINE = re.compile(
    r"proj=pipeline step proj=unitconvert xy_in=deg xy_out=rad step proj=aea "
    r"lat_0=(\S+) lon_0=(\S+) lat_1=(\S+) lat_2=(\S+) x_0=0 y_0=0 ellps=(\w+)")


class AlbersForward:
    """PROJ's ellipsoidal Albers equal-area forward projection, in numpy.

    The analysis CRS of data spanning several zones is an Albers CRS
    (:func:`analysis_crs_for`), and projecting the counties to it was PROJ's
    work on every vertex (nationally 1.57M, ~0.25 s; PROJ goes through its
    pipeline one point at a time). This does the same floating-point operations
    in the same order as PROJ's ``aea.cpp`` (``pj_qsfn``, the set-up of the
    cone, the prepare and finalise steps of ``pj_fwd``) on whole arrays, about
    twice as fast. With numpy's ``sin``, ``cos`` and ``log`` being the C
    library's, as PROJ's are, the coordinates are PROJ's to the bit;
    :meth:`for_transformer` hands one out only when numpy's functions are the C
    library's on this machine (:func:`numpy_is_libm`; builds that use their own
    SIMD versions are not), and :func:`project_gdf` also compares a sample of
    every call with PROJ, so that a difference sends the call to PROJ.

    Parameters
    ----------
    lat_0, lon_0, lat_1, lat_2
        The CRS's latitude of origin, central meridian and standard parallels, in
        degrees.
    a, rf
        Semi-major axis (metres) and inverse flattening of the ellipsoid.
    """

    def __init__(self, lat_0: float, lon_0: float, lat_1: float, lat_2: float,
                 a: float, rf: float) -> None:
        f = 1 / rf
        es = 2 * f - f * f
        self.a, self.e, self.one_es = a, math.sqrt(es), 1.0 - es
        phi0, self.lam0, phi1, phi2 = (v * _DEG_TO_RAD for v in (lat_0, lon_0, lat_1, lat_2))
        if abs(phi1) > math.pi / 2 or abs(phi2) > math.pi / 2 or abs(phi1 + phi2) < 1e-10:
            raise ValueError("standard parallels out of range or opposite")

        def msfn(s: float, c: float) -> float:
            return c / math.sqrt(1.0 - es * s * s)

        s1, c1 = math.sin(phi1), math.cos(phi1)
        m1, ml1 = msfn(s1, c1), self._qsfn(s1)
        n = s1
        if abs(phi1 - phi2) >= 1e-10:  # secant cone
            s2, c2 = math.sin(phi2), math.cos(phi2)
            m2, ml2 = msfn(s2, c2), self._qsfn(s2)
            if ml2 == ml1:
                raise ValueError("degenerate cone")
            n = (m1 * m1 - m2 * m2) / (ml2 - ml1)
        if n == 0:
            raise ValueError("degenerate cone")
        self.n = n
        self.c = m1 * m1 + n * ml1
        self.dd = 1.0 / n
        self.rho0 = self.dd * math.sqrt(self.c - n * self._qsfn(math.sin(phi0)))

    def _qsfn(self, s: float) -> float:
        """PROJ's ``pj_qsfn`` for one sine of latitude (Python floats)."""
        con = self.e * s
        return self.one_es * (s / (1.0 - con * con)
                              - (0.5 / self.e) * math.log((1.0 - con) / (1.0 + con)))

    @classmethod
    def for_transformer(cls, transformer: Transformer) -> "AlbersForward | None":
        """The projection ``transformer`` does, when it is a plain Albers forward from
        longitude/latitude degrees on a known ellipsoid, numpy's functions are the C
        library's, and a grid of points over the cone's side of the globe comes out
        as PROJ gives it (a PROJ built to fuse multiplications and additions would
        not); else None."""
        m = _AEA_PIPELINE.fullmatch(transformer.definition or "")
        if m is None or m.group(5) not in _ELLIPSOIDS or not numpy_is_libm():
            return None
        try:
            fast = cls(*(float(v) for v in m.group(1, 2, 3, 4)), *_ELLIPSOIDS[m.group(5)])
        except ValueError:
            return None
        lon0 = float(m.group(2))
        x, y = (v.ravel() for v in np.meshgrid(np.linspace(lon0 - 90, lon0 + 90, 19),
                                                np.linspace(-85, 85, 18)))
        x = np.clip(x, -180, 180)
        px, py = transformer.transform(x, y)
        ok = np.isfinite(px) & np.isfinite(py)  # (where the cone reaches)
        return fast if fast.matches(transformer.transform, x[ok], y[ok]) else None

    def matches(self, transform, x: np.ndarray, y: np.ndarray) -> bool:
        """Whether the points ``x``, ``y`` come out as ``transform`` (PROJ's, in place)
        gives them, to the bit. The inputs are left as they are."""
        fx, fy, px, py = x.copy(), y.copy(), x.copy(), y.copy()
        transform(px, py, inplace=True)
        return self(fx, fy) and np.array_equal(fx, px) and np.array_equal(fy, py)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> bool:
        """Project longitudes ``x`` and latitudes ``y`` (degrees, float64, contiguous) in
        place to metres. Returns False, changing nothing, when a point lies where
        PROJ would clamp, wrap or refuse it (those are left to PROJ)."""
        lam = x * _DEG_TO_RAD
        phi = y * _DEG_TO_RAD
        lam_c = lam - self.lam0
        with np.errstate(invalid="ignore"):
            inside = (np.abs(phi) <= math.pi / 2) & (np.abs(lam) <= math.pi) & \
                (np.abs(lam_c) <= math.pi)
            if not inside.all():  # (NaN too)
                return False
            q = np.sin(phi, out=phi)  # pj_qsfn, operation by operation
            con = q * self.e
            div1 = np.subtract(1.0, con * con)
            np.divide(q, div1, out=q)
            lg = np.subtract(1.0, con)
            con += 1.0
            lg /= con
            np.log(lg, out=lg)
            lg *= 0.5 / self.e
            q -= lg
            q *= self.one_es
            q *= self.n  # rho = dd * sqrt(c - n q)
            rho = np.subtract(self.c, q, out=q)
            if not (rho >= 0).all():
                return False
            np.sqrt(rho, out=rho)
            rho *= self.dd
        lam_c *= self.n
        np.multiply(np.sin(lam_c), rho, out=x)
        x *= self.a
        np.cos(lam_c, out=lam_c)
        lam_c *= rho
        np.subtract(self.rho0, lam_c, out=y)
        y *= self.a
        return True


@lru_cache(maxsize=1)
def numpy_is_libm() -> bool:
    """Whether numpy's float64 ``sin``, ``cos`` and ``log`` give the C library's
    results (what :class:`AlbersForward` needs to match PROJ to the bit), checked on
    spread arguments. Some numpy builds use their own SIMD versions, a few units in
    the last place apart."""
    t = np.linspace(-3.2, 3.2, 1501)
    u = np.linspace(0.8, 1.25, 1501)
    return (np.array_equal(np.sin(t), [math.sin(v) for v in t.tolist()])
            and np.array_equal(np.cos(t), [math.cos(v) for v in t.tolist()])
            and np.array_equal(np.log(u), [math.log(v) for v in u.tolist()]))


@lru_cache(maxsize=32)
def _albers_for(src: CRS, dst: CRS) -> AlbersForward | None:
    """The numpy Albers forward for ``src`` -> ``dst``, if it applies (see
    :class:`AlbersForward`)."""
    return AlbersForward.for_transformer(_transformer(src, dst))


def coordinate_sample(geoms: np.ndarray, n: int, counts: np.ndarray | None = None) -> np.ndarray:
    """``shapely.get_coordinates(geoms)[np.linspace(0, N - 1, min(N, n)).astype(int)]``
    (N coordinates in all), reading only the geometries that hold them.
    ``counts``: ``shapely.get_num_coordinates(geoms)``, if known."""
    counts = shapely.get_num_coordinates(geoms) if counts is None else counts
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    if total == 0:
        return np.zeros((0, 2))
    k = np.linspace(0, total - 1, min(total, n)).astype(np.int64)
    at = np.searchsorted(ends, k, side="right")  # the geometry holding each
    u, which = np.unique(at, return_inverse=True)
    xy, ci = shapely.get_coordinates(geoms[u], return_index=True)
    starts = np.searchsorted(ci, np.arange(len(u)))
    return xy[starts[which] + (k - (ends[at] - counts[at]))]


def project_gdf(gdf: gpd.GeoDataFrame | gpd.GeoSeries, to_crs) -> gpd.GeoDataFrame | gpd.GeoSeries:
    """``gdf.to_crs(to_crs)``, the same coordinates to the bit, with fewer copies.

    geopandas stacks the transformed columns of the whole layer into a new array
    and copies that again before it writes the geometries; here the geometries
    are projected a group at a time (about ``_PROJECT_CHUNK`` coordinates each):
    their coordinates are read out, transformed in place by PROJ, or by numpy when
    the projection is an Albers that :class:`AlbersForward` computes to PROJ's bits
    (~0.3 -> ~0.15 s for the counties' 1.57M vertices nationally), and written into
    new geometries. Only the new geometries are as large as the layer: nationally
    ~60 MB less fresh memory than one array of every coordinate and its copies,
    which on the project's VMs is slower to come by than the arithmetic. Layers
    without a CRS, already in ``to_crs``, or with z coordinates go through geopandas.
    """
    target = CRS.from_user_input(to_crs)
    series = isinstance(gdf, gpd.GeoSeries)
    g = np.asarray((gdf if series else gdf.geometry).array, dtype=object)
    if gdf.crs is None or gdf.crs.is_exact_same(target) or len(g) == 0 or shapely.has_z(g).any():
        return gdf.to_crs(target)
    transform = _transformer(gdf.crs, target).transform
    albers = _albers_for(gdf.crs, target)
    counts = shapely.get_num_coordinates(g)
    ends = np.cumsum(counts)
    total = int(ends[-1])
    if albers is not None and total:  # PROJ's bits on a sample of the layer, or PROJ throughout
        s = coordinate_sample(g, 64, counts)
        if not albers.matches(transform, np.ascontiguousarray(s[:, 0]),
                              np.ascontiguousarray(s[:, 1])):
            albers = None
    out = g.copy()
    # groups of whole geometries starting in the same _PROJECT_CHUNK coordinates (a group
    # with a geometry larger than that is as large as it needs to be)
    group = np.searchsorted(np.arange(_PROJECT_CHUNK, total + _PROJECT_CHUNK, _PROJECT_CHUNK),
                            ends - counts, side="right")
    bounds = np.r_[0, np.flatnonzero(np.diff(group)) + 1, len(g)]
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        xy = shapely.get_coordinates(g[a:b])
        if len(xy) == 0:
            continue
        x, y = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
        if albers is None or not albers(x, y):
            transform(x, y, inplace=True)
        xy[:, 0], xy[:, 1] = x, y
        out[a:b] = shapely.set_coordinates(out[a:b], xy)
    out = gpd.GeoSeries(out, index=gdf.index, crs=target, name=gdf.name if series else None)
    if series:
        return out
    df = gdf.copy()
    df.geometry = out
    return df


def analysis_crs_for(*layers: gpd.GeoDataFrame) -> str:
    """The metric CRS every distance is measured in.

    The layers' own CRS when they share one that is projected, in metres, and
    true to scale over their joint extent (within
    :data:`basins.settings.MAX_SCALE_ERROR`, e.g. a UTM or Gauss-Krüger zone
    covering a province): nothing is reprojected, and distances are as the
    data's makers measured them. Otherwise an equal-area Albers CRS centred on
    the layers' joint extent. Deterministic for given data, so that reruns
    produce identical results.
    """
    own = _own_metric_crs(layers)
    if own is not None:
        return own
    bounds = []
    for g in layers:
        if g is None or len(g) == 0:
            continue
        b = g.total_bounds
        if g.crs is not None and not g.crs.equals(st.OUTPUT_CRS) and np.isfinite(b).all():
            # the bounds, not every vertex, are projected (densified edges catch the
            # curvature): projecting a million lines just for their extent costs seconds
            b = np.array(_transformer(g.crs, CRS.from_user_input(st.OUTPUT_CRS))
                         .transform_bounds(*b, densify_pts=101))
        if np.isfinite(b).all():
            bounds.append(b)
    if not bounds:
        raise BasinsInputError("no features with coordinates: nothing to analyse.")
    b = np.array(bounds)
    xmin, ymin = b[:, 0].min(), b[:, 1].min()
    xmax, ymax = b[:, 2].max(), b[:, 3].max()
    lon0 = round((xmin + xmax) / 2, 1)
    lat0 = round((ymin + ymax) / 2, 1)
    span = max(ymax - ymin, 1.0)
    lat1 = round(ymin + span / 6, 1)
    lat2 = round(ymax - span / 6, 1)
    if math.isclose(lat1, lat2):
        lat2 = lat1 + 1.0
    return (
        f"+proj=aea +lat_0={lat0} +lon_0={lon0} +lat_1={lat1} +lat_2={lat2} "
        "+x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"
    )


def _own_metric_crs(layers) -> str | None:
    """The layers' shared CRS (as WKT) if it can serve as the analysis CRS, else None."""
    used = [g for g in layers if g is not None and len(g)]
    if not used or any(g.crs is None for g in used):
        return None
    crs = used[0].crs
    if not crs.is_projected or any(not g.crs.equals(crs) for g in used[1:]):
        return None
    if any(ax.unit_name not in ("metre", "meter") for ax in crs.axis_info):
        return None
    b = np.array([g.total_bounds for g in used])
    if not np.isfinite(b).all():
        return None
    # scale factors on a grid over the joint extent (corners and middles)
    x = np.linspace(b[:, 0].min(), b[:, 2].max(), 5)
    y = np.linspace(b[:, 1].min(), b[:, 3].max(), 5)
    xx, yy = (a.ravel() for a in np.meshgrid(x, y))
    try:
        lon, lat = _transformer(crs, crs.geodetic_crs).transform(xx, yy)
        f = Proj(crs).get_factors(lon, lat)
    except (ProjError, CRSError):  # a CRS pyproj cannot invert or measure: use Albers
        return None
    scales = np.concatenate([np.asarray(f.meridional_scale), np.asarray(f.parallel_scale)])
    if not np.isfinite(scales).all() or np.abs(scales - 1).max() > st.MAX_SCALE_ERROR:
        return None
    return crs.to_wkt()
