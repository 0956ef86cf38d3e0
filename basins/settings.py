"""All tolerances and defaults of `basins`, in one place.

Every distance is in metres and is measured in the analysis CRS: the data's own
projected CRS when it is true to scale over the data (within
:data:`MAX_SCALE_ERROR`), else an equal-area Albers projection centred on the
data (see :func:`basins.read.analysis_crs_for`).
Change a value for one run by passing a modified copy::

    from dataclasses import replace
    from basins import settings
    fine = replace(settings.DEFAULT, boundary_tolerance_m=200.0)

The defaults suit the national 1:4,000,000 river layer against AMap county
polygons (the embedded data). For a 1:250,000 or 1:50,000 river network divide
the distance tolerances by roughly 10 and 50.
"""

from __future__ import annotations

from dataclasses import dataclass

#: CRS of every output layer.
OUTPUT_CRS = "EPSG:4326"

#: largest scale error (0.01 = 1%) of the input's own projected CRS over the data
#: for it to be used as the analysis CRS (a UTM zone is within 0.1% across its
#: 6°); beyond it the data are reprojected to an equal-area Albers CRS
MAX_SCALE_ERROR = 0.01

#: at most this many glibc malloc arenas in a process that runs discovery (None:
#: leave glibc's default, 8 per core). glibc gives each thread that allocates its
#: own arena, and memory freed in one is not reused by the others: discovery's
#: worker threads (GEOS, Qhull and numpy work on two cores) then left ~80 MB of
#: freed memory beside ~210 MB in use nationally (peak +290 MB over the read,
#: with one arena +205 MB; 1M synthetic reaches 2.06 -> 1.95 GiB), at no gain in
#: speed. :func:`basins.discover.discover` asks glibc for this limit with
#: ``mallopt(M_ARENA_MAX)`` before its first thread starts, once per process: the
#: limit then holds for the rest of the process (glibc fixes it when a thread
#: first needs an arena), so it is skipped when the process set its own
#: (``MALLOC_ARENA_MAX``, or ``arena_max`` in ``GLIBC_TUNABLES``) and off glibc.
MALLOC_ARENAS: int | None = 1


@dataclass(frozen=True)
class Settings:
    """Tolerances and defaults for discovery.

    Attributes
    ----------
    boundary_tolerance_m
        A point of a river within this distance of two counties is on their shared
        border. It absorbs the different generalisation of river and county data
        (1 mm at 1:4M is 4 km on the ground).
    min_boundary_run_m
        A stretch along a border shorter than this is not a boundary river: the
        river merely crosses (or grazes) the border there. Lengths of stretches
        are measured as the straight-line distance between their ends, not along
        the river: this is what makes a river that meanders back and forth over
        one border within a short distance yield one section, not ten.
    min_run_m
        A stretch inside one county (or outside every county) shorter than this,
        between two other stretches, is absorbed by its neighbours.
    sample_step_m
        Spacing of the points at which each reach is classified. Keep it well under
        ``min_run_m`` and ``boundary_tolerance_m``.
    snap_tolerance_m
        Endpoints of reaches closer than this are one network node; an endpoint
        this close to another reach's interior splits that reach (T-junction).
    duplicate_tolerance_m
        A reach lying within this distance of longer reaches for at least
        ``duplicate_min_cover`` of its length, with both ends on them, is a
        duplicate (the two NGCC line layers repeat the same rivers). Capped at
        ``duplicate_median_fraction`` of the median length of the lines, so a fine
        network (short reaches) gets a tolerance to match its scale without being
        told.
    duplicate_min_cover
        Share of a reach's length that must be covered to call it a duplicate.
    duplicate_median_fraction
        The duplicate tolerance is at most this fraction of the median line
        length. A tributary of length L joining a longer river at an angle θ stays
        within L·sin θ of it, so a tolerance equal to the reach length would take
        every short tributary joining at under ~60° for a copy of the river it
        joins; a quarter of the length allows copies offset by a quarter of their
        length (the NGCC layers: 1.5 km on 17 km lines) and nothing joining at
        more than ~15°.
    shore_tolerance_m
        A line lying along the outline of a water polygon (lake, double-line river)
        within this distance is a shore or bank line, not a centre line.
    shore_min_cover
        Share of a line's length along a water outline to call it a shore line.
    max_river_width_m
        A water polygon bounded by shore lines whose mean width is at most this is a
        double-line river: its centre line (medial axis) becomes a flow line and
        lines ending on its banks are connected to it. Wider polygons are lakes.
    centreline_step_m
        Spacing of the outline points used to trace a double-line river's centre line.
    water_link_tolerance_m, water_link_max_m
        Network ends this close to one water polygon (a reservoir or lake drawn
        only as an area, with no line through it) are joined through it by virtual
        links to a hub inside the polygon, so the network and navigation continue
        across it. Sections on virtual links are placed at the link and flagged:
        where exactly the border lies inside the water body is not known. Only ends
        of one named river are joined (a river passing through), and only when
        every end is within ``water_link_max_m`` of the hub: a long river drawn as
        an area would need its centre line, not a straight link.
    water_link_skip_names
        Rivers whose name contains one of these are never linked through water
        bodies: canals (运河, 渠, 航道) join basins, flow as their locks are set, and
        one canal name often covers several canals.
    edge_tolerance_m
        A network end within this distance of the outer edge of the county layer
        (coast or study-area edge) is an *edge end*: a candidate outlet.
    coast_elevation_m
        With a DEM, edge ends at or below this elevation are all outlets (several
        mouths of a delta); otherwise only the lowest edge end is.
    dem_contradiction_m
        With a DEM, a reach whose downstream end is this much higher than its
        upstream end is flagged as contradicting the DEM.
    outlet_snap_m
        User-given outlet points snap to the nearest network node within this distance.
    monitoring_snap_m
        A monitoring point matches the nearest discovered section within this
        distance (on the same river when both have a river name).
    min_valid_degrees_span
        Guard against projected coordinates labelled as degrees: geographic
        coordinates must lie within [-180, 180] x [-90, 90].
    """

    boundary_tolerance_m: float = 2500.0
    min_boundary_run_m: float = 12000.0
    min_run_m: float = 6000.0
    sample_step_m: float = 500.0
    snap_tolerance_m: float = 50.0
    duplicate_tolerance_m: float = 1500.0
    duplicate_min_cover: float = 0.9
    duplicate_median_fraction: float = 0.25
    shore_tolerance_m: float = 300.0
    shore_min_cover: float = 0.8
    max_river_width_m: float = 3000.0
    centreline_step_m: float = 100.0
    water_link_tolerance_m: float = 1500.0
    water_link_max_m: float = 40000.0
    water_link_skip_names: tuple[str, ...] = ("运河", "渠", "航道")
    edge_tolerance_m: float = 3000.0
    coast_elevation_m: float = 10.0
    dem_contradiction_m: float = 50.0
    outlet_snap_m: float = 5000.0
    monitoring_snap_m: float = 5000.0
    #: web maps: county outlines are simplified (shared borders kept shared) by
    #: this fraction of the map's diagonal, at least ``web_simplify_min_m``
    #: (Shandong ≈ 350 m, the whole country ≈ 2.5 km)
    web_simplify_fraction: float = 0.0004
    web_simplify_min_m: float = 200.0


#: The settings used when none are given.
DEFAULT = Settings()

#: Orientation strategies accepted by :func:`basins.network.graph_from_reaches`.
ORIENTATIONS = ("auto", "digitised", "outlets", "dem")

#: Section kinds, in the order they are documented in the README.
SECTION_KINDS = ("crossing", "joins_border", "leaves_border", "border_change")

#: Section levels, from the parties' provinces and cities.
LEVELS = ("province", "city", "county")

#: Separator for multi-valued text columns (ids, names, shares).
SEP = "|"
