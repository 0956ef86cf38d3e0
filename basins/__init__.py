"""basins: cross-boundary river sections for horizontal eco-compensation (流域横向生态补偿).

Pipeline stages, one module each: :mod:`basins.read` → :mod:`basins.network` →
:mod:`basins.sections`; :func:`basins.discover.discover` runs them in one call.
Tolerances live in :mod:`basins.settings`; embedded data in :mod:`basins.data`.
"""

from .discover import discover, write_discovery
from .network import (OrientedNetwork, graph_from_reaches, orient_reaches, reaches_from_graph,
                      reaches_from_rivers)
from .read import (BasinsInputError, read_counties, read_dem, read_points, read_rivers)
from .sections import (Discovery, sections_from_graph, sections_from_network,
                       snap_points_to_sections)

__version__ = "0.1.0"

__all__ = [
    "BasinsInputError", "Discovery", "OrientedNetwork", "discover", "graph_from_reaches",
    "orient_reaches", "reaches_from_graph", "reaches_from_rivers", "read_counties", "read_dem",
    "read_points", "read_rivers", "sections_from_graph", "sections_from_network",
    "snap_points_to_sections", "write_discovery",
]
