"""The discovery pipeline in one call, and writing its layers.

``discover`` chains the stages: :mod:`basins.read` (already done by the caller) →
:mod:`basins.network` (clean, node, orient) → :mod:`basins.sections`.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import geopandas as gpd
import numpy as np
import shapely

from . import settings as st
from .network import orient_reaches, reaches_from_rivers
from .read import Dem, analysis_crs_for, project_gdf
from .sections import Discovery, county_outlines_for, sections_from_network


def discover(
    rivers: gpd.GeoDataFrame,
    counties: gpd.GeoDataFrame,
    water: gpd.GeoDataFrame | None = None,
    dem: Dem | None = None,
    outlets: gpd.GeoDataFrame | None = None,
    orientation: str = "auto",
    settings: st.Settings = st.DEFAULT,
    progress: Callable[[str], None] | None = None,
) -> Discovery:
    """Find every cross-boundary section from river lines and county polygons.

    Parameters
    ----------
    rivers
        River layer in the river schema (:func:`basins.read.read_rivers`).
    counties
        County layer in the county schema (:func:`basins.read.read_counties`).
    water
        Optional lake and double-line river polygons; lines along their outlines
        are shore lines, not flow lines.
    dem
        Optional DEM (:func:`basins.read.read_dem`) to pick outlets and check
        orientation.
    outlets
        Optional outlet points.
    orientation
        Strategy, see :mod:`basins.network`.
    settings
        Tolerances (:mod:`basins.settings`).
    progress
        Called with the name of each stage as it starts.

    Returns
    -------
    basins.sections.Discovery

    Notes
    -----
    On glibc, the first call limits the process's malloc arenas
    (:data:`basins.settings.MALLOC_ARENAS`, :func:`limit_malloc_arenas`): ~28% less
    peak memory nationally, for good.
    """
    limit_malloc_arenas()
    with _cycle_collector_paused():
        return _discover(rivers, counties, water, dem, outlets, orientation, settings,
                         progress or (lambda _msg: None))


@contextmanager
def _cycle_collector_paused():
    """Python's cycle collector off for the duration (restored as it was after).

    Discovery builds ~10^5-10^6 container objects (rows, runs, object arrays) and
    few reference cycles; the collector's full passes over them cost ~0.3 s at
    100k reaches (three passes, measured with ``gc.callbacks``) and free nothing.
    Cycles made meanwhile are collected after.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


#: glibc's mallopt parameter for the arena limit (malloc.h)
_M_ARENA_MAX = -8
#: whether this process has asked glibc for :data:`basins.settings.MALLOC_ARENAS`
_arenas_asked = False


def limit_malloc_arenas(arenas: int | None = None) -> bool:
    """Ask glibc for at most ``arenas`` malloc arenas (default
    :data:`basins.settings.MALLOC_ARENAS`), once per process; see there why.

    Returns whether glibc took it. Nothing is asked off Linux or off glibc, when the
    process chose its own limit (``MALLOC_ARENA_MAX`` or ``arena_max`` in
    ``GLIBC_TUNABLES``), when the limit is None, or a second time.
    """
    global _arenas_asked
    arenas = st.MALLOC_ARENAS if arenas is None else arenas
    if _arenas_asked or not arenas or not sys.platform.startswith("linux") \
            or "MALLOC_ARENA_MAX" in os.environ \
            or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    _arenas_asked = True
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # (glibc only: musl's mallopt ignores it anyway)
        return libc.mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(int(arenas))) == 1
    except (OSError, AttributeError):
        return False


def _discover(rivers, counties, water, dem, outlets, orientation, settings, say) -> Discovery:
    crs = analysis_crs_for(counties, rivers)
    # project each layer once: the stages skip projecting a layer already in the CRS.
    # Counties are needed from orientation on: they are projected, and their outlines
    # cut for labelling, on a second thread while the rivers are cleaned (PROJ and
    # GEOS release the GIL; ~0.6 s of work nationally, ~0.3 s net, as the cleaning
    # slows while it shares the cores).
    with ThreadPoolExecutor(max_workers=1) as pool:
        ready = pool.submit(_counties_ready, counties, crs, settings)
        water = project_gdf(water, crs) if water is not None else None
        say("cleaning and noding reaches")
        reaches, qa = reaches_from_rivers(rivers, crs, water, settings)
        counties, outlines = ready.result()
        # the outline segments near the reaches, for labelling the samples along
        # them: on the second thread while the flow graph is oriented (orientation
        # only reverses lines; ~0.07 s nationally, else at the start of labelling).
        # Large networks are sampled all over their counties: the segments are most
        # of the outlines and take longer than orienting (synthetic dense networks:
        # no change from 3k to 100k reaches; 300k 7.0 -> 7.5 s, 1M +2% peak memory)
        ahead = len(reaches) <= _AHEAD_MAX_REACHES
        near = pool.submit(outlines.near_lines, np.asarray(reaches.geometry.array, dtype=object),
                           settings.boundary_tolerance_m) if ahead else None
        say("orienting the flow graph")
        net = orient_reaches(reaches, counties, orientation, dem, outlets, settings, water)
        # handed on unfinished: the sections stage takes it after its chains and
        # samples (~0.01-0.02 s nationally that no longer wait for it)
        say("discovering sections")
        found = sections_from_network(net, counties, settings, qa, outlines, near)
        if near is not None:
            near.result()  # (a network without chains never took it: raise its error)
    return found


#: outline segments are found ahead of labelling for networks up to this many reaches
_AHEAD_MAX_REACHES = 50_000


def _counties_ready(counties: gpd.GeoDataFrame, crs: str, settings: st.Settings):
    """Counties in the analysis CRS, prepared for point tests, and their outlines."""
    projected = project_gdf(counties, crs)
    shapely.prepare(np.asarray(projected.geometry.array, dtype=object))
    return projected, county_outlines_for(projected, settings)


def write_discovery(result: Discovery, path: str | os.PathLike) -> Path:
    """Write layers ``sections``, ``boundary_rivers``, ``reaches`` and ``qa`` to a GeoPackage.

    The file is written next to the target and moved into place at the end, so a
    failure halfway leaves any previous output intact. The GeoPackage timestamp is
    pinned, so the same inputs give a byte-identical file.
    """
    from .output import write_gpkg

    qa = result.qa.astype({"source_row": "int64"})
    return write_gpkg({"sections": result.sections, "boundary_rivers": result.boundary_rivers,
                       "reaches": result.reaches, "qa": qa}, path)
