"""SYNTHETIC basin generator with known ground truth (for tests and benchmarks only).

Nothing here is real data. Counties are Voronoi cells of a jittered hexagonal
lattice, grouped into cities and provinces by lattice blocks. Rivers:

* a dendritic network: a random spanning tree over part of the cells, each reach
  running seed to seed, so it crosses exactly one border, at the midpoint of the
  two seeds (pairs are chosen so that this midpoint lies well inside their shared
  border); the tree drains to one outlet at the bottom edge of the area;
* optional boundary rivers (界河) that run along chains of Voronoi edges: they
  start inside a county, join the border at a Voronoi vertex, change bank pairs at
  every vertex, and leave the border into a county of the tree;
* optional meanders: a crossing replaced by a river that zigzags over the same
  border several times within a few kilometres (truth: still one section);
* random digitisation direction of every reach.

Because every crossing, vertex and bank is constructed, the true sections
(kind, parties in order, level, location) are known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.ops

from . import settings as st

CRS = "EPSG:32650"  # UTM 50N: metres, around 117°E


@dataclass
class SyntheticBasin:
    """A generated basin: inputs for discovery and the true sections."""

    counties: gpd.GeoDataFrame
    rivers: gpd.GeoDataFrame
    truth: pd.DataFrame  # kind, river, upstream_ids, downstream_ids, level, x, y (CRS metres)
    outlet: shapely.Point
    downstream_county: dict[str, str]  # the dendritic tree: county id -> next county downstream


def _cell_of_lattice(rows: int, cols: int):
    for r in range(rows):
        for c in range(cols):
            yield r, c


def make_basin(
    seed: int = 0,
    rows: int = 8,
    cols: int = 8,
    spacing: float = 40_000.0,
    jitter: float = 0.10,
    tree_share: float = 0.7,
    n_boundary: int = 1,
    n_meanders: int = 1,
    city_block: int = 3,
    province_block: int = 6,
    reverse_prob: float = 0.5,
    origin: tuple[float, float] = (300_000.0, 3_300_000.0),
) -> SyntheticBasin:
    """Generate a synthetic basin with known sections.

    Parameters
    ----------
    seed
        Random seed; the same seed gives the same basin.
    rows, cols
        Lattice size (number of counties = rows × cols).
    spacing
        Distance between neighbouring county seeds, metres. Keep it well above the
        discovery tolerances (the defaults suit :data:`basins.settings.DEFAULT`).
    jitter
        Random displacement of seeds, as a share of ``spacing``.
    tree_share
        Share of the counties the dendritic network reaches.
    n_boundary
        Number of boundary rivers to try to place (fewer if no room).
    n_meanders
        Number of crossings replaced by a meandering river.
    city_block, province_block
        Lattice block sizes that make one city and one province.
    reverse_prob
        Probability that a reach is digitised against the flow.
    origin
        Lower-left corner, metres in :data:`CRS`.
    """
    rng = np.random.default_rng(seed)
    D = spacing
    h = D * np.sqrt(3) / 2
    rc = list(_cell_of_lattice(rows, cols))
    seeds = np.array([
        (origin[0] + c * D + (r % 2) * D / 2, origin[1] + r * h) for r, c in rc
    ]) + rng.uniform(-jitter * D, jitter * D, size=(len(rc), 2))
    n = len(seeds)
    xmin, ymin = seeds.min(axis=0) - D / 2
    xmax, ymax = seeds.max(axis=0) + D / 2
    domain = shapely.box(xmin, ymin, xmax, ymax)
    cells = shapely.get_parts(shapely.voronoi_polygons(
        shapely.multipoints(seeds), extend_to=domain, ordered=True))
    cells = shapely.intersection(cells, domain)
    ids = np.array([f"C{r:02d}{c:02d}" for r, c in rc], dtype=object)
    city = np.array([f"City{r // city_block}{c // city_block}" for r, c in rc], dtype=object)
    prov = np.array([f"Prov{r // province_block}{c // province_block}" for r, c in rc],
                    dtype=object)
    names = np.array([f"县{r:02d}{c:02d}" for r, c in rc], dtype=object)
    counties = gpd.GeoDataFrame(
        {"county_id": ids, "county": names, "city": city, "province": prov},
        geometry=cells, crs=CRS)
    on_edge = shapely.intersects(shapely.boundary(cells), domain.boundary)

    # shared borders between neighbours
    tree_idx = shapely.STRtree(cells)
    pi, pj = tree_idx.query(cells, predicate="touches")
    shared: dict[tuple[int, int], shapely.LineString] = {}
    for i, j in zip(pi, pj):
        if i < j:
            b = shapely.line_merge(shapely.intersection(cells[i].boundary, cells[j].boundary))
            if b.geom_type == "LineString" and b.length > 1.0:
                shared[(int(i), int(j))] = b

    margin = 2 * st.DEFAULT.boundary_tolerance_m

    def crossing_ok(i: int, j: int) -> bool:
        """Seed segment crosses the shared border well inside it, away from other seeds."""
        b = shared.get((min(i, j), max(i, j)))
        if b is None:
            return False
        m = (seeds[i] + seeds[j]) / 2
        d_ij = np.linalg.norm(m - seeds[i])
        others = np.delete(np.arange(n), [i, j])
        if (np.linalg.norm(seeds[others] - m, axis=1) < d_ij + margin).any():
            return False
        mp = shapely.Point(m)
        ends = [shapely.Point(b.coords[0]), shapely.Point(b.coords[-1])]
        return b.distance(mp) < 1.0 and min(mp.distance(e) for e in ends) > 1.2 * margin

    # dendritic tree grown from the outlet cell on the bottom row
    bottom = [k for k, (r, c) in enumerate(rc) if r == 0 and 0 < c < cols - 1]
    outlet_cell = int(rng.choice(bottom))
    parent = {outlet_cell: -1}
    frontier = [outlet_cell]
    target = max(2, int(tree_share * n))
    while frontier and len(parent) < target:
        k = int(rng.integers(len(frontier)))
        cur = frontier[k]
        nbrs = [j for (a, b) in shared for j in ((b,) if a == cur else (a,) if b == cur else ())
                if j not in parent and crossing_ok(cur, j)]
        if not nbrs:
            frontier.pop(k)
            continue
        j = int(rng.choice(sorted(nbrs)))
        parent[j] = cur
        frontier.append(j)

    def level(idx: list[int]) -> str:
        if len(set(prov[idx])) > 1:
            return "province"
        if len(set(city[idx])) > 1:
            return "city"
        return "county"

    lines: list[tuple[str, np.ndarray]] = []
    truth: list[dict] = []
    main = "Synthetic river"
    children = [k for k in parent if parent[k] >= 0]
    meander_set = set(int(x) for x in rng.choice(sorted(children), size=min(n_meanders,
                      len(children)), replace=False)) if children else set()
    for k in sorted(children):
        a, b = seeds[k], seeds[parent[k]]
        m = (a + b) / 2
        if k in meander_set:
            u = (b - a) / np.linalg.norm(b - a)
            w = np.array([-u[1], u[0]])
            zig = [m + ((-1) ** q) * 600.0 * u + q * 900.0 * w for q in range(6)]
            pts = np.vstack([a, *zig, b])
            loc = zig[len(zig) // 2]
        else:
            pts = np.vstack([a, m, b])
            loc = m
        lines.append((main, pts))
        truth.append(dict(kind="crossing", river=main, upstream_ids=ids[k],
                          downstream_ids=ids[parent[k]], level=level([k, parent[k]]),
                          x=loc[0], y=loc[1]))
    out_pt = np.array([seeds[outlet_cell][0], ymin])
    lines.append((main, np.vstack([seeds[outlet_cell], out_pt])))

    # boundary rivers along chains of Voronoi edges
    vkey = lambda p: (round(p[0], 1), round(p[1], 1))  # noqa: E731
    vert_edges: dict[tuple, list[tuple[int, int]]] = {}
    tree_pairs = {(min(k, p), max(k, p)) for k, p in parent.items() if p >= 0}
    for (i, j), b in shared.items():
        if (i, j) in tree_pairs or on_edge[i] or on_edge[j] or b.length < 16_000:
            continue
        if len(b.coords) != 2:
            continue
        for p in (b.coords[0], b.coords[-1]):
            vert_edges.setdefault(vkey(p), []).append((i, j))
    used_cells: set[int] = set()
    placed = 0
    starts = sorted(vert_edges)
    rng.shuffle(starts)
    for v0 in starts:
        if placed >= n_boundary:
            break
        chain = _walk(v0, vert_edges, shared, rng, vkey)
        if chain is None:
            continue
        verts, pairs = chain
        cells_on = {c for p in pairs for c in p}
        first_cells = _cells_at(verts[0], cells)
        last_cells = _cells_at(verts[-1], cells)
        c_in = [c for c in first_cells if c not in pairs[0]]
        d_out = [c for c in last_cells if c not in pairs[-1] and c in parent]
        if len(c_in) != 1 or len(d_out) != 1 or cells_on & used_cells:
            continue
        c, d = c_in[0], d_out[0]
        if {c, d} & used_cells or c in cells_on or d in cells_on:
            continue
        used_cells |= cells_on | {c, d}
        for q in list(cells_on) + [c, d]:  # keep other chains a cell away
            used_cells |= {j for (a, b) in shared for j in (a, b) if q in (a, b)}
        placed += 1
        name = f"Border river {placed}"
        src = seeds[c] + 0.3 * (np.array(verts[0]) - seeds[c])
        pts = np.vstack([src, *[np.array(v) for v in verts], seeds[d]])
        lines.append((name, pts))
        banks = [_banks(np.array(verts[q]), np.array(verts[q + 1]), pairs[q], seeds)
                 for q in range(len(pairs))]
        truth.append(dict(kind="joins_border", river=name, upstream_ids=ids[c],
                          downstream_ids="|".join(ids[list(banks[0])]),
                          level=level([c, *banks[0]]), x=verts[0][0], y=verts[0][1]))
        for q in range(1, len(pairs)):
            truth.append(dict(kind="border_change", river=name,
                              upstream_ids="|".join(ids[list(banks[q - 1])]),
                              downstream_ids="|".join(ids[list(banks[q])]),
                              level=level([*banks[q - 1], *banks[q]]),
                              x=verts[q][0], y=verts[q][1]))
        truth.append(dict(kind="leaves_border", river=name,
                          upstream_ids="|".join(ids[list(banks[-1])]), downstream_ids=ids[d],
                          level=level([*banks[-1], d]), x=verts[-1][0], y=verts[-1][1]))

    geoms = []
    for _, pts in lines:
        g = shapely.linestrings(pts)
        if rng.random() < reverse_prob:
            g = shapely.reverse(g)
        geoms.append(g)
    rivers = gpd.GeoDataFrame({"NAME": [nm for nm, _ in lines]}, geometry=geoms, crs=CRS)
    truth_df = pd.DataFrame(truth, columns=["kind", "river", "upstream_ids", "downstream_ids",
                                            "level", "x", "y"])
    tree = {str(ids[k]): str(ids[p]) for k, p in parent.items() if p >= 0}
    return SyntheticBasin(counties, rivers, truth_df, shapely.Point(out_pt), tree)


def _cells_at(v, cells) -> list[int]:
    p = shapely.Point(v)
    return [int(i) for i in np.flatnonzero(shapely.distance(cells, p) < 1.0)]


def _banks(a: np.ndarray, b: np.ndarray, pair: tuple[int, int], seeds) -> tuple[int, int]:
    """(left, right) cells of the edge a→b, looking downstream."""
    d = b - a
    i, j = pair
    s = seeds[i] - a
    left_i = d[0] * s[1] - d[1] * s[0] > 0
    return (i, j) if left_i else (j, i)


def _walk(v0, vert_edges, shared, rng, vkey, length: int = 3):
    """A random walk of ``length`` distinct allowed Voronoi edges from vertex v0."""
    verts = [v0]
    pairs: list[tuple[int, int]] = []
    cur = v0
    for _ in range(length):
        options = []
        for pr in vert_edges.get(cur, []):
            if pr in pairs:
                continue
            b = shared[pr]
            ends = [vkey(b.coords[0]), vkey(b.coords[-1])]
            nxt = ends[1] if ends[0] == cur else ends[0]
            if nxt in verts:
                continue
            options.append((pr, nxt))
        if not options:
            return None
        pr, nxt = options[int(rng.integers(len(options)))]
        pairs.append(pr)
        verts.append(nxt)
        cur = nxt
    # three distinct pairs are needed for the bank changes to be real
    return verts, pairs


def make_dense_basin(
    seed: int = 0,
    rows: int = 55,
    cols: int = 55,
    reaches: int = 100_000,
    link_pieces: int = 7,
    spoke_length: float = 8_000.0,
    reverse_prob: float = 0.5,
) -> SyntheticBasin:
    """A SYNTHETIC basin with many short reaches and the same known sections.

    Starts from :func:`make_basin` (``rows × cols`` counties, 55 × 55 = 3,025 by
    default, no boundary rivers or meanders), splits every river link into
    ``link_pieces`` reaches (an odd number, so no joint falls on a border) and
    adds tributary "spokes" flowing into each county seed, split into short
    reaches, until about ``reaches`` reaches exist. Spokes stay well inside their
    county and away from the main links, so the true sections are exactly those
    of the coarse basin. For scaling benchmarks.
    """
    base = make_basin(seed=seed, rows=rows, cols=cols, n_boundary=0, n_meanders=0,
                      reverse_prob=0.0)
    rng = np.random.default_rng(seed + 1)
    names: list[str] = []
    geoms: list = []
    main = [g for g in base.rivers.geometry]
    fr = np.linspace(0, 1, link_pieces + 1)
    for g in main:
        # substrings keep the true vertices (the bend at the link midpoint) in their piece
        for a, b in zip(fr[:-1], fr[1:]):
            geoms.append(shapely.ops.substring(g, a, b, normalized=True))
            names.append("Synthetic river")
    counties = base.counties
    # seed points: ends of the main links
    link_ends = {}
    for g in main:
        c = shapely.get_coordinates(g)
        for p in (c[0], c[-1]):
            link_ends.setdefault((round(p[0], 3), round(p[1], 3)), []).append(g)
    tree = shapely.STRtree(counties.geometry.values)
    nodes = []
    for key, gs in link_ends.items():
        i = tree.query(shapely.Point(key), predicate="within")
        if len(i) != 1:
            continue  # the outlet point on the domain edge
        nodes.append((np.array(key), gs))
    remaining = max(0, reaches - len(geoms))
    per = remaining / max(len(nodes), 1)
    t = int(min(12, max(1, per // 20)))

    def apart(a: float, b: float, deg: float) -> bool:
        return abs(np.angle(np.exp(1j * (a - b)))) > np.radians(deg)

    # spoke directions: at least 25° from the main links and 20° from each other.
    # Closer spokes cut into the ~200 m reaches of a million-reach basin would end
    # within the snap tolerance (50 m) of each other: a network finer than its own
    # tolerances, whose fans of reaches the cleaning rightly merges. (Reaches much
    # shorter than ~150 m, from a short spoke_length, have the same problem.)
    plan = []
    for xy, gs in nodes:
        angles = []
        for g in gs:
            c = shapely.get_coordinates(g)
            other = c[1] if np.allclose(c[0], xy) else c[-2]
            angles.append(np.arctan2(other[1] - xy[1], other[0] - xy[0]))
        offset = rng.uniform(0, 2 * np.pi)
        cand = offset + np.arange(36) * (2 * np.pi / 36)
        ok = [a for a in cand if all(apart(a, b, 25) for b in angles)]
        step = max(1, len(ok) // t)
        picked: list[float] = []
        for a in ok[::step]:
            if len(picked) < t and all(apart(a, b, 19.9) for b in picked):
                picked.append(a)
        plan.append((xy, picked))
    p = int(max(1, np.ceil(remaining / max(sum(len(a) for _, a in plan), 1))))
    starts, ends_ = [], []
    for xy, picked in plan:
        if remaining <= 0:
            break
        for a in picked:
            k = int(min(p, remaining))
            if k <= 0:
                break
            end = xy + spoke_length * np.array([np.cos(a), np.sin(a)])
            f = np.linspace(0, 1, k + 1)[:, None]
            pts = end + (xy - end) * f  # flows into the seed
            starts.append(pts[:-1])
            ends_.append(pts[1:])
            remaining -= k
    if starts:
        a0, a1 = np.vstack(starts), np.vstack(ends_)
        coords = np.stack([a0, a1], axis=1).reshape(-1, 2)
        spokes = shapely.linestrings(coords, indices=np.repeat(np.arange(len(a0)), 2))
        geoms.extend(spokes.tolist())
        names.extend(["Tributary"] * len(a0))
    flip = rng.random(len(geoms)) < reverse_prob
    arr = np.array(geoms, dtype=object)
    arr[flip] = shapely.reverse(arr[flip])
    rivers = gpd.GeoDataFrame({"NAME": names}, geometry=arr, crs=CRS)
    return SyntheticBasin(counties, rivers, base.truth, base.outlet, base.downstream_county)
